"""Accuracy metrics of predicted probabilities."""

from __future__ import annotations

import numpy as np

from tlreport.heads.softmax import _EPS

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


def evaluate(probs: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, mean per-class accuracy, cross-entropy, top-5 accuracy and ``n``.

    Mean per-class accuracy averages the recall of the classes present in ``y``
    (the Caltech protocol's number).  The loss clips probabilities at 1e-7 as
    Keras does.  Top-5 becomes top-``num_classes`` when there are fewer classes.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if probs.ndim != 2 or probs.shape != (len(y), num_classes):
        raise ValueError(f"probs must be ({len(y)}, {num_classes}); got {probs.shape}")
    n = len(y)
    if n == 0:
        nan = float("nan")
        return dict(accuracy=nan, mean_per_class_accuracy=nan, loss=nan, top5_accuracy=nan, n=0)
    pred = probs.argmax(axis=1)
    hit = pred == y
    present = np.unique(y)
    per_class = np.array([hit[y == c].mean() for c in present])
    p_true = np.clip(probs[np.arange(n), y], _EPS, 1.0 - _EPS)
    k = min(5, num_classes)
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < num_classes else np.tile(np.arange(num_classes), (n, 1))
    top5 = (topk == y[:, None]).any(axis=1)
    return dict(
        accuracy=float(hit.mean()),
        mean_per_class_accuracy=float(per_class.mean()),
        loss=float(-np.log(p_true).mean()),
        top5_accuracy=float(top5.mean()),
        n=int(n),
        # 95% intervals: Wilson for the two proportions, a class-stratified bootstrap for the mean of recalls
        accuracy_ci=wilson_interval(int(hit.sum()), n),
        top5_accuracy_ci=wilson_interval(int(top5.sum()), n),
        mean_per_class_accuracy_ci=mean_per_class_interval(hit, y),
    )


def wilson_interval(successes: int, n: int, z: float = 1.959963984540054) -> list[float]:
    """The Wilson score interval of a proportion (95% by default), as ``[low, high]`` fractions.

    Unlike the normal approximation it stays inside [0, 1] and is not empty at 0 or n successes.

    >>> [round(v, 4) for v in wilson_interval(8, 10)]
    [0.4902, 0.9433]
    >>> wilson_interval(0, 0)
    [nan, nan]
    """
    if n <= 0:
        return [float("nan"), float("nan")]
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return [float(max(0.0, centre - half)), float(min(1.0, centre + half))]


def difference_interval(hits_a: int, n_a: int, hits_b: int, n_b: int) -> list[float]:
    """A 95% interval of the difference of two independent proportions, ``hits_a / n_a - hits_b / n_b``.

    Newcombe's hybrid score interval (method 10 of Newcombe, 1998), built from the two Wilson
    intervals: whether two proportions differ by more than chance is read from this interval, not from
    whether their own intervals overlap (two intervals can overlap while the difference excludes 0).

    Newcombe's own examples (his Table II, method 10):

    >>> [round(v, 4) for v in difference_interval(56, 70, 48, 80)]
    [0.0524, 0.3339]
    >>> [round(v, 4) for v in difference_interval(9, 10, 3, 10)]
    [0.1705, 0.809]
    """
    if n_a <= 0 or n_b <= 0:
        return [float("nan"), float("nan")]
    p_a, p_b = hits_a / n_a, hits_b / n_b
    (low_a, high_a), (low_b, high_b) = wilson_interval(hits_a, n_a), wilson_interval(hits_b, n_b)
    d = p_a - p_b
    return [float(d - np.hypot(p_a - low_a, high_b - p_b)), float(d + np.hypot(high_a - p_a, p_b - low_b))]


def mean_per_class_interval(hit: np.ndarray, y: np.ndarray, z: float = 1.959963984540054) -> list[float]:
    """A 95% interval of the mean per-class accuracy: the estimate plus or minus ``z`` standard errors,
    each class's variance taken at Agresti and Coull's adjusted proportion, (k + 2) / (n + 4) for k of
    its n test images right, over n + 4; clipped to [0, 1].

    The classes are independent draws, so the variance of their mean is the sum of theirs over the
    number of classes squared.  The adjustment keeps a class with every image right (or none) from
    counting as certain: a bootstrap that resamples each class's images, or the plain k/n, gives such
    a class no spread at all, and so an interval too narrow when classes have a few test images.

    >>> low, high = mean_per_class_interval(np.ones(8), np.zeros(8))      # 8 of 8 right: not certain
    >>> round(low, 3), high
    (0.789, 1.0)
    """
    hit = np.asarray(hit, dtype=np.float64)
    y = np.asarray(y)
    if len(y) == 0:
        return [float("nan"), float("nan")]
    _, inverse = np.unique(y, return_inverse=True)
    n = np.bincount(inverse).astype(np.float64)
    right = np.bincount(inverse, weights=hit)
    adjusted = (right + 2) / (n + 4)
    se = float(np.sqrt((adjusted * (1 - adjusted) / (n + 4)).sum())) / len(n)
    estimate = float((right / n).mean())
    return [max(0.0, estimate - z * se), min(1.0, estimate + z * se)]
