"""Does the seed's head (softmax_sgd) keep up with logreg?  Its recipes side by side on the same splits.

Run by hand::

    .venv/bin/python benchmarks/softmax_head.py                       # synthetic Caltech-101-shaped features
    .venv/bin/python benchmarks/softmax_head.py --config configs/caltech101-offline.toml \\
        --dataset ../shared/datasets/caltech101/101_ObjectCategories  # a build's cached features

With ``--config`` it reads the features a build of that config has cached (it
computes nothing new) and runs every ``experiments.backbones`` row of its first
table on that table's protocol (same seed, same splits as the post).  Printed,
per row and setting: the Zeiler & Fergus mean ± std over the splits for

* ``seed recipe``: the head as it was, 300 epochs at 0.01 on raw features, no penalty;
* ``softmax_sgd``: today's head (the L2 penalty, weighted by feature variance, its strength chosen by CV on
  the training images);
* ``logreg``: the reference,

the gap of each softmax recipe to logreg in points, and each one's time as a
ratio to logreg's.  Measured on an AMD EPYC (2 vCPUs), Caltech-101: the seed
recipe trailed logreg by up to 0.6 points; today's head is within 0.2 of it on
every row (AVX-512 EPYC, the three EfficientNet-Lites and their concatenation).
"""

from __future__ import annotations

import time

from common import grid_inputs

from tlreport.heads.grid import aggregate, run_grid
from tlreport.heads.logreg import LogRegHead
from tlreport.heads.softmax_sgd import SoftmaxSGDHead

SEED_RECIPE = SoftmaxSGDHead(epochs=300, l2_grid=(0.0,), train_kwargs={"lr": 0.01, "standardize": False},
                             name="seed recipe")


def main(argv: list[str] | None = None) -> int:
    rows, y, names, keys, protocol = grid_inputs(argv, __doc__.splitlines()[0])
    heads = [SEED_RECIPE, SoftmaxSGDHead(), LogRegHead()]
    print(f"{len(y)} images, {len(names)} classes; {protocol}")
    for entry, X in rows.items():
        results, seconds = {}, {}
        for head in heads:
            t0 = time.perf_counter()
            df = run_grid({entry: X}, y, names, heads=[head], keys=keys, **protocol)
            seconds[head.name] = time.perf_counter() - t0
            results[head.name] = aggregate(df).set_index("n_train")
        ref = results["logreg"]
        for n in protocol["settings"]:
            cells = []
            for head in heads:
                r = results[head.name].loc[n]
                gap = "" if head.name == "logreg" else f" ({r['mean'] - ref.loc[n, 'mean']:+.2f})"
                cells.append(f"{head.name} {r['mean']:.2f} ± {r['std']:.2f}{gap}")
            print(f"{entry} {n}/class: " + " | ".join(cells))
        print(f"{entry} time: " + ", ".join(f"{h} x{seconds[h] / seconds['logreg']:.2f}" for h in seconds)
              + f" of logreg's {seconds['logreg']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
