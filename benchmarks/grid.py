"""How long the Zeiler & Fergus grid takes on cached features, and what the fast paths buy.

Run by hand::

    .venv/bin/python benchmarks/grid.py                 # synthetic Caltech-101-shaped features
    .venv/bin/python benchmarks/grid.py --features f.npz  # real cached features

``f.npz`` holds ``features`` (N, D) float, ``labels`` (N,) int and optionally
``class_names``.  Synthetic features mimic Caltech-101 with a 1280-d backbone:
9,145 images, 102 classes sized like Caltech's (31..800 images), class means on
a low-rank subspace, non-negative like pooled post-activation features.

Printed, in one run:

1. logistic regression, one fold: a naive ``LogisticRegressionCV`` (same C grid,
   3 folds, float64, no early exit) vs :class:`tlreport.heads.logreg.LogRegHead`;
2. the softmax head, one fold: a plain Keras ``model.fit`` vs
   :func:`tlreport.heads.softmax.train_softmax` (same epochs, batch, optimiser);
3. the whole grid for one backbone and both heads (2 settings x 5 splits x 2
   heads = 20 fits), against the 2-minute target.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tlreport.datasets.protocol import protocol_splits
from tlreport.heads.grid import aggregate, run_grid
from tlreport.heads.logreg import LogRegHead
from tlreport.heads.metrics import mean_per_class_accuracy
from tlreport.heads.softmax_sgd import SoftmaxSGDHead

# Images per class in Caltech-101's 101_ObjectCategories (BACKGROUND_Google included), sorted.
CALTECH101_SIZES = [
    31, 32, 33, 34, 34, 34, 34, 35, 35, 35, 37, 38, 39, 39, 39, 40, 40, 41, 42, 42, 42, 43, 43, 43, 45,
    45, 45, 46, 47, 47, 47, 47, 49, 49, 50, 50, 51, 51, 52, 53, 53, 54, 54, 55, 55, 56, 57, 57, 57, 59,
    59, 59, 59, 60, 61, 62, 63, 64, 64, 64, 64, 64, 65, 66, 67, 67, 67, 68, 69, 70, 73, 75, 75, 76, 78,
    80, 81, 82, 84, 85, 85, 85, 86, 86, 86, 87, 88, 91, 98, 99, 100, 107, 114, 123, 128, 200, 239, 435,
    435, 468, 798, 800,
]


def synthetic_caltech101(dim: int = 1280, *, noise: float = 2.5, nuisance: float = 3.0, rank: int = 64,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Caltech-101-shaped features: (9145, dim) float32, labels, 102 class names.

    Class means live on a ``rank``-dim subspace; on top of isotropic ``noise``
    every image gets a strong shared ``nuisance`` component (pose, background)
    on another low-rank subspace, so the noise is correlated as in real CNN
    features and a discriminative head beats nearest-centroid.  Rectified, as
    pooled post-activation features are.
    """
    rng = np.random.default_rng(seed)
    sizes = np.array(CALTECH101_SIZES)
    rng.shuffle(sizes)
    labels = np.repeat(np.arange(sizes.size), sizes)
    basis = rng.normal(size=(rank, dim)).astype(np.float32) / np.sqrt(rank)
    means = rng.normal(size=(sizes.size, rank)).astype(np.float32) @ basis
    nuis = rng.normal(size=(32, dim)).astype(np.float32) / np.sqrt(32)
    X = means[labels] + nuisance * rng.normal(size=(labels.size, 32)).astype(np.float32) @ nuis
    X += noise * rng.normal(size=(labels.size, dim)).astype(np.float32)
    X = np.maximum(X + 0.5, 0.0, out=X)
    return X, labels, [f"class_{i:03d}" for i in range(sizes.size)]


class Timer:
    """Wall and process-CPU seconds of a block (CPU time is less sensitive to other load)."""

    def __enter__(self) -> Timer:
        self.w0, self.c0 = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0

    def __str__(self) -> str:
        return f"{self.wall:6.1f} s wall/{self.cpu:6.1f} s cpu"


def load_features(path: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    with np.load(path, allow_pickle=False) as z:
        X = np.asarray(z["features"], dtype=np.float32)
        y = np.asarray(z["labels"]).astype(np.int64)
        names = [str(n) for n in z["class_names"]] if "class_names" in z else [
            f"class_{i}" for i in range(int(y.max()) + 1)]
    return X, y, names


def bench_logreg(X: np.ndarray, y: np.ndarray, names: list[str], n_train: int, seed: int) -> None:
    tr, te = protocol_splits(y, names, n_train=n_train, test_cap=50, n_splits=1, seed=seed)[0]
    head = LogRegHead()
    with Timer() as t_naive:
        pred_naive, C_naive = _naive_logreg(X, y, tr, te, head, seed)
    with Timer() as t_fast:
        predict = head.fit(X[tr], y[tr], num_classes=len(names), seed=seed)
        pred_fast = predict(X[te]).argmax(1)
    acc_n = mean_per_class_accuracy(y[te], pred_naive, len(names)) * 100
    acc_f = mean_per_class_accuracy(y[te], pred_fast, len(names)) * 100
    print(f"logreg {n_train:>2}/class: LogisticRegressionCV {t_naive} (C={C_naive:g}, {acc_n:.1f}%)"
          f" | LogRegHead {t_fast} (C={predict.C:g}, {acc_f:.1f}%)"
          f" | speed-up x{t_naive.wall / t_fast.wall:.1f} wall, x{t_naive.cpu / t_fast.cpu:.1f} cpu")


def _naive_logreg(X: np.ndarray, y: np.ndarray, tr: np.ndarray, te: np.ndarray,
                  head: LogRegHead, seed: int) -> tuple[np.ndarray, float]:
    """The textbook way: LogisticRegressionCV over the whole grid, float64."""
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(X[tr])
    cv = StratifiedKFold(3, shuffle=True, random_state=seed)
    naive = LogisticRegressionCV(Cs=list(head.C_grid), cv=cv, solver="lbfgs", max_iter=head.max_iter,
                                 tol=head.tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        naive.fit(scaler.transform(X[tr]).astype(np.float64), y[tr])
    pred = naive.predict(scaler.transform(X[te]).astype(np.float64))
    return pred, float(np.atleast_1d(naive.C_)[0])


def bench_softmax(X: np.ndarray, y: np.ndarray, names: list[str], n_train: int, epochs: int, seed: int
                  ) -> None:
    import keras

    tr, te = protocol_splits(y, names, n_train=n_train, test_cap=50, n_splits=1, seed=seed)[0]
    mean, std = X[tr].mean(0), X[tr].std(0) + 1e-6
    Xs, Xt = (X[tr] - mean) / std, (X[te] - mean) / std
    k = len(names)
    with Timer() as t_keras:
        keras.utils.set_random_seed(seed)
        model = keras.Sequential([keras.Input((X.shape[1],)),
                                  keras.layers.Dense(k, activation="softmax",
                                                     kernel_regularizer=keras.regularizers.L2(1e-4))])
        steps = int(np.ceil(len(tr) / 64)) * epochs
        model.compile(optimizer=keras.optimizers.SGD(keras.optimizers.schedules.CosineDecay(0.01, steps),
                                                     momentum=0.9),
                      loss="sparse_categorical_crossentropy")
        model.fit(Xs, y[tr], batch_size=64, epochs=epochs, verbose=0, shuffle=True)
        pred_keras = model.predict(Xt, verbose=0).argmax(1)
    with Timer() as t_fast:
        predict = SoftmaxSGDHead(epochs=epochs).fit(X[tr], y[tr], num_classes=k, seed=seed)
        pred_fast = predict(X[te]).argmax(1)
    acc_k = mean_per_class_accuracy(y[te], pred_keras, k) * 100
    acc_f = mean_per_class_accuracy(y[te], pred_fast, k) * 100
    print(f"softmax {n_train:>2}/class, {epochs} epochs: keras model.fit {t_keras} ({acc_k:.1f}%)"
          f" | train_softmax {t_fast} ({acc_f:.1f}%)"
          f" | speed-up x{t_keras.wall / t_fast.wall:.1f} wall, x{t_keras.cpu / t_fast.cpu:.1f} cpu")


def bench_grid(X: np.ndarray, y: np.ndarray, names: list[str], seed: int, target_s: float) -> None:
    with Timer() as t:
        df = run_grid({"backbone": X}, y, names, settings=[15, 30], test_cap=50, n_splits=5,
                                  seed=seed, heads=["softmax_sgd", "logreg"], dataset="caltech101")
    agg = aggregate(df)
    for r in agg.itertuples():
        print(f"  {r.head:<12} {r.n_train:>2}/class  {r.mean:5.1f} ± {r.std:.1f}  ({r.seconds:.1f} s/fit)")
    verdict = "within" if t.wall <= target_s else "OVER"
    print(f"grid: {len(df)} fits in {t} ({verdict} the {target_s:.0f} s wall target; "
          f"on 2 idle cores wall is at most the cpu time)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", type=Path, help="npz with features, labels[, class_names]")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=30, help="epochs for the Keras-vs-trainer comparison")
    ap.add_argument("--skip", nargs="*", default=[], choices=["logreg", "softmax", "grid"])
    args = ap.parse_args(argv)
    X, y, names = load_features(args.features) if args.features else synthetic_caltech101(seed=args.seed)
    print(f"features {X.shape}, {len(names)} classes, sizes {np.bincount(y).min()}..{np.bincount(y).max()}")
    if "logreg" not in args.skip:
        for n in (15, 30):
            bench_logreg(X, y, names, n, args.seed)
    if "softmax" not in args.skip:
        bench_softmax(X, y, names, 30, args.epochs, args.seed)
    if "grid" not in args.skip:
        bench_grid(X, y, names, args.seed, target_s=120.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
