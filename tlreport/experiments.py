"""The Zeiler & Fergus transfer protocol (arXiv:1311.2901v3, section 5.2) on cached features.

Protocol, as the paper and the seed post run it:

* Caltech-101: draw 15 or 30 training images per class at random, test on up to
  50 of the remaining images per class; Caltech-256: 15/30/45/60 per class, test
  on up to 25 of the rest.  Five seeded train/test folds per setting.
* The metric is the mean per-class accuracy (the average of the per-class
  recalls), so Caltech's huge classes (airplanes, faces) do not dominate.
* The background classes (``BACKGROUND_Google``, ``257.clutter``) are ordinary
  classes by default: 102 and 257 classes.

Everything downstream of the features lives here: the splits, two heads
(the seed's SGD-momentum softmax and a tuned logistic regression), the grid of
backbone x head x setting x split, its aggregation, the literature rows the seed
compares against, and the table/figure/sentence helpers the report renders.
All randomness flows from one ``seed`` through :class:`numpy.random.SeedSequence`;
nothing touches the global ``np.random`` state.
"""

from __future__ import annotations

import os
import time
import tomllib
import warnings
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tlreport.errors import UserError

__all__ = [
    "PROTOCOLS",
    "HEADS",
    "DatasetProtocol",
    "Predictor",
    "Head",
    "LogRegHead",
    "SoftmaxSGDHead",
    "ProtocolSplit",
    "protocol_splits",
    "mean_per_class_accuracy",
    "run_grid",
    "aggregate",
    "literature_rows",
    "comparison_sentences",
    "table_rows",
    "plot_accuracy_vs_ntrain",
    "format_cell",
    "get_head",
]


# ----------------------------------------------------------------- protocols


@dataclass(frozen=True)
class DatasetProtocol:
    """The Zeiler & Fergus settings for one dataset."""

    dataset: str
    settings: tuple[int, ...]
    test_cap: int
    background: str
    num_classes: int
    n_splits: int = 5


PROTOCOLS: dict[str, DatasetProtocol] = {
    "caltech101": DatasetProtocol("caltech101", (15, 30), 50, "BACKGROUND_Google", 102),
    "caltech256": DatasetProtocol("caltech256", (15, 30, 45, 60), 25, "257.clutter", 257),
}


# -------------------------------------------------------------------- splits


class ProtocolSplit:
    """Per-class random train/test folds: ``n_train`` per class, the rest (capped) for test.

    The folds depend only on the labels (and, if given, the per-image ``keys``),
    ``seed``, ``n_train``, ``test_cap`` and ``n_splits`` -- never on features --
    so every backbone and head sees exactly the same images.  Fold ``s`` draws
    from its own child of ``SeedSequence(seed)``, so asking for more folds does
    not change the earlier ones.  With ``keys`` (e.g. image sha256 strings) the
    images of a class are ordered by key before drawing, which makes the folds
    independent of the order the manifest happened to list the files in.

    Parameters
    ----------
    n_train : int
        Training images per class.
    test_cap : int or None
        At most this many of the remaining images per class are tested; ``None``
        tests on all of them.
    n_splits : int
        Number of folds.
    seed : int
        The one seed every draw derives from.

    Examples
    --------
    >>> labels = np.repeat([0, 1], [5, 7])
    >>> folds = list(ProtocolSplit(n_train=3, test_cap=2, n_splits=2, seed=0).split(labels))
    >>> [(len(tr), len(te)) for tr, te in folds]
    [(6, 4), (6, 4)]
    """

    def __init__(self, *, n_train: int, test_cap: int | None, n_splits: int = 5, seed: int = 0):
        self.n_train = n_train
        self.test_cap = test_cap
        self.n_splits = n_splits
        self.seed = seed

    def _validate(self, labels: np.ndarray, class_names: Sequence[str] | None,
                  keys: Sequence[str] | None) -> tuple[np.ndarray, int]:
        if int(self.n_train) != self.n_train or self.n_train < 1:
            raise UserError(f"n_train must be a positive integer. Received: n_train={self.n_train!r}")
        if self.test_cap is not None and (int(self.test_cap) != self.test_cap or self.test_cap < 1):
            raise UserError(f"test_cap must be a positive integer or None. Received: test_cap={self.test_cap!r}")
        if int(self.n_splits) != self.n_splits or self.n_splits < 1:
            raise UserError(f"n_splits must be a positive integer. Received: n_splits={self.n_splits!r}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise UserError(f"labels must be a 1-d integer array. Received: shape={labels.shape}, "
                            f"dtype={labels.dtype}")
        if labels.size and labels.min() < 0:
            raise UserError("labels must be non-negative class indices.")
        num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
        if labels.size and labels.max() >= num_classes:
            raise UserError(f"label {int(labels.max())} has no class name ({num_classes} names given).")
        if keys is not None and len(keys) != len(labels):
            raise UserError(f"keys must have one entry per image: {len(keys)} keys for {len(labels)} labels.")
        counts = np.bincount(labels, minlength=num_classes)
        need = self.n_train + 1
        short = np.flatnonzero(counts < need)
        if short.size:
            names = [class_names[i] if class_names is not None else f"class {i}" for i in short]
            listed = ", ".join(f"{n!r} has {counts[i]}" for n, i in zip(names, short, strict=True))
            raise UserError(
                f"{short.size} class(es) have too few images for {self.n_train} training images per class "
                f"(at least {need} needed, n_train + 1 test image): {listed}. Lower n_train or drop "
                f"these classes.")
        return labels, num_classes

    def split(self, labels: np.ndarray, class_names: Sequence[str] | None = None,
              keys: Sequence[str] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, test_idx)`` index arrays (sorted) for each fold."""
        labels, num_classes = self._validate(labels, class_names, keys)
        members = []
        for c in range(num_classes):
            idx = np.flatnonzero(labels == c)
            if keys is not None:
                idx = idx[np.argsort(np.asarray([str(keys[i]) for i in idx]), kind="stable")]
            members.append(idx)
        for child in np.random.SeedSequence(self.seed).spawn(self.n_splits):
            rng = np.random.default_rng(child)
            train, test = [], []
            for idx in members:
                order = idx[rng.permutation(idx.size)]
                train.append(order[: self.n_train])
                rest = order[self.n_train:]
                test.append(rest if self.test_cap is None else rest[: self.test_cap])
            yield np.sort(np.concatenate(train)), np.sort(np.concatenate(test))

    def get_n_splits(self) -> int:
        return self.n_splits


def protocol_splits(labels: np.ndarray, class_names: Sequence[str] | None, *, n_train: int,
                    test_cap: int | None, n_splits: int = 5, seed: int = 0,
                    keys: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """All folds of :class:`ProtocolSplit` as a list of ``(train_idx, test_idx)``.

    Raises :class:`~tlreport.errors.UserError` naming every class with fewer than
    ``n_train + 1`` images.
    """
    splitter = ProtocolSplit(n_train=n_train, test_cap=test_cap, n_splits=n_splits, seed=seed)
    return list(splitter.split(labels, class_names, keys))


# -------------------------------------------------------------------- metric


def mean_per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> float:
    """Average over classes of the fraction of that class's test images predicted correctly.

    Classes with no test image are left out of the average (their recall is
    undefined).  Returns a fraction in ``[0, 1]``.

    Examples
    --------
    >>> mean_per_class_accuracy(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), 2)
    0.8333333333333333
    """
    y_true = np.asarray(y_true)
    y_pred = np.asarray(y_pred)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {y_true.shape} vs {y_pred.shape}")
    total = np.bincount(y_true, minlength=num_classes)
    right = np.bincount(y_true[y_true == y_pred], minlength=num_classes)
    present = total > 0
    if not present.any():
        raise ValueError("y_true is empty")
    return float(np.mean(right[present] / total[present]))


# --------------------------------------------------------------------- heads


class Predictor(Protocol):
    """A fitted head: class probabilities, ``(n, num_classes)``, columns in label order."""

    def __call__(self, X: np.ndarray) -> np.ndarray: ...


class Head(Protocol):
    """A classifier trained on one fold's training features."""

    name: str

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor: ...


def _full_proba(proba: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    if proba.shape[1] == num_classes and np.array_equal(classes, np.arange(num_classes)):
        return proba
    out = np.zeros((proba.shape[0], num_classes), dtype=proba.dtype)
    out[:, classes] = proba
    return out


@dataclass(frozen=True)
class LogRegHead:
    """L2 multinomial logistic regression (lbfgs) on standardised features, C tuned by CV.

    The scaler is fit on the training split only; ``C`` is chosen by stratified
    ``cv_folds``-fold cross-validation *inside the training split* (accuracy, ties
    broken by log-loss, then by the smaller C).  The grid is walked from the
    strongest regularisation up, each fold warm-starting from its previous
    solution, and the walk stops once ``patience`` consecutive values score below
    the best so far.  The final fit on the whole split warm-starts from the mean
    of the fold solutions at the chosen C.  Work is done in float32, which halves
    the cost of every matrix product.

    BLAS is limited to ``blas_threads`` (default 1) during the fit: SciPy's
    L-BFGS-B (C translation, SciPy >= 1.15) makes many level-1 BLAS calls on the
    130k-long parameter vector, and multi-threaded OpenBLAS makes each of them
    slow -- one thread was 4-5x faster on 2 cores (benchmarks/grid.py).  It also
    makes the float32 results independent of the machine's core count.
    ``n_jobs > 1`` fits the CV folds of one C in that many threads (each with
    ``blas_threads`` BLAS threads); results do not change.  ``processes`` is how
    many of :func:`run_grid`'s folds run at once in worker processes (default:
    up to 2 cores); each fold is seeded on its own, so results do not change.
    """

    C_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
    cv_folds: int = 3
    patience: int = 2
    tol_cv: float = 1e-3
    tol: float = 1e-4
    max_iter: int = 300
    dtype: Any = np.float32
    blas_threads: int | None = 1
    n_jobs: int = 1
    processes: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    name: str = "logreg"

    def select_C(self, Xs: np.ndarray, y: np.ndarray, *, seed: int
                 ) -> tuple[float, dict[float, float], list[tuple[np.ndarray, np.ndarray]] | None]:
        """Cross-validate ``C`` on standardised training features.

        Returns the chosen C, the mean CV accuracy per C tried, and the fold
        solutions ``(coef, intercept)`` at the chosen C (``None`` when CV was
        impossible because a class has fewer than 2 images).
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold

        grid = sorted(self.C_grid)
        counts = np.bincount(y)
        n_min = int(counts[counts > 0].min()) if y.size else 0
        folds = min(self.cv_folds, n_min)
        if folds < 2 or len(grid) == 1:
            return grid[len(grid) // 2], {}, None
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed) % (2**32))
        fold_idx = list(cv.split(Xs, y))
        models = [LogisticRegression(C=grid[0], solver="lbfgs", tol=self.tol_cv, max_iter=self.max_iter,
                                     warm_start=True) for _ in fold_idx]
        scores: dict[float, float] = {}
        best_key: tuple[float, float, float] | None = None
        best_C, best_sol, worse = grid[0], None, 0
        parts = [(Xs[tr], y[tr], Xs[va], y[va]) for tr, va in fold_idx]
        k = int(y.max()) + 1

        def run_fold(i: int, C: float) -> tuple[float, float, tuple[np.ndarray, np.ndarray]]:
            model, (Xa, ya, Xv, yv) = models[i], parts[i]
            model.set_params(C=C)
            model.fit(Xa, ya)
            p = _full_proba(model.predict_proba(Xv), model.classes_, k)
            acc = float(np.mean(p.argmax(1) == yv))
            loss = float(-np.mean(np.log(np.clip(p[np.arange(yv.size), yv], 1e-12, None))))
            return acc, loss, (model.coef_.copy(), model.intercept_.copy())

        pool = ThreadPoolExecutor(self.n_jobs) if self.n_jobs > 1 else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs may stop at max_iter on a CV fit
                for C in grid:
                    if pool is None:
                        out = [run_fold(i, C) for i in range(len(models))]
                    else:
                        out = list(pool.map(run_fold, range(len(models)), [C] * len(models)))
                    acc, loss, sol = ([o[j] for o in out] for j in range(3))
                    scores[C] = float(np.mean(acc))
                    key = (scores[C], -float(np.mean(loss)), -C)
                    if best_key is None or key > best_key:
                        best_key, best_C, best_sol, worse = key, C, sol, 0
                    else:
                        worse += 1
                        if worse >= self.patience:
                            break
        finally:
            if pool is not None:
                pool.shutdown()
        return best_C, scores, best_sol

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            return self._fit(X, y, num_classes=num_classes, seed=seed)

    def _fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=self.dtype)
        scaler = StandardScaler().fit(X)
        Xs = scaler.transform(X).astype(self.dtype, copy=False)
        C, _, sols = self.select_C(Xs, y, seed=seed)
        model = LogisticRegression(C=C, solver="lbfgs", tol=self.tol, max_iter=self.max_iter,
                                   warm_start=sols is not None)
        if sols is not None and all(s[0].shape == sols[0][0].shape for s in sols):
            model.coef_ = np.mean([s[0] for s in sols], axis=0)
            model.intercept_ = np.mean([s[1] for s in sols], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Xs, y)
        dtype = self.dtype

        def predict(Xq: np.ndarray) -> np.ndarray:
            Xq = scaler.transform(np.asarray(Xq, dtype=dtype)).astype(dtype, copy=False)
            return _full_proba(model.predict_proba(Xq), model.classes_, num_classes)

        predict.C = C  # type: ignore[attr-defined]
        return predict


@dataclass(frozen=True)
class SoftmaxSGDHead:
    """The seed's head: a softmax layer trained with SGD + momentum (``training.train_softmax``).

    Inside the protocol there is no validation set, and carving one out of the
    training split would train on fewer than ``n_train`` images per class (at 15
    per class every image counts).  So the head trains a *fixed* budget on all
    ``n_train`` images per class: ``epochs`` epochs under the trainer's cosine
    schedule, which decays the learning rate to zero at the last epoch -- a
    natural end point that early stopping would only approximate -- with the
    trainer's L2 penalty as the regulariser and early stopping switched off.
    The defaults are the trainer's, picked on Caltech-101-sized problems;
    nothing is tuned on test images.  ``train_kwargs`` passes any other
    :func:`tlreport.training.train_softmax` option (``lr``, ``l2``, ...).
    """

    epochs: int = 100
    train_kwargs: dict[str, Any] = field(default_factory=dict)
    name: str = "softmax_sgd"

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        return self.fit_many([X], [y], num_classes=num_classes, seeds=[seed])[0]

    def fit_many(self, Xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, num_classes: int,
                 seeds: Sequence[int]) -> list[Predictor]:
        """Several same-shaped folds at once (:func:`tlreport.training.train_softmax_many`).

        Each fold gets exactly the head :meth:`fit` would give it alone.
        """
        from tlreport import training

        kwargs = {"schedule": "cosine", "patience": None, **self.train_kwargs}
        problems = []
        for X, y in zip(Xs, ys, strict=True):
            X = np.asarray(X, dtype=np.float32)
            problems.append((X, y, np.zeros((0, X.shape[1]), np.float32), np.zeros(0, np.int32)))
        heads = training.train_softmax_many(problems, seeds=seeds, num_classes=num_classes, epochs=self.epochs,
                                            **kwargs)

        def predictor(head: training.TrainedHead) -> Predictor:
            return lambda Xq: training.predict_proba(head, Xq)

        return [predictor(h) for h in heads]


HEADS: dict[str, Callable[[], Head]] = {
    "softmax_sgd": SoftmaxSGDHead,
    "logreg": LogRegHead,
}


def get_head(head: str | Head) -> Head:
    """A head by registry name (``softmax_sgd``, ``logreg``), or the head object itself."""
    if not isinstance(head, str):
        return head
    try:
        return HEADS[head]()
    except KeyError:
        raise UserError(f"Unknown head {head!r}; known heads: {', '.join(sorted(HEADS))}.") from None


# ---------------------------------------------------------------------- grid

ProgressFn = Callable[[int, int, str], None]

COLUMNS = ["dataset", "backbone", "head", "n_train", "split", "mean_per_class_accuracy", "accuracy",
           "n_test", "seconds"]


def run_grid(features_by_backbone: dict[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str],
             *, settings: Sequence[int], test_cap: int | None, n_splits: int = 5, seed: int = 0,
             heads: Sequence[str | Head] = ("softmax_sgd", "logreg"), keys: Sequence[str] | None = None,
             progress: ProgressFn | None = None, dataset: str = "",
             features_flip: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Run every backbone x head x ``n_train`` x fold and return one row per fit.

    The folds come from :func:`protocol_splits` and are identical for all
    backbones and heads.  With ``features_flip[backbone]`` (features of the
    horizontally flipped images, same row order) each fit gets a second row,
    head ``"<head>+flip"``, whose test predictions average the probabilities of
    the image and its mirror (test-time augmentation only; training is the same
    fit).  ``progress(done, total, description)`` is called after every fit.
    ``seconds`` is the wall time of the fit plus prediction; every other column
    is deterministic in the inputs and ``seed``.
    """
    labels = np.asarray(labels)
    num_classes = len(class_names)
    head_objs = [get_head(h) for h in heads]
    for name, feats in features_by_backbone.items():
        if len(feats) != len(labels):
            raise UserError(f"backbone {name!r}: {len(feats)} feature rows for {len(labels)} labels.")
        if features_flip and name in features_flip and features_flip[name].shape != feats.shape:
            raise UserError(f"backbone {name!r}: flipped features have shape {features_flip[name].shape}, "
                            f"expected {feats.shape}.")
    splits = {n: protocol_splits(labels, class_names, n_train=n, test_cap=test_cap, n_splits=n_splits,
                                 seed=seed, keys=keys) for n in settings}
    total = len(features_by_backbone) * len(head_objs) * len(settings) * n_splits
    rows: list[dict[str, Any]] = []
    done = 0
    for backbone, feats in features_by_backbone.items():
        flip = features_flip.get(backbone) if features_flip else None
        for head in head_objs:
            # the same seed for every backbone; a head's seed does not depend on the other heads
            head_key = zlib.crc32(head.name.encode())
            tasks = [(n, s, tr, te, int(np.random.SeedSequence([seed, head_key, n, s]).generate_state(1)[0]))
                     for n in settings for s, (tr, te) in enumerate(splits[n])]
            args = [(head, feats[tr], labels[tr], feats[te], None if flip is None else flip[te], num_classes, fs)
                    for n, s, tr, te, fs in tasks]
            if hasattr(head, "fit_many"):
                # the folds of one setting share their shapes: train them side by side
                outs: Iterator[tuple[np.ndarray, np.ndarray | None, float, float]] = _fit_predict_stacked(args)
            elif getattr(head, "processes", 1) > 1 and len(tasks) > 1:
                # single-threaded fits (BLAS pinned to one thread) spread over processes;
                # each fit is seeded on its own, so the results do not depend on the schedule
                from joblib import Parallel, delayed

                outs = Parallel(n_jobs=head.processes, backend="loky", return_as="generator")(
                    delayed(_fit_predict)(*a) for a in args)
            else:
                outs = (_fit_predict(*a) for a in args)
            for (n, s, _, te, _), (proba, proba_flip, seconds, seconds_flip) in zip(tasks, outs, strict=True):
                base = dict(dataset=dataset, backbone=backbone, n_train=n, split=s, n_test=int(te.size))
                rows.append(_row(base, head.name, labels[te], proba, num_classes, seconds))
                if proba_flip is not None:
                    rows.append(_row(base, head.name + "+flip", labels[te], proba_flip, num_classes,
                                     seconds + seconds_flip))
                done += 1
                if progress is not None:
                    progress(done, total, f"{backbone} {head.name} {n}/class split {s + 1}/{n_splits}")
    return pd.DataFrame(rows, columns=COLUMNS)


def _fit_predict(head: Head, Xtr: np.ndarray, ytr: np.ndarray, Xte: np.ndarray, Xte_flip: np.ndarray | None,
                 num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray | None, float, float]:
    """One fold: fit on the training images, predict the test images (and their mirrors)."""
    t0 = time.perf_counter()
    predict = head.fit(Xtr, ytr, num_classes=num_classes, seed=seed)
    proba = predict(Xte)
    seconds = time.perf_counter() - t0
    if Xte_flip is None:
        return proba, None, seconds, 0.0
    t1 = time.perf_counter()
    return proba, 0.5 * (proba + predict(Xte_flip)), seconds, time.perf_counter() - t1


STACK_BYTES = 1 << 30  # at most this much training data (float32) in one side-by-side run


def _fit_predict_stacked(args: list[tuple[Any, ...]]) -> Iterator[tuple[np.ndarray, np.ndarray | None, float, float]]:
    """:func:`_fit_predict` for each of ``args``, same-shaped folds trained together by ``head.fit_many``."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, a in enumerate(args):
        groups.setdefault(a[1].shape, []).append(i)
    results: dict[int, tuple[np.ndarray, np.ndarray | None, float, float]] = {}
    ready = 0                                       # results are yielded in order, as soon as they exist
    for shape, members in groups.items():
        per = max(1, STACK_BYTES // max(1, 4 * int(np.prod(shape))))
        for j in range(0, len(members), per):
            chunk = [args[i] for i in members[j:j + per]]
            head, num_classes = chunk[0][0], chunk[0][5]
            t0 = time.perf_counter()
            predicts = head.fit_many([a[1] for a in chunk], [a[2] for a in chunk], num_classes=num_classes,
                                     seeds=[a[6] for a in chunk])
            fit_seconds = (time.perf_counter() - t0) / len(chunk)
            for i, a, predict in zip(members[j:j + per], chunk, predicts, strict=True):
                t1 = time.perf_counter()
                proba = predict(a[3])
                seconds = fit_seconds + time.perf_counter() - t1
                if a[4] is None:
                    results[i] = (proba, None, seconds, 0.0)
                else:
                    t2 = time.perf_counter()
                    results[i] = (proba, 0.5 * (proba + predict(a[4])), seconds, time.perf_counter() - t2)
            while ready in results:
                yield results.pop(ready)
                ready += 1


def _row(base: dict[str, Any], head: str, y: np.ndarray, proba: np.ndarray, num_classes: int,
         seconds: float) -> dict[str, Any]:
    pred = proba.argmax(axis=1)
    return {**base, "head": head, "mean_per_class_accuracy": mean_per_class_accuracy(y, pred, num_classes),
            "accuracy": float(np.mean(pred == y)), "seconds": seconds}


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean and spread over folds per dataset x backbone x head x ``n_train``.

    ``mean`` and ``std`` are the mean per-class accuracy in percent; ``std`` is
    the *sample* standard deviation over folds (``ddof=1``), the usual reading
    of the literature's "mean ± std over 5 splits" (it is ``NaN`` for a single
    fold).  ``accuracy`` is the mean overall accuracy in percent, ``seconds`` the
    mean time per fit.
    """
    keys = ["dataset", "backbone", "head", "n_train"]
    g = df.groupby(keys, sort=False)
    out = pd.DataFrame({
        "mean": g["mean_per_class_accuracy"].mean() * 100.0,
        "std": g["mean_per_class_accuracy"].std(ddof=1) * 100.0,
        "n_splits": g["split"].count(),
        "accuracy": g["accuracy"].mean() * 100.0,
        "seconds": g["seconds"].mean(),
    }).reset_index()
    return out


# ---------------------------------------------------------------- literature


def _literature_path() -> Path:
    from tlreport.paths import shipped_path

    return shipped_path("data", "literature.toml")


def literature_rows(dataset: str, path: Path | None = None) -> list[dict[str, Any]]:
    """The published and seed-post rows for ``dataset`` (``caltech101`` or ``caltech256``).

    Each row is ``{"label", "kind", "citation", "note", "dataset", "results"}``
    where ``results`` maps ``n_train`` to ``{"mean": ..., "std": ... or None}``
    in percent, exactly as the seed post prints them.
    """
    path = path or _literature_path()
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    rows = []
    for raw in data.get("row", []):
        if raw["dataset"] != dataset:
            continue
        results = {int(r["n_train"]): {"mean": float(r["mean"]),
                                       "std": float(r["std"]) if "std" in r else None}
                   for r in raw["results"]}
        rows.append({"dataset": raw["dataset"], "label": raw["label"], "kind": raw.get("kind", "literature"),
                     "citation": raw.get("citation", ""), "note": raw.get("note", ""), "results": results})
    if not rows:
        known = sorted({r["dataset"] for r in data.get("row", [])})
        raise UserError(f"No literature rows for dataset {dataset!r} in {path}; known: {', '.join(known)}.")
    return rows


# ----------------------------------------------------------- report helpers


def _decimals(value: float, exact: bool) -> int:
    """One decimal, as the seed prints; literature values keep a printed second decimal (0.33)."""
    if exact and abs(round(value, 1) - value) > 1e-9:
        return 2
    return 1


def format_cell(mean: float | None, std: float | None, *, exact: bool = False) -> str:
    """``"87.5 ± 0.5"``, ``"73.2"`` without a std, ``"-"`` when there is no result."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "-"
    text = f"{mean:.{_decimals(mean, exact)}f}"
    if std is not None and not (isinstance(std, float) and np.isnan(std)):
        text += f" ± {std:.{_decimals(std, exact)}f}"
    return text


def _ours(agg: pd.DataFrame, dataset: str | None) -> list[tuple[str, dict[int, dict[str, float]]]]:
    """``[(label, {n_train: {mean, std}})]`` for every backbone/head in ``agg``."""
    if dataset is not None and "dataset" in agg:
        agg = agg[agg["dataset"] == dataset]
    out = []
    for (backbone, head), g in agg.groupby(["backbone", "head"], sort=False):
        res = {int(r.n_train): {"mean": float(r.mean), "std": float(r.std)} for r in g.itertuples()}
        out.append((f"{backbone} + {head}", res))
    return out


def table_rows(agg: pd.DataFrame, literature: Sequence[dict[str, Any]], settings: Sequence[int], *,
               dataset: str | None = None) -> tuple[list[list[str]], list[list[bool]]]:
    """Cells for the results table and which of them to bold.

    Returns ``(rows, best)``: ``rows[i] = [label, cell for settings[0], ...]``
    (literature rows first, then ours; a cell is ``"mean ± std"`` with one
    decimal, as the seed), and ``best[i][j]`` is true where row ``i`` has the
    highest mean in column ``settings[j]`` (ties all flagged).  ``best`` has no
    entry for the label column.
    """
    entries: list[tuple[str, dict[int, dict[str, Any]], bool]] = [
        (r["label"], r["results"], True) for r in literature]
    entries += [(label, res, False) for label, res in _ours(agg, dataset)]
    rows, means = [], []
    for label, res, exact in entries:
        cells, row_means = [label], []
        for n in settings:
            r = res.get(n)
            cells.append(format_cell(r["mean"], r["std"], exact=exact) if r else "-")
            row_means.append(r["mean"] if r else np.nan)
        rows.append(cells)
        means.append(row_means)
    m = np.asarray(means, dtype=float).reshape(len(rows), len(settings))
    best = np.zeros_like(m, dtype=bool)
    for j in range(m.shape[1]):
        col = m[:, j]
        if np.isfinite(col).any():
            # compare at the printed precision so two cells that read the same are both bold
            best[:, j] = np.round(col, 1) == np.nanmax(np.round(col, 1))
    return rows, best.tolist()


def comparison_sentences(agg: pd.DataFrame, literature: Sequence[dict[str, Any]], dataset: str
                         ) -> list[str]:
    """A few sentences of facts computed from ``agg`` against the literature rows.

    For the largest and smallest training setting: the best backbone/head, and
    its gap to the seed's best row and to Zeiler & Fergus; then how much the
    best result gains from the smallest to the largest setting.
    """
    ours = _ours(agg, dataset)
    if not ours:
        return []
    settings = sorted({n for _, res in ours for n in res})
    sentences = []
    seed_rows = [r for r in literature if r.get("kind") == "seed post"]
    paper_rows = [r for r in literature if r.get("kind") != "seed post"]
    for n in sorted({settings[0], settings[-1]}, reverse=True):
        scored = [(res[n]["mean"], res[n]["std"], label) for label, res in ours if n in res]
        mean, std, label = max(scored)
        text = f"At {n} training images per class, {label} reaches {format_cell(mean, std)}%"
        refs = []
        for group in (seed_rows, paper_rows):
            cand = [(r["results"][n]["mean"], r["label"]) for r in group if n in r["results"]]
            if cand:
                ref_mean, ref_label = max(cand)
                refs.append(f"{_points(mean - ref_mean)} {ref_label} ({ref_mean:.1f})")
        if refs:
            text += ", " + " and ".join(refs)
        sentences.append(text + ".")
    if len(settings) > 1:
        lo, hi = settings[0], settings[-1]
        gains = [(res[hi]["mean"] - res[lo]["mean"], label) for label, res in ours if lo in res and hi in res]
        if gains:
            gain, label = max(gains)
            sentences.append(f"The largest gain from {lo} to {hi} training images per class is "
                             f"{gain:.1f} points ({label}).")
    return sentences


def _points(diff: float) -> str:
    if abs(diff) < 0.05:
        return "level with"
    return f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'}"


def plot_accuracy_vs_ntrain(agg: pd.DataFrame, path: str | Path,
                            literature: Sequence[dict[str, Any]] | None = None, *,
                            dataset: str | None = None, svg: bool = False) -> list[Path]:
    """Mean per-class accuracy vs training images per class, error bars = std over folds.

    One solid line per backbone/head in ``agg``; literature rows, if given, are
    drawn dashed (seed-post rows with small markers), so the lines do not rely
    on colour alone.  ``path`` is without suffix; returns the files written by
    :func:`tlreport.figures.save_figure`.
    """
    from tlreport import figures

    ours = _ours(agg, dataset)
    with figures.house_style():
        fig = figures.new_figure(height=5.0)
        ax = fig.add_subplot()
        for label, res in ours:
            ns = sorted(res)
            ax.errorbar(ns, [res[n]["mean"] for n in ns],
                        yerr=[0.0 if np.isnan(res[n]["std"]) else res[n]["std"] for n in ns],
                        marker="o", capsize=3, label=label)
        for row in literature or []:
            ns = sorted(row["results"])
            seed_row = row.get("kind") == "seed post"
            ax.errorbar(ns, [row["results"][n]["mean"] for n in ns],
                        yerr=[row["results"][n]["std"] or 0.0 for n in ns],
                        linestyle="--" if seed_row else ":", marker="s" if seed_row else "^",
                        markersize=4, capsize=2, alpha=0.8,
                        label=f"{row['label']} (seed post)" if seed_row else row["label"])
        ticks = sorted({n for _, res in ours for n in res} | {n for r in literature or [] for n in r["results"]})
        ax.set_xticks(ticks)
        ax.set_xlabel("training images per class")
        ax.set_ylabel("mean per-class accuracy (%)")
        fig.legend(loc="outside lower center", ncols=2)
        return figures.save_figure(fig, Path(path), svg=svg)
