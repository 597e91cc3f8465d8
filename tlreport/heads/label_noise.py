"""Images whose given label is probably wrong: confident learning on out-of-fold probabilities.

The method is **confident learning** (Northcutt, Jiang & Chuang, 2021, "Confident Learning:
Estimating Uncertainty in Dataset Labels", JAIR 70:1373-1411), implemented here in a few lines of
numpy rather than through ``cleanlab``; it follows cleanlab's default filter
(``filter_by="prune_by_noise_rate"``, ranked by ``"self_confidence"``):

1. :func:`out_of_fold_probabilities`: every image's class probabilities come from a model that
   never saw it -- stratified K-fold cross-validation of an L2 multinomial logistic regression
   (scikit-learn, lbfgs) on features standardised, then reduced by PCA, on each training fold only.
2. :func:`confident_joint`: per-class thresholds ``t_j`` = mean predicted probability of class
   ``j`` over the images labelled ``j``; an image is *confidently counted* in class ``j`` when
   ``p_j >= t_j`` (the most probable such ``j`` when several pass); ``C[i, j]`` counts the images
   labelled ``i`` confidently counted in ``j`` (paper, Eq. 1), then each row is calibrated to sum
   to the number of images labelled ``i`` (Eq. 2).
3. :func:`find_label_issues`, the paper's *Prune by Noise Rate* (PBNR, Sec. 3.2): for
   every off-diagonal cell ``(i, j)``, among the images labelled ``i`` the ``round(C[i, j])`` with
   the largest margin ``p_j - p_i`` are flagged (at least one image of each class is kept, as
   cleanlab's ``min_examples_per_class=1``); as in cleanlab, a flagged image whose most probable
   class is its given label is unflagged.  The flagged images are ranked by *self-confidence*, the
   probability of the given label, lowest first; the suggested label is the most probable class.

Small differences from cleanlab 2.x: an image above several thresholds counts in the most probable
of *those* classes (the paper's Eq. 1; cleanlab takes the overall most probable class), and the
counts to prune are the calibrated cells rounded to the nearest integer (cleanlab rounds rows so
they keep their totals, then truncates).

Everything is deterministic: same inputs and seed, same output (BLAS is held to one thread during
the fits, as :class:`~tlreport.heads.logreg.LogRegHead` does, so the result does not depend on the
machine's core count either).
"""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

__all__ = ["LabelIssue", "confident_joint", "find_label_issues", "out_of_fold_probabilities",
           "projected_components"]


@dataclass(frozen=True)
class LabelIssue:
    """One image whose given label is probably wrong."""

    index: int               # row of ``probs`` / ``y``
    given: int               # its label in the dataset
    suggested: int           # the most probable class out of fold
    self_confidence: float   # out-of-fold probability of the given label (the ranking key, lowest first)
    suggested_probability: float


def _check(probs: np.ndarray | None, y: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1 or y.size == 0:
        raise ValueError(f"labels must be a non-empty 1-d array, got shape {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise ValueError(f"labels must be integers, got {y.dtype}")
    k = num_classes if num_classes is not None else (probs.shape[1] if probs is not None and probs.ndim == 2 else None)
    if y.min() < 0 or (k is not None and y.max() >= k):
        raise ValueError(f"labels must lie in 0..{k - 1 if k is not None else 'K-1'}, got {y.min()}..{y.max()}")
    if probs is not None:
        if probs.ndim != 2 or probs.shape[0] != y.size:
            raise ValueError(f"probs must be (n, num_classes) with n = len(labels) = {y.size}, got {probs.shape}")
        if not np.all(np.isfinite(probs)):
            raise ValueError("probs holds NaN or infinite values")
    return y.astype(np.int64)


def projected_components(n: int, d: int, *, folds: int, components: int | None) -> int | None:
    """The principal components :func:`out_of_fold_probabilities` projects ``n`` images of ``d`` features on:
    ``components`` when every training fold has more images and features than that, else ``None`` (no
    projection; the same for every fold, so one model is cross-validated).

    Stratified test folds differ in size by at most one image, so the smallest training fold has
    ``n - ceil(n / folds)`` images.
    """
    if components is None or components >= min(d, n - -(-n // folds)):
        return None
    return components


def out_of_fold_probabilities(X: np.ndarray, y: np.ndarray, num_classes: int, *, folds: int = 5, seed: int,
                              C: float = 0.03, components: int | None = 512, max_iter: int = 300,
                              tol: float = 1e-4, n_jobs: int | None = None) -> np.ndarray:
    """(n, num_classes) class probabilities of every image from a model fitted without it.

    Stratified ``folds``-fold split (shuffled with ``seed``); on each training part the features
    are standardised, projected on their first ``components`` principal components (``None``, or as
    many as the smallest training fold has images or features: no projection, :func:`projected_components`)
    and an L2 multinomial logistic regression (lbfgs, inverse penalty ``C``) is fitted;
    the held-out part gets that model's ``predict_proba``.  Classes absent from a training part
    get probability 0 there.  Every class needs at least ``folds`` images.

    PCA to 512 components (randomized, 3 power iterations) halves the cost of the fits at the same
    out-of-fold accuracy and nearly the same flags; why 512 and C = 0.03: docs/performance.md, *Label noise*.
    ``n_jobs`` folds run side by side in threads (default: up to 2).
    """
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from threadpoolctl import threadpool_limits

    n_jobs = n_jobs if n_jobs is not None else min(2, os.cpu_count() or 1)
    X = np.asarray(X)
    y = _check(None, y, num_classes)
    if X.ndim != 2 or X.shape[0] != y.size:
        raise ValueError(f"X must be (n, d) with n = len(y) = {y.size}, got {X.shape}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X holds NaN or infinite values")
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    counts = np.bincount(y, minlength=num_classes)
    if counts[counts > 0].min() < folds:
        small = int(np.flatnonzero((counts > 0) & (counts < folds))[0])
        raise ValueError(f"class {small} has {counts[small]} images; {folds}-fold cross-validation needs {folds}")
    X = X.astype(np.float32, copy=False)
    components = projected_components(y.size, X.shape[1], folds=folds, components=components)
    out = np.zeros((y.size, num_classes), dtype=np.float64)
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed) % (2**32))

    def fold(tr: np.ndarray, te: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        mean = X[tr].mean(axis=0)
        std = X[tr].std(axis=0)
        std[std == 0] = 1.0
        Xtr, Xte = (X[tr] - mean) / std, (X[te] - mean) / std
        if components is not None:
            pca = PCA(n_components=components, svd_solver="randomized", iterated_power=3,
                      random_state=int(seed) % (2**32))
            Xtr = pca.fit_transform(Xtr).astype(np.float32, copy=False)
            Xte = pca.transform(Xte).astype(np.float32, copy=False)
        model = LogisticRegression(C=C, solver="lbfgs", max_iter=max_iter, tol=tol)
        model.fit(Xtr, y[tr])
        return te, model.classes_, model.predict_proba(Xte)

    # one BLAS thread per fit (machine-independent results; L-BFGS's many small BLAS calls are slower
    # threaded, see LogRegHead), folds side by side in threads: each fold is the same computation
    # whichever thread runs it, so n_jobs never changes the result
    with threadpool_limits(limits=1, user_api="blas"), warnings.catch_warnings():
        warnings.simplefilter("ignore")          # lbfgs may stop at max_iter; the probabilities are still usable
        splits = list(cv.split(X, y))
        if n_jobs > 1:
            with ThreadPoolExecutor(min(n_jobs, folds)) as pool:
                results = list(pool.map(lambda s: fold(*s), splits))
        else:
            results = [fold(tr, te) for tr, te in splits]
    for te, classes, p in results:
        out[np.ix_(te, classes)] = p
    return out


def confident_joint(probs: np.ndarray, y: np.ndarray, *, calibrate: bool = True) -> np.ndarray:
    """(K, K) confident joint: row = given label, column = the class an image is confidently counted in.

    Thresholds ``t_j`` = mean of ``probs[:, j]`` over the images labelled ``j`` (a class with no
    images never passes); an image counts in the most probable class ``j`` with ``p_j >= t_j``,
    and nowhere if none passes.  With ``calibrate`` each row is rescaled to the number of images
    with that label (the paper's Eq. 2); the result is then float, else integer counts.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = _check(probs, y)
    k = probs.shape[1]
    counts = np.bincount(y, minlength=k)
    sums = np.zeros(k)
    np.add.at(sums, y, probs[np.arange(y.size), y])
    with np.errstate(invalid="ignore", divide="ignore"):
        thresholds = np.where(counts > 0, sums / np.maximum(counts, 1), np.inf)
    above = probs >= thresholds - 1e-12          # equality within rounding counts, as cleanlab's epsilon
    masked = np.where(above, probs, -np.inf)
    counted = above.any(axis=1)
    where = masked.argmax(axis=1)
    joint = np.zeros((k, k), dtype=np.int64)
    np.add.at(joint, (y[counted], where[counted]), 1)
    if not calibrate:
        return joint
    rows = joint.sum(axis=1, keepdims=True)
    return np.where(rows > 0, joint / np.maximum(rows, 1) * counts[:, None], 0.0)


def find_label_issues(probs: np.ndarray, y: np.ndarray) -> list[LabelIssue]:
    """Images probably mislabelled, most suspicious first (see the module docstring for the method).

    ``probs``: (n, K) out-of-fold class probabilities (:func:`out_of_fold_probabilities`);
    ``y``: (n,) given labels in 0..K-1.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = _check(probs, y)
    n, k = probs.shape
    joint = confident_joint(probs, y)
    counts = np.bincount(y, minlength=k)
    flagged = np.zeros(n, dtype=bool)
    for i in range(k):
        members = np.flatnonzero(y == i)
        if members.size == 0:
            continue
        prune = np.rint(joint[i]).astype(np.int64)
        prune[i] = 0
        budget = max(int(counts[i]) - 1, 0)          # keep at least one image of every class
        if prune.sum() > budget:
            prune = np.floor(prune * budget / prune.sum()).astype(np.int64)
        for j in np.flatnonzero(prune):
            margin = probs[members, j] - probs[members, i]
            # largest margin first; ties by index, so the order never depends on the sort's stability
            order = np.lexsort((members, -margin))
            flagged[members[order[: prune[j]]]] = True
    flagged &= probs.argmax(axis=1) != y           # cleanlab: the model's own top class is never an issue
    idx = np.flatnonzero(flagged)
    self_conf = probs[idx, y[idx]]
    idx = idx[np.lexsort((idx, self_conf))]
    sugg = probs[idx].argmax(axis=1)
    return [LabelIssue(int(i), int(y[i]), int(s), float(probs[i, y[i]]), float(probs[i, s]))
            for i, s in zip(idx, sugg, strict=True)]
