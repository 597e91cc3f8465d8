"""The confusion matrix, clustered so confusions sit near the diagonal, and the most-confused pairs."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import PercentFormatter  # noqa: E402

from tlreport.report.numbers import percent
from tlreport.report.style import (
    PHONE_DPI,
    PHONE_MIN_PT,
    PHONE_WIDTH,
    WIDTH,
    _short,
    house_style,
    new_figure,
    phone_path,
    phone_style,
    save_figure,
)

# --------------------------------------------------------------------------- confusion


def confusion_counts(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """``(C, C)`` counts; row = true class, column = predicted class."""
    yt = np.asarray(y_true, dtype=np.int64)
    yp = np.asarray(y_pred, dtype=np.int64)
    if yt.shape != yp.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {yt.shape} != {yp.shape}")
    return np.bincount(yt * num_classes + yp, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def _row_normalise(cm: np.ndarray) -> np.ndarray:
    rows = cm.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(cm, rows, out=np.zeros(cm.shape, dtype=np.float64), where=rows > 0)


def confusion_order(cm: np.ndarray) -> np.ndarray:
    """A class order that puts classes confused with each other next to each other.

    Average-linkage hierarchical clustering on ``1 - S / max(S)``, where ``S``
    is the symmetrised row-normalised confusion without its diagonal, followed
    by optimal leaf ordering.  Classes never confused keep their relative order
    at the end.  Deterministic.
    """
    from scipy.cluster.hierarchy import leaves_list, linkage, optimal_leaf_ordering
    from scipy.spatial.distance import squareform

    c = cm.shape[0]
    r = _row_normalise(cm)
    s = r + r.T
    np.fill_diagonal(s, 0.0)
    confused = np.flatnonzero(s.sum(axis=1) > 0)
    lonely = np.flatnonzero(s.sum(axis=1) == 0)
    if len(confused) < 3:
        return np.concatenate([confused, lonely]).astype(int) if c else np.arange(0)
    sub = s[np.ix_(confused, confused)]
    dist = 1.0 - sub / sub.max()
    np.fill_diagonal(dist, 0.0)
    condensed = squareform(dist, checks=False)
    z = optimal_leaf_ordering(linkage(condensed, method="average"), condensed)
    return np.concatenate([confused[leaves_list(z)], lonely]).astype(int)


#: above this many classes the inline matrix carries no class names; a full-size copy names every one
LABEL_ALL_UP_TO = 60
#: the full-size copy: every class named at this font size, at this resolution (7 pt at 200 dpi: labels
#: 19 image pixels tall, as legible as the post's text when the copy is opened at its full size) ...
FULL_LABEL_PT = 7.0
FULL_DPI = 200
#: ... unless that would make it wider than this (Caltech-256's 257 classes: 36 inches a side); 7 pt at
#: 4,800 pixels for 257 classes is still 13 pixels
FULL_MAX_PX = 4800


def full_size_dpi(c: int) -> float:
    """The resolution of the full-size copy for ``c`` classes: :data:`FULL_DPI`, capped at :data:`FULL_MAX_PX`."""
    return min(FULL_DPI, FULL_MAX_PX / full_size_side(c))


def _tick_plan(c: int, side_in: float) -> tuple[float, int]:
    """(font size in pt, label every k-th class) for ``c`` classes on ``side_in`` inches."""
    per_class_pt = side_in * 0.78 * 72 / max(c, 1)
    size = min(8.5, 0.9 * per_class_pt)
    if size >= 3.5:
        return size, 1
    return 3.5, math.ceil(3.5 / (0.9 * per_class_pt))


def full_size_side(c: int) -> float:
    """Inches per side of a matrix that names each of ``c`` classes at :data:`FULL_LABEL_PT`."""
    return max(WIDTH, c * FULL_LABEL_PT / (0.9 * 0.78 * 72))


def confusion_figure(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], *, order: str = "cluster",
    side: float | None = None, labels: bool = True, phone: bool = False,
) -> tuple[Figure, Any, np.ndarray]:
    """Build (not save) the confusion heatmap; returns ``(fig, ax, class_order)``.

    ``side`` (inches) defaults to the column width up to 30 classes, 10 in
    above; ``labels=False`` leaves the class names off (an overview).
    ``phone=True`` builds the phone variant: :data:`PHONE_WIDTH` wide, the colour
    bar below, and only text at :data:`PHONE_MIN_PT` or more, so class names
    (shortened) only where each class has room for them, cell numbers only
    where a cell holds three digits.
    """
    if phone:
        return _phone_confusion_figure(y_true, y_pred, class_names, order=order)
    c = len(class_names)
    cm = confusion_counts(y_true, y_pred, c)
    if order == "cluster":
        idx = confusion_order(cm)
    elif order == "given":
        idx = np.arange(c)
    else:
        raise ValueError(f"order must be 'cluster' or 'given'. Received: order={order!r}")
    r = _row_normalise(cm)[np.ix_(idx, idx)]
    side = side or (WIDTH if c <= 30 else 10.0)
    with house_style():
        fig = new_figure(side, side * 0.94)
        ax = fig.add_subplot()
        ax.grid(False)
        im = ax.imshow(r, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest", aspect="equal")
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.01)
        cb.set_label("fraction of the true class (square-root scale)")
        cb.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
        cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        if labels:
            names = [_short(class_names[i], 22) for i in idx]
            size, step = _tick_plan(c, side)
            ticks = np.arange(0, c, step)
            ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=size)
            ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=size)
            ax.tick_params(length=0 if c > 30 else 2, pad=1)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        # three digits fit in a cell up to 30 classes
        _frame_and_numbers(ax, cm, r, idx, min(8.5, 0.3 * side * 0.78 * 72 / c) if c <= 30 else None)
    return fig, ax, idx


def _frame_and_numbers(ax, cm: np.ndarray, r: np.ndarray, idx: np.ndarray, cell_pt: float | None) -> None:
    """Axis labels, a grey frame and, with ``cell_pt``, each non-empty cell's row percentage."""
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    for spine in ax.spines.values():
        spine.set_visible(True)
        spine.set_color("#999999")
    if cell_pt is None:
        return
    for i in range(len(idx)):
        for j in range(len(idx)):
            if cm[idx[i], idx[j]]:
                ax.text(j, i, percent(r[i, j]).rstrip("%"), ha="center", va="center", fontsize=cell_pt,
                        color="white" if r[i, j] > 0.45 else "#222222")


#: the phone variant's class names: at most this many characters
PHONE_NAME_CHARS = 12


def _phone_confusion_figure(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], *,
                            order: str) -> tuple[Figure, Any, np.ndarray]:
    c = len(class_names)
    cm = confusion_counts(y_true, y_pred, c)
    idx = confusion_order(cm) if order == "cluster" else np.arange(c)
    r = _row_normalise(cm)[np.ix_(idx, idx)]
    names = [_short(class_names[i], PHONE_NAME_CHARS) for i in idx]
    # points per class along the matrix side: the width less the names and the axis label
    name_pt = 0.62 * PHONE_MIN_PT * max((len(n) for n in names), default=0) + 8
    per_class = (PHONE_WIDTH * 72 - name_pt - 26) / max(c, 1)
    labels = per_class >= 1.15 * PHONE_MIN_PT
    if not labels:
        per_class = (PHONE_WIDTH * 72 - 26) / max(c, 1)
    numbers = per_class >= 3 * 0.64 * PHONE_MIN_PT + 2
    side_pt = per_class * c
    with phone_style():
        fig = new_figure(PHONE_WIDTH, (side_pt + (name_pt if labels else 0) + 70) / 72)
        ax = fig.add_subplot()
        ax.grid(False)
        im = ax.imshow(r, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest", aspect="equal")
        cb = fig.colorbar(im, ax=ax, orientation="horizontal", shrink=0.9, pad=0.02, aspect=30)
        cb.set_label("share of the true class (√ scale)")
        cb.set_ticks([0, 0.1, 0.5, 1.0])
        cb.ax.xaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        if labels:
            ticks = np.arange(c)
            ax.set_xticks(ticks, names, rotation=90)
            ax.set_yticks(ticks, names)
            ax.tick_params(length=2, pad=1)
        else:
            ax.set_xticks([])
            ax.set_yticks([])
        _frame_and_numbers(ax, cm, r, idx, PHONE_MIN_PT if numbers else None)
    return fig, ax, idx


def plot_confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    order: str = "cluster",
    svg: bool = False,
    phone: bool = True,
) -> list[Path]:
    """Row-normalised confusion heatmap, classes ordered so confusions cluster.

    Up to 30 classes every cell shows its percentage, up to
    :data:`LABEL_ALL_UP_TO` every class is named.  Above that no column-wide
    image can name them legibly, so ``<path>.png`` is an unlabelled overview
    at the column's width and ``<path>_full.png`` (returned second) names every
    class at :data:`FULL_LABEL_PT` pt, for a reader who opens it large.
    ``order="given"`` keeps the class order.  With ``phone`` the phone variant
    (``<path>.phone``, see :func:`confusion_figure`) comes last.
    """
    c = len(class_names)
    if phone:
        fig, _, _ = confusion_figure(y_true, y_pred, class_names, order=order, phone=True)
        small = save_figure(fig, phone_path(path), dpi=PHONE_DPI)
    else:
        small = []
    if c <= LABEL_ALL_UP_TO:
        fig, _, _ = confusion_figure(y_true, y_pred, class_names, order=order)
        return save_figure(fig, path, svg=svg) + small
    from tlreport.report.style import _stem, _with_suffix

    fig, _, _ = confusion_figure(y_true, y_pred, class_names, order=order, side=WIDTH, labels=False)
    out = save_figure(fig, path, svg=svg)
    side = full_size_side(c)
    fig, _, _ = confusion_figure(y_true, y_pred, class_names, order=order, side=side)
    dpi = full_size_dpi(c)
    fig.set_dpi(dpi)
    return out + save_figure(fig, _with_suffix(_stem(path), "_full"), dpi=dpi) + small


def confused_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], k: int | None = 15
) -> pd.DataFrame:
    """The ``k`` most-confused ordered pairs (true -> predicted), off the diagonal (``None``: all).

    Columns ``true, predicted, count, rate``; ``rate`` is ``count`` over the
    number of images of the true class.  Sorted by count (descending), then by
    true and predicted name.  Pairs never confused are left out.
    """
    c = len(class_names)
    cm = confusion_counts(y_true, y_pred, c)
    totals = cm.sum(axis=1)
    i, j = np.nonzero(cm)
    keep = i != j
    i, j = i[keep], j[keep]
    df = pd.DataFrame(
        {
            "true": [str(class_names[a]) for a in i],
            "predicted": [str(class_names[b]) for b in j],
            "count": cm[i, j].astype(int),
            "rate": cm[i, j] / totals[i],
        }
    )
    df = df.sort_values(["count", "true", "predicted"], ascending=[False, True, True], kind="mergesort")
    return (df if k is None else df.head(k)).reset_index(drop=True)


def cut_at_a_tie(pairs: pd.DataFrame, k: int) -> tuple[pd.DataFrame, dict | None]:
    """At most ``k`` of ``pairs`` (sorted by count, as :func:`confused_pairs` gives them), never cutting
    through pairs confused equally often: those at the cut are all left out.

    Returns the rows to show and ``{"left": n, "most": c}``: the ``n`` pairs not shown, each confused at
    most ``c`` times (``None`` when every pair is shown).  When every pair is tied at the top, the first
    ``k`` by name are shown and the rest counted.

    >>> df = pd.DataFrame({"count": [5, 3, 2, 2, 1]})
    >>> [len(cut_at_a_tie(df, k)[0]) for k in (2, 3, 5)], cut_at_a_tie(df, 3)[1], cut_at_a_tie(df, 4)[1]
    ([2, 2, 5], {'left': 3, 'most': 2}, {'left': 1, 'most': 1})
    """
    pairs = pairs.reset_index(drop=True)
    if len(pairs) <= k:
        return pairs, None
    counts = pairs["count"].to_numpy()
    shown = k if counts[k] != counts[k - 1] else int((counts > counts[k - 1]).sum()) or k
    return pairs.head(shown), {"left": len(pairs) - shown, "most": int(counts[shown])}
