"""The experiment grid on this CPU as it is, and with its libraries held to AVX2 code: a stand-in for an AVX2 machine.

Run by hand::

    .venv/bin/python benchmarks/grid_isa.py --config configs/caltech101-offline.toml \\
        --dataset ../shared/datasets/caltech101/101_ObjectCategories     # a build's cached features
    .venv/bin/python benchmarks/grid_isa.py                              # small synthetic features

It runs ``benchmarks/grid.py --only holdout`` (the grid as the build runs it, ``softmax_sgd`` in
float32), each run in a fresh process: as is, and with OpenBLAS held to its Haswell kernels
(``OPENBLAS_CORETYPE``) and oneDNN, TensorFlow's matrix library, to AVX2 (``ONEDNN_MAX_CPU_ISA``),
which both read when they load.  TensorFlow's other kernels are compiled for AVX either way.  The
two alternate, ``--repeats`` times each (as is, AVX2, as is, AVX2, ...), so a machine whose speed
drifts slows both alike; printed: every run's wall time, and the ratio of the fastest of each.  On
an AVX2 CPU both are the same.  The hardware stays this machine's (its clock, caches and memory), so the figure bounds an AVX2
machine's time only as far as the two cores are alike: see docs/performance.md for how it is used.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

#: the libraries' switches to AVX2 code, read when each library loads
AVX2_ENV = {"OPENBLAS_CORETYPE": "Haswell", "ONEDNN_MAX_CPU_ISA": "AVX2"}


def run_grid(args: list[str], extra_env: dict[str, str]) -> float:
    """Wall seconds of ``grid.py --only holdout`` in a fresh process with ``extra_env`` set."""
    script = Path(__file__).with_name("grid.py")
    env = {**os.environ, **extra_env, "TF_CPP_MIN_LOG_LEVEL": "2"}
    done = subprocess.run([sys.executable, str(script), "--only", "holdout", *args], env=env,
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise SystemExit(f"grid.py failed ({done.returncode}): {last}")
    match = re.search(r"^holdout: \d+ fits in ([\d.]+) s wall", done.stdout, re.MULTILINE)
    if match is None:
        raise SystemExit("grid.py printed no wall time")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    import argparse

    from tlreport.util.cpu import cpu_flags

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", help="a config whose features the cache holds (run tlreport build first)")
    ap.add_argument("--dataset", help="with --config: the dataset folder, as for tlreport build --dataset")
    ap.add_argument("--repeats", type=int, default=2, help="runs of each, alternating (default 2)")
    args = ap.parse_args(argv)
    passed = [a for flag, value in (("--config", args.config), ("--dataset", args.dataset)) if value
              for a in (flag, value)]
    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    print(f"CPU flags {', '.join(flags) or 'unknown'}; held to AVX2 by {AVX2_ENV}", flush=True)
    times: dict[str, list[float]] = {"as is": [], "AVX2 code": []}
    for _ in range(max(1, args.repeats)):
        for name, env in (("as is", {}), ("AVX2 code", AVX2_ENV)):
            times[name].append(run_grid(passed, env))
            print(f"{name + ':':<11} {times[name][-1]:7.1f} s", flush=True)
    native, held = min(times["as is"]), min(times["AVX2 code"])
    print(f"fastest: as is {native:.1f} s, AVX2 code {held:.1f} s (x{held / native:.2f} the time as is)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
