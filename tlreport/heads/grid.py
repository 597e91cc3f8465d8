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

# per fold: test probabilities, flip-averaged test probabilities (None without flipped features),
# seconds for fit + predict, extra seconds for predicting the mirrors, what the head's cross-validation
# chose ("C=0.1"; "" for a head without one)
FoldResult = tuple[np.ndarray, np.ndarray | None, float, float, str]


@dataclass(frozen=True)
class FoldJob:
    """One fit of one head on one fold: everything :func:`_fit_predict` needs."""

    head: Head
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    X_test_flip: np.ndarray | None  # features of the mirrored test images (same rows); None: no flip TTA
    num_classes: int
    seed: int  # the fit's own seed, derived from the grid seed, head, n_train and split


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
    With ``ray_address`` (``""``: ``$RAY_ADDRESS``, else a cluster on this
    machine) the fits run as Ray tasks (:func:`_ray_fits`); every fit is seeded
    on its own, so the rows are those of a local run.  With ``finished``, the
    rows of each backbone x head are saved there when done, and a backbone x
    head found there is not fitted again.
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
    connected = False
    if ray_address is not None:
        from tlreport.util.ray_cluster import connect

        connected = connect(ray_address)
    try:
        for backbone, feats in features_by_backbone.items():
            done = _backbone_rows(rows, backbone, feats, features_flip, head_objs, settings, splits, labels,
                                  num_classes, seed, dataset, n_splits, done, total, progress,
                                  ray=ray_address is not None, finished=finished)
    finally:
        if connected:
            import ray

            ray.shutdown()
    return pd.DataFrame(rows, columns=COLUMNS)


def _backbone_rows(rows: list[dict[str, Any]], backbone: str, feats: np.ndarray,
                   features_flip: dict[str, np.ndarray] | None, head_objs: list[Head], settings: Sequence[int],
                   splits: dict[int, list[tuple[np.ndarray, np.ndarray]]], labels: np.ndarray, num_classes: int,
                   seed: int, dataset: str, n_splits: int, done: int, total: int, progress: ProgressFn | None,
                   *, ray: bool, finished: FinishedFits | None = None) -> int:
    """Every head x setting x fold of one backbone, appended to ``rows``; returns the fits done so far."""
    flip = features_flip.get(backbone) if features_flip else None
    for head in head_objs:
        saved = finished.load(backbone, head.name) if finished is not None else None
        if saved is not None:                  # fitted by an interrupted run of the same stage
            rows.extend(saved)
            fits = len(settings) * n_splits
            for _ in range(fits):
                done += 1
                if progress is not None:
                    progress(done, total, f"{backbone} {head.name} (fitted by an interrupted run)")
            continue
        head_rows: list[dict[str, Any]] = []
        # the same seed for every backbone; a head's seed does not depend on the other heads
        head_key = zlib.crc32(head.name.encode())
        tasks = [(n, s, tr, te, int(np.random.SeedSequence([seed, head_key, n, s]).generate_state(1)[0]))
                 for n in settings for s, (tr, te) in enumerate(splits[n])]
        jobs = [FoldJob(head=head, X_train=feats[tr], y_train=labels[tr], X_test=feats[te],
                        X_test_flip=None if flip is None else flip[te], num_classes=num_classes, seed=fs)
                for n, s, tr, te, fs in tasks]
        if ray:
            outs: Iterator[FoldResult] = _ray_fits(head, jobs)
        elif hasattr(head, "fit_many"):
            # the folds of one setting share their shapes: train them side by side
            outs = _fit_predict_stacked(jobs)
        elif getattr(head, "processes", 1) > 1 and len(tasks) > 1:
            # single-threaded fits (BLAS pinned to one thread) spread over processes;
            # each fit is seeded on its own, so the results do not depend on the schedule
            from joblib import Parallel, delayed

            outs = Parallel(n_jobs=head.processes, backend="loky", return_as="generator")(
                delayed(_fit_predict)(job) for job in jobs)
        else:
            outs = (_fit_predict(job) for job in jobs)
        for (n, s, _, te, _), (proba, proba_flip, seconds, seconds_flip, chosen) in zip(tasks, outs, strict=True):
            base = dict(dataset=dataset, backbone=backbone, n_train=n, split=s, n_test=int(te.size), chosen=chosen)
            head_rows.append(_row(base, head.name, labels[te], proba, num_classes, seconds))
            if proba_flip is not None:
                head_rows.append(_row(base, head.name + "+flip", labels[te], proba_flip, num_classes,
                                      seconds + seconds_flip))
            done += 1
            if progress is not None:
                progress(done, total, f"{backbone} {head.name} {n}/class split {s + 1}/{n_splits}")
        rows.extend(head_rows)
        if finished is not None:
            finished.save(backbone, head.name, head_rows)
    return done


def _ray_fits(head: Head, jobs: list[FoldJob]) -> Iterator[FoldResult]:
    """:func:`_fit_predict` of each job as Ray tasks, one CPU each, results in the jobs' order.

    A head with ``fit_many`` gets one task per group of same-shaped folds (one
    setting), trained side by side as locally; any other head one task per fold.
    """
    import ray

    from tlreport.util.ray_cluster import task_error

    stacked = ray.remote(num_cpus=1, max_retries=3)(_fit_predict_stacked_list)
    single = ray.remote(num_cpus=1, max_retries=3)(_fit_predict)
    if hasattr(head, "fit_many"):
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.X_train.shape, []).append(i)
        refs = [stacked.remote([jobs[i] for i in members]) for members in groups.values()]
        try:
            results = {i: r for ref, members in zip(refs, groups.values(), strict=True)
                       for i, r in zip(members, ray.get(ref), strict=True)}
        except ray.exceptions.RayError as e:
            err = task_error(e, f"the {head.name} fits")
            if err is None:
                raise
            raise err from None
        yield from (results[i] for i in range(len(jobs)))
        return
    refs = [single.remote(job) for job in jobs]
    for ref in refs:
        try:
            yield ray.get(ref)
        except ray.exceptions.RayError as e:
            err = task_error(e, f"the {head.name} fits")
            if err is None:
                raise
            raise err from None


def _fit_predict(job: FoldJob) -> FoldResult:
    """One fold: fit on the training images, predict the test images (and their mirrors)."""
    t0 = time.perf_counter()
    predict = job.head.fit(job.X_train, job.y_train, num_classes=job.num_classes, seed=job.seed)
    proba = predict(job.X_test)
    seconds = time.perf_counter() - t0
    if job.X_test_flip is None:
        return proba, None, seconds, 0.0, _chosen(predict)
    t1 = time.perf_counter()
    return proba, 0.5 * (proba + predict(job.X_test_flip)), seconds, time.perf_counter() - t1, _chosen(predict)


def _chosen(predict: Any) -> str:
    """What a fitted head's cross-validation chose, as ``"C=0.1"`` (a head sets ``predict.chosen``)."""
    return ", ".join(f"{k}={v:g}" for k, v in getattr(predict, "chosen", {}).items())


STACK_BYTES = 1 << 30  # at most this much training data (float32) in one side-by-side run


def _fit_predict_stacked(jobs: list[FoldJob]) -> Iterator[FoldResult]:
    """:func:`_fit_predict` for each of ``jobs``, same-shaped folds trained together by ``head.fit_many``.

    All jobs are expected to share one head and ``num_classes`` (the first job of each chunk supplies them).
    """
    groups: dict[tuple[int, ...], list[int]] = {}
    for i, job in enumerate(jobs):
        groups.setdefault(job.X_train.shape, []).append(i)
    results: dict[int, FoldResult] = {}
    ready = 0                                       # results are yielded in order, as soon as they exist
    for shape, members in groups.items():
        per = max(1, STACK_BYTES // max(1, 4 * int(np.prod(shape))))
        for j in range(0, len(members), per):
            chunk = [jobs[i] for i in members[j:j + per]]
            head, num_classes = chunk[0].head, chunk[0].num_classes
            t0 = time.perf_counter()
            predicts = head.fit_many([job.X_train for job in chunk], [job.y_train for job in chunk],
                                     num_classes=num_classes, seeds=[job.seed for job in chunk])
            fit_seconds = (time.perf_counter() - t0) / len(chunk)
            for i, job, predict in zip(members[j:j + per], chunk, predicts, strict=True):
                t1 = time.perf_counter()
                proba = predict(job.X_test)
                seconds = fit_seconds + time.perf_counter() - t1
                if job.X_test_flip is None:
                    results[i] = (proba, None, seconds, 0.0, _chosen(predict))
                else:
                    t2 = time.perf_counter()
                    results[i] = (proba, 0.5 * (proba + predict(job.X_test_flip)), seconds,
                                  time.perf_counter() - t2, _chosen(predict))
            while ready in results:
                yield results.pop(ready)
                ready += 1


def _fit_predict_stacked_list(jobs: list[FoldJob]) -> list[FoldResult]:
    return list(_fit_predict_stacked(jobs))


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
