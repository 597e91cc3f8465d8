"""Do bf16 features keep the tables?  The ``features.precision = "auto"`` decision, checked on a config.

Run by hand::

    .venv/bin/python benchmarks/features_precision.py --config configs/caltech101-offline.toml \\
        --dataset ../shared/datasets/caltech101/101_ObjectCategories

The check is the table, not a cosine (issue #15): for every ``experiments.backbones`` row of the
config's first table and every head of its ``experiments.heads`` (with ``experiments.precision``
resolved as a build resolves it), the Zeiler & Fergus means with OpenVINO float32 and OpenVINO
bfloat16 features, on the same splits and seeds: the two that ``features.precision = "auto"``
chooses between (it never picks TensorFlow's bf16).  Features the cache lacks are extracted first and
kept, as a build keeps them (the time to have them ready is printed).  Printed per row and head: each
setting's mean in both precisions and the difference; then the largest difference against the
0.15-point budget, and the verdict.  Where every row of every head held, the CPU's kind (printed)
belongs in ``BF16_TABLES_HELD`` (``tlreport/features/engines.py``), which is what ``auto`` reads.
``experiments.flip``'s test-time-augmented rows are not checked (they reuse the same fits).
"""

from __future__ import annotations

import time
from pathlib import Path

PRECISIONS = ("float32", "bfloat16")


def main(argv: list[str] | None = None) -> int:
    import argparse

    # benchmarks/softmax_head.py
    from common import TABLE_BUDGET, setting_changes, table_context, table_rows

    from tlreport.heads.grid import aggregate, run_grid
    from tlreport.pipeline.experiments import experiments_heads
    from tlreport.util.cpu import cpu_flags

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", type=Path, required=True, help="the config whose first table is checked")
    ap.add_argument("--dataset", help="the dataset folder, as for tlreport build --dataset")
    args = ap.parse_args(argv)

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    means: dict[str, dict] = {}
    for precision in PRECISIONS:
        ctx, table, use = table_context(args.config, args.dataset, read_only=False,
                                        features={"engine": "openvino", "precision": precision})
        t0 = time.perf_counter()
        rows, y, names, keys, protocol = table_rows(ctx, table, use)
        print(f"OpenVINO {precision} features: ready in {time.perf_counter() - t0:.1f} s "
              f"(extraction included where the cache lacked them)", flush=True)
        heads = experiments_heads(ctx)
        for entry, X in rows.items():
            for head in heads:
                t0 = time.perf_counter()
                df = run_grid({entry: X}, y, names, heads=[head], keys=keys, **protocol)
                by_setting = aggregate(df).set_index("n_train")["mean"]
                means.setdefault(f"{entry} + {head.name}", {})[precision] = by_setting
                print(f"  {entry} + {head.name}: {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"{len(y)} images, {len(names)} classes; {protocol}; CPU flags {', '.join(flags) or 'unknown'}")
    worst, where = 0.0, ""
    for row, by_precision in means.items():
        cells, change, n = setting_changes(*(by_precision[p] for p in PRECISIONS), protocol["settings"])
        if change > worst:
            worst, where = change, f"{row}, {n}/class"
        print(f"{row}: " + "; ".join(cells))
    held = worst <= TABLE_BUDGET
    bf16_flags = [f for f in flags if f in ("amx_bf16", "avx512_bf16")]
    print(f"largest change {worst:.3f} points ({where}): {'every row held' if held else 'OVER'} the "
          f"{TABLE_BUDGET} budget" + (f"; add this CPU's kind to BF16_TABLES_HELD: frozenset({bf16_flags})"
                                      if held else "; auto stays float32 on this CPU"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
