"""The grid of backbone x head x setting x split, and its aggregation."""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd

from tlreport.datasets.protocol import protocol_splits
from tlreport.errors import UserError
from tlreport.heads import get_head
from tlreport.heads.base import Head
from tlreport.heads.metrics import mean_per_class_accuracy

# ---------------------------------------------------------------------- grid

ProgressFn = Callable[[int, int, str], None]


class FinishedFits(Protocol):
    """Where :func:`run_grid` keeps the rows of each finished backbone x head, and finds them again.

    A build interrupted in the grid resumes from them; every fit is seeded on its own,
    so resumed rows are those a whole run would give.
    """

    def load(self, backbone: str, head: str) -> list[dict[str, Any]] | None: ...

    def save(self, backbone: str, head: str, rows: list[dict[str, Any]]) -> None: ...


COLUMNS = ["dataset", "backbone", "head", "n_train", "split", "mean_per_class_accuracy", "accuracy",
           "n_test", "chosen", "seconds"]

# per fit: test probabilities, flip-averaged test probabilities (None without flipped features),
# seconds for fit + predict, extra seconds for predicting the mirrors, what the head chose on its
# hold-out ("C=0.1"; "" for a head that chooses nothing)
FoldResult = tuple[np.ndarray, np.ndarray | None, float, float, str]


@dataclass(frozen=True, eq=False)
class Fit:
    """One fit of the grid: a head on one feature set's training images of one split."""

    backbone: str
    head: int          # index into the grid's heads
    n_train: int
    split: int
    train: np.ndarray  # row indices into the features
    test: np.ndarray
    seed: int          # the fit's own seed, derived from the grid seed, head, n_train and split


def run_grid(features_by_backbone: dict[str, np.ndarray], labels: np.ndarray, class_names: Sequence[str],
             *, settings: Sequence[int], test_cap: int | None, n_splits: int = 5, seed: int = 0,
             heads: Sequence[str | Head] = ("softmax_sgd", "logreg"), keys: Sequence[str] | None = None,
             progress: ProgressFn | None = None, dataset: str = "",
             features_flip: dict[str, np.ndarray] | None = None, ray_address: str | None = None,
             finished: FinishedFits | None = None) -> pd.DataFrame:
    """Run every backbone x head x ``n_train`` x fold and return one row per fit.

    The folds come from :func:`protocol_splits` and are identical for all
    backbones and heads.  With ``features_flip[backbone]`` (features of the
    horizontally flipped images, same row order) each fit gets a second row,
    head ``"<head>+flip"``, whose test predictions average the probabilities of
    the image and its mirror (test-time augmentation only; training is the same
    fit).  ``progress(done, total, description)`` is called after every fit.

    Locally, a head with ``fit_many`` trains the folds of one feature set and
    setting side by side; any other head fits one at a time, in
    ``head.processes`` worker processes, or in this process for a small grid
    (:func:`_local_rows`).
    With ``ray_address`` (``""``: ``$RAY_ADDRESS``, else a cluster on this
    machine) every fit is its own Ray task (:func:`_ray_fits`).  Every fit is
    seeded on its own, so the rows do not depend on where or with what it ran.
    With ``finished``, the rows of each backbone x head are saved there when
    done, and a backbone x head found there is not fitted again.  ``seconds``
    is the wall time of the fit plus prediction; every other column is
    deterministic in the inputs and ``seed``.
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
    per_pair = len(settings) * n_splits
    total = len(features_by_backbone) * len(head_objs) * per_pair
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}          # (backbone, head) -> its rows, in order
    results: dict[tuple[str, int], dict[tuple[int, int], FoldResult]] = {}
    todo: list[Fit] = []
    done = 0
    for backbone in features_by_backbone:
        for h, head in enumerate(head_objs):
            saved = finished.load(backbone, head.name) if finished is not None else None
            if saved is not None:                  # fitted by an interrupted run of the same stage
                rows[backbone, h] = saved
                for _ in range(per_pair):
                    done += 1
                    if progress is not None:
                        progress(done, total, f"{backbone} {head.name} (fitted by an interrupted run)")
                continue
            # the same seed for every backbone; a head's seed does not depend on the other heads
            head_key = zlib.crc32(head.name.encode())
            results[backbone, h] = {}
            todo += [Fit(backbone, h, n, s, tr, te,
                         int(np.random.SeedSequence([seed, head_key, n, s]).generate_state(1)[0]))
                     for n in settings for s, (tr, te) in enumerate(splits[n])]

    def record(fit: Fit, result: FoldResult) -> None:
        nonlocal done
        pair = (fit.backbone, fit.head)
        results[pair][fit.n_train, fit.split] = result
        done += 1
        if progress is not None:
            progress(done, total, f"{fit.backbone} {head_objs[fit.head].name} {fit.n_train}/class "
                                  f"split {fit.split + 1}/{n_splits}")
        if len(results[pair]) < per_pair:
            return
        head = head_objs[fit.head]
        pair_rows = []
        for n in settings:
            for s, (_, te) in enumerate(splits[n]):
                proba, proba_flip, seconds, seconds_flip, chosen = results[pair][n, s]
                base = dict(dataset=dataset, backbone=fit.backbone, n_train=n, split=s, n_test=int(te.size),
                            chosen=chosen)
                pair_rows.append(_row(base, head.name, labels[te], proba, num_classes, seconds))
                if proba_flip is not None:
                    pair_rows.append(_row(base, head.name + "+flip", labels[te], proba_flip, num_classes,
                                          seconds + seconds_flip))
        rows[pair] = pair_rows
        del results[pair]
        if finished is not None:
            finished.save(fit.backbone, head.name, pair_rows)

    data = _GridData(features_by_backbone, features_flip, labels, num_classes)
    if ray_address is not None and todo:
        from tlreport.util.ray_cluster import connect

        connected = connect(ray_address)
        try:
            for fit, result in _ray_fits(head_objs, todo, data):
                record(fit, result)
        finally:
            if connected:
                import ray

                ray.shutdown()
    else:
        for fit, result in _local_rows(head_objs, todo, data):
            record(fit, result)
    ordered = [r for backbone in features_by_backbone for h in range(len(head_objs)) for r in rows[backbone, h]]
    return pd.DataFrame(ordered, columns=COLUMNS)


@dataclass(frozen=True)
class _GridData:
    """What every fit reads: the features (and their mirrors) by backbone, the labels, the class count."""

    features: dict[str, np.ndarray]
    flip: dict[str, np.ndarray] | None
    labels: np.ndarray
    num_classes: int

    def mirrored(self, backbone: str) -> np.ndarray | None:
        return self.flip.get(backbone) if self.flip else None

    def rows(self, fit: Fit) -> tuple:
        """What :func:`_fit_rows` needs for ``fit``: its training rows and labels, its test rows (and their
        mirrors), the class count and its seed."""
        X = self.features[fit.backbone]
        return (X[fit.train], self.labels[fit.train], *self.test_rows(fit), self.num_classes, fit.seed)

    def test_rows(self, fit: Fit) -> tuple[np.ndarray, np.ndarray | None]:
        """``fit``'s test rows, and their mirrors (``None`` without flipped features)."""
        flip = self.mirrored(fit.backbone)
        return self.features[fit.backbone][fit.test], None if flip is None else flip[fit.test]


#: a grid whose fits read fewer training-matrix elements than this, all fits together, runs in this process:
#: its L-BFGS work is a few seconds, about what starting two worker processes costs (1.4 s, most of it
#: importing SciPy and scikit-learn).  The offline default reads 35 million, Caltech-101's 350 million
IN_PROCESS_BELOW = 100_000_000


def _local_rows(heads: list[Head], todo: list[Fit], data: _GridData) -> Iterator[tuple[Fit, FoldResult]]:
    """Every fit on this machine: one head after another, or for a small grid all in this process.

    In a small grid the heads that train with TensorFlow run in this thread
    while the others fit in a second one: TensorFlow lets go of the GIL while
    its program runs, and its small products leave a core idle that the L-BFGS
    fits take.  (In a large grid each phase already fills both cores; running
    them at once cost the Caltech-101 grid 12 to 20 s.)  The second thread's
    fits are handed over as they finish, between this thread's; if this thread
    stops (an error, Ctrl-C), the second stops after its current fit.  BLAS is
    held to one thread throughout, as in a worker process, so every fit
    computes exactly what it would there.
    """
    per_head = [[f for f in todo if f.head == h] for h in range(len(heads))]
    if sum(f.train.size * data.features[f.backbone].shape[1] for f in todo) >= IN_PROCESS_BELOW:
        for head, fits in zip(heads, per_head, strict=True):
            yield from _local_fits(head, fits, data)
        return
    import queue
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    pairs = list(zip(heads, per_head, strict=True))
    by_tf = [(head, fits) for head, fits in pairs if getattr(head, "uses_tensorflow", False)]
    others = [(head, fits) for head, fits in pairs if not getattr(head, "uses_tensorflow", False)]
    handed: queue.Queue = queue.Queue()              # ("fit", (fit, result)), ("error", exception) or ("end", None)
    stop, ended = threading.Event(), threading.Event()   # this thread stopped; the second one's fits all taken

    def fit_others() -> None:
        try:
            for head, fits in others:
                for finished in _local_fits(head, fits, data, in_process=True):
                    handed.put(("fit", finished))
                    if stop.is_set():
                        return
        except Exception as e:  # noqa: BLE001 - raised again in this thread, where the build reports it
            handed.put(("error", e))
        finally:
            handed.put(("end", None))

    def take(wait: bool) -> Iterator[tuple[Fit, FoldResult]]:
        """The second thread's finished fits: those ready now, or (``wait``) all of them."""
        while not ended.is_set():
            try:
                kind, item = handed.get(block=wait)
            except queue.Empty:
                return
            if kind == "error":
                raise item
            if kind == "end":
                ended.set()
                return
            yield item

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(max_workers=1) as second:
        second.submit(fit_others)
        try:
            for head, fits in by_tf:
                for finished in _local_fits(head, fits, data, in_process=True):
                    yield finished
                    yield from take(wait=False)
            yield from take(wait=True)
        finally:
            stop.set()


def _local_fits(head: Head, fits: list[Fit], data: _GridData, *, in_process: bool = False
                ) -> Iterator[tuple[Fit, FoldResult]]:
    """Every fit of one head on this machine, as each finishes (``in_process``: no worker processes)."""
    if not fits:
        return
    processes = 1 if in_process else getattr(head, "processes", 1)
    if hasattr(head, "fit_many"):
        # a setting's folds train side by side, one feature set at a time: a fit's numbers depend on what
        # trains beside it at the level of rounding, so the same fits always go together (a resumed build,
        # or a config with another backbone more, gives every other row exactly as before)
        groups: dict[tuple[str, int], list[Fit]] = {}
        for fit in fits:
            groups.setdefault((fit.backbone, fit.train.size), []).append(fit)
        chosen = (_choose_all(head, fits, data, processes) if hasattr(head, "choose") and hasattr(head, "train")
                  else None)
        for (backbone, n), members in groups.items():
            per = max(1, STACK_BYTES // max(1, 4 * n * data.features[backbone].shape[1]))
            for j in range(0, len(members), per):
                yield from _fit_together(head, members[j:j + per], data, chosen)
    elif processes > 1 and len(fits) > 1:
        # single-threaded fits (BLAS held to one thread) spread over processes, each sent only its own
        # rows; each fit is seeded on its own, so the results do not depend on the schedule
        from joblib import Parallel, delayed

        fits = _largest_first(fits, data)
        outs = Parallel(n_jobs=processes, backend="loky", return_as="generator")(
            delayed(_fit_rows)(head, *data.rows(fit)) for fit in fits)
        yield from zip(fits, outs, strict=True)
    else:
        for fit in fits:
            yield fit, _fit_rows(head, *data.rows(fit))


def _ray_fits(heads: list[Head], fits: list[Fit], data: _GridData) -> Iterator[tuple[Fit, FoldResult]]:
    """Every fit as its own Ray task (one CPU each), as each finishes.

    Each feature set (and its mirrors) goes into the object store once; a task
    reads the rows of its fit from there.
    """
    import ray

    from tlreport.util.ray_cluster import task_error

    task = ray.remote(num_cpus=1, max_retries=3)(_fit_one)
    labels = ray.put(data.labels)
    stored = {b: ray.put(data.features[b]) for b in dict.fromkeys(f.backbone for f in fits)}
    mirrors = {b: ray.put(data.mirrored(b)) for b in stored}
    pending = {task.remote(heads[f.head], f, stored[f.backbone], mirrors[f.backbone], labels, data.num_classes): f
               for f in fits}
    while pending:
        [ref], _ = ray.wait(list(pending), num_returns=1)
        fit = pending.pop(ref)
        try:
            yield fit, ray.get(ref)
        except ray.exceptions.RayError as e:
            for ref in pending:                # the build stops here: the cluster's other fits are not needed
                ray.cancel(ref)
            err = task_error(e, f"the {heads[fit.head].name} fits")
            if err is None:
                raise
            raise err from None


def _fit_one(head: Head, fit: Fit, features: np.ndarray, flip: np.ndarray | None, labels: np.ndarray,
             num_classes: int) -> FoldResult:
    """A Ray task: one fit, its rows read from the feature set in the object store."""
    if getattr(head, "uses_tensorflow", False):
        _tensorflow_on_one_thread()
    return _fit_rows(head, features[fit.train], labels[fit.train], features[fit.test],
                     None if flip is None else flip[fit.test], num_classes, fit.seed)


def _tensorflow_on_one_thread() -> None:
    """A Ray task asks for one CPU: TensorFlow in its worker gets one thread, not one per core of the node
    (set once per worker process, before TensorFlow starts; a worker where it already runs keeps its own)."""
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass


def _fit_rows(head: Head, X_train: np.ndarray, y_train: np.ndarray, X_test: np.ndarray,
              X_test_flip: np.ndarray | None, num_classes: int, seed: int) -> FoldResult:
    """One fit: train on the training rows, predict the test rows (and their mirrors)."""
    t0 = time.perf_counter()
    predict = head.fit(X_train, y_train, num_classes=num_classes, seed=seed)
    return _predict(predict, X_test, X_test_flip, time.perf_counter() - t0)


def _predict(predict: Any, X_test: np.ndarray, X_test_flip: np.ndarray | None, fit_seconds: float) -> FoldResult:
    t0 = time.perf_counter()
    proba = predict(X_test)
    seconds = fit_seconds + time.perf_counter() - t0
    if X_test_flip is None:
        return proba, None, seconds, 0.0, _chosen(predict)
    t1 = time.perf_counter()
    return proba, 0.5 * (proba + predict(X_test_flip)), seconds, time.perf_counter() - t1, _chosen(predict)


def _chosen(predict: Any) -> str:
    """What a fitted head chose on its hold-out, as ``"C=0.1"`` (a head sets ``predict.chosen``)."""
    return ", ".join(f"{k}={v:g}" for k, v in getattr(predict, "chosen", {}).items())


def _largest_first(fits: list[Fit], data: _GridData) -> list[Fit]:
    """``fits`` with the largest feature set's first (by training-matrix elements, each backbone x head's
    fits kept together and in their order): handed to worker processes in that order, the last to start
    are small, so no worker idles long while another finishes a large fit (in config order the
    concatenated features' fits came last).  Kept together, a backbone x head still finishes, and is
    saved for an interrupted build to resume from, one after another."""
    def size(f: Fit) -> int:
        return f.train.size * data.features[f.backbone].shape[1]

    pairs: dict[tuple[str, int], list[Fit]] = {}
    for f in fits:
        pairs.setdefault((f.backbone, f.head), []).append(f)
    order = sorted(pairs.values(), key=lambda group: -sum(size(f) for f in group))
    return [f for group in order for f in group]


STACK_BYTES = 1 << 30  # at most this much training data (float32) in one side-by-side run


def _choose_all(head: Any, fits: list[Fit], data: _GridData, processes: int) -> dict[Fit, Any]:
    """What ``head.choose`` picks for each fit, every fit at once in ``processes`` worker processes
    (single-threaded L-BFGS; each choice seeded on its own, so the schedule changes nothing)."""
    def training(f: Fit) -> tuple[np.ndarray, np.ndarray]:
        return data.features[f.backbone][f.train], data.labels[f.train]

    if processes <= 1 or len(fits) <= 1:
        return {f: head.choose(*training(f), seed=f.seed) for f in fits}
    from joblib import Parallel, delayed

    fits = _largest_first(fits, data)
    values = Parallel(n_jobs=processes, backend="loky")(delayed(head.choose)(*training(f), seed=f.seed) for f in fits)
    return dict(zip(fits, values, strict=True))


def _fit_together(head: Head, fits: list[Fit], data: _GridData,
                  chosen: dict[Fit, Any] | None = None) -> Iterator[tuple[Fit, FoldResult]]:
    """Same-shaped fits of one head trained side by side by ``head.fit_many`` (or, with what its
    ``choose`` picked for each, by ``head.train``)."""
    t0 = time.perf_counter()
    Xs, ys = [data.features[f.backbone][f.train] for f in fits], [data.labels[f.train] for f in fits]
    if chosen is not None:
        predicts = head.train(Xs, ys, [chosen[f] for f in fits], num_classes=data.num_classes,
                              seeds=[f.seed for f in fits])
    else:
        predicts = head.fit_many(Xs, ys, num_classes=data.num_classes, seeds=[f.seed for f in fits])
    fit_seconds = (time.perf_counter() - t0) / len(fits)
    for fit, predict in zip(fits, predicts, strict=True):
        X_test, X_test_flip = data.test_rows(fit)
        yield fit, _predict(predict, X_test, X_test_flip, fit_seconds)


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
