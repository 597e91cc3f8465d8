"""What sharing a fold's batches among its penalty candidates buys the softmax head's cross-validation.

Run by hand::

    .venv/bin/python benchmarks/softmax_cv.py                 # D = 1280 and 3840 (three Lites side by side)
    .venv/bin/python benchmarks/softmax_cv.py --dim 3840 --epochs 20

``SoftmaxSGDHead`` picks its L2 penalty by 3-fold cross-validation over 3 candidates for each of a
setting's 5 splits.  Times, interleaved in one run, one training of all those CV heads on
Caltech-101-shaped random features (30 images per class: CV trains on 2,040 images, 102 classes):

1. one head per candidate, each on its own copy of the images in its own order
   (:func:`train_softmax_many`, the layout before ``train_softmax_penalties``);
2. one problem per CV split, its candidates side by side in one kernel, one batch order
   (:func:`train_softmax_penalties`, what the head runs now).

Prints seconds per epoch and the ratio (1)/(2), and the training data each layout holds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from tlreport.heads.softmax import train_softmax_many, train_softmax_penalties  # noqa: E402


def _compare(d: int, args: argparse.Namespace, kw: dict) -> None:
    l2s = [3e-2, 1e-2, 3e-3]
    rng = np.random.default_rng(0)
    y = np.arange(args.n) % args.classes
    X = np.abs(rng.normal(size=(args.n, d))).astype(np.float32)
    X[:, : args.classes] += 2.0 * np.eye(args.classes, dtype=np.float32)[y]
    empty = (np.zeros((0, d), np.float32), np.zeros(0, np.int32))
    problems = [(X, y, *empty)] * args.problems
    seeds = list(range(args.problems))

    def apart() -> None:
        train_softmax_many([p for p in problems for _ in l2s], seeds=[s + 7919 * j for s in seeds for j in range(len(l2s))],
                           l2=[v for _ in problems for v in l2s], **kw)

    def shared() -> None:
        train_softmax_penalties(problems, seeds=seeds, l2s=l2s, **kw)

    times: dict[str, list[float]] = {"apart": [], "shared": []}
    for _ in range(args.rounds):
        for name, fn in (("apart", apart), ("shared", shared)):
            t0 = time.perf_counter()
            fn()
            times[name].append((time.perf_counter() - t0) / args.epochs)
    a, s = statistics.median(times["apart"]), statistics.median(times["shared"])
    heads = args.problems * len(l2s)

    def gib(k: int) -> float:
        return k * args.n * d * 4 / 2**30

    print(f"D={d}: {heads} heads, {args.n} images, {args.classes} classes, {args.epochs} epochs, "
          f"median of {args.rounds}")
    print(f"  (1) one head per candidate, own order   {a:7.3f} s/epoch   data {gib(heads):.2f} GiB")
    print(f"  (2) candidates share a fold's batches   {s:7.3f} s/epoch   data {gib(args.problems):.2f} GiB")
    print(f"  (1)/(2) = {a / s:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, nargs="+", default=[1280, 3840])
    ap.add_argument("--n", type=int, default=2040, help="CV training images (2/3 of 30 per class x 102)")
    ap.add_argument("--classes", type=int, default=102)
    ap.add_argument("--problems", type=int, default=15, help="CV splits in one run (5 splits x 3 folds)")
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    kw = dict(num_classes=args.classes, epochs=args.epochs, lr=0.03, batch_size=128, schedule="cosine",
              patience=None, standardize=False, l2_weighting="variance")
    for d in args.dim:
        _compare(d, args, kw)
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
