"""softmax_sgd in the Zeiler & Fergus grid, float32 against bfloat16 products: the time and the table check.

Run by hand::

    .venv/bin/python benchmarks/grid_precision.py                      # synthetic Caltech-101-shaped features
    .venv/bin/python benchmarks/grid_precision.py --config configs/caltech101-offline.toml \\
        --dataset ../shared/datasets/caltech101/101_ObjectCategories   # a build's cached features

``experiments.precision = "bfloat16"`` runs the head's two matrix products per step in bf16 (float32
weights, momentum and updates).  For every ``experiments.backbones`` row of the config's first table
(or one synthetic 1280-d row), the whole ``softmax_sgd`` grid runs twice, float32 then bfloat16, on
the same splits and seeds; printed per row: each precision's seconds and the ratio, and each
setting's mean in both with the difference, against the 0.15-point budget the features' bf16 was held
to (docs/performance.md, *Faster extraction*).  ``auto`` trains in bf16 where the CPU has AMX or AVX-512 BF16, the kinds where
this was measured (docs/performance.md, *bf16 in the experiment grid*).
"""

from __future__ import annotations

import time

from tlreport.heads.grid import aggregate, run_grid
from tlreport.heads.softmax_sgd import SoftmaxSGDHead


def main(argv: list[str] | None = None) -> int:
    from common import TABLE_BUDGET, grid_inputs, setting_changes

    rows, y, names, keys, protocol = grid_inputs(argv, __doc__.splitlines()[0])
    from tlreport.util.cpu import cpu_flags

    flags = sorted(cpu_flags() & {"avx2", "avx512f", "avx512_bf16", "amx_bf16"})
    print(f"{len(y)} images, {len(names)} classes; {protocol}; CPU flags {', '.join(flags) or 'unknown'}")
    worst, totals = 0.0, {"float32": 0.0, "bfloat16": 0.0}
    for entry, X in rows.items():
        means, seconds = {}, {}
        for precision in ("float32", "bfloat16"):
            t0 = time.perf_counter()
            df = run_grid({entry: X}, y, names, heads=[SoftmaxSGDHead(precision=precision)], keys=keys, **protocol)
            seconds[precision] = time.perf_counter() - t0
            totals[precision] += seconds[precision]
            means[precision] = aggregate(df).set_index("n_train")["mean"]
        cells, change, _ = setting_changes(means["float32"], means["bfloat16"], protocol["settings"])
        worst = max(worst, change)
        print(f"{entry}: float32 {seconds['float32']:.1f} s, bfloat16 {seconds['bfloat16']:.1f} s "
              f"(x{seconds['float32'] / seconds['bfloat16']:.2f}); " + "; ".join(cells), flush=True)
    print(f"all rows: float32 {totals['float32']:.1f} s, bfloat16 {totals['bfloat16']:.1f} s "
          f"(x{totals['float32'] / totals['bfloat16']:.2f}); largest change {worst:.3f} points "
          f"({'within' if worst <= TABLE_BUDGET else 'OVER'} the {TABLE_BUDGET} budget)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
