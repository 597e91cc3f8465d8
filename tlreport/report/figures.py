"""The post's figures, in one house style, with reproducible bytes.

Every figure is a :class:`matplotlib.figure.Figure` built inside
:func:`house_style` (no pyplot state) and written by :func:`save_figure`:
PNG at :data:`DPI` dpi, :data:`WIDTH` inches wide unless a figure needs more,
no timestamps or version strings in the files, written atomically.  The same
inputs and library versions give byte-identical files.

Marks that carry meaning never rely on colour alone: validation curves are
dashed, wrong predictions get a thick dashed border and a "✗ WRONG" title.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator, PercentFormatter

from tlreport.report.style import (
    PALETTE,
    WIDTH,
    WRONG_COLOR,
    _atomic_write,
    _short,
    _stem,
    _to_uint8,
    _with_suffix,
    house_style,
    new_figure,
    save_figure,
)
from tlreport.report.tables import _ours

TRAIN_COLOR, VAL_COLOR = PALETTE[0], PALETTE[1]



# --------------------------------------------------------------------------- history


def plot_history(
    history: pd.DataFrame, path: str | os.PathLike, *, best_epoch: int | None = None, svg: bool = False
) -> list[Path]:
    """Loss and accuracy by epoch, training vs validation: ``<path>_loss`` and ``<path>_accuracy``.

    Training is a solid line, validation dashed; ``best_epoch`` (the weights
    kept by early stopping) is marked with a dotted vertical line.
    """
    stem = _stem(path)
    out: list[Path] = []
    for metric, label in (("loss", "cross-entropy loss"), ("accuracy", "accuracy")):
        with house_style():
            fig = new_figure(WIDTH, 4.0)
            ax = fig.add_subplot()
            ax.plot(history["epoch"], history[metric], color=TRAIN_COLOR, label="training")
            if f"val_{metric}" in history and history[f"val_{metric}"].notna().any():
                ax.plot(history["epoch"], history[f"val_{metric}"], color=VAL_COLOR, ls="--", label="validation")
            if best_epoch is not None:
                ax.axvline(best_epoch, color="#555555", ls=":", lw=1.2, label=f"best epoch ({best_epoch})")
            ax.set_xlabel("epoch")
            ax.set_ylabel(label)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if metric == "accuracy":
                ax.yaxis.set_major_formatter(PercentFormatter(1.0))
            else:
                ax.set_ylim(bottom=0)
            ax.legend(loc="upper right" if metric == "loss" else "lower right")
            out += save_figure(fig, _with_suffix(stem, f"_{metric}"), svg=svg)
    return out


# --------------------------------------------------------------------------- image grids


_TILE_HEIGHT = 1.32  # tile height / tile width: a square image plus three title lines


def _square(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    s = min(h, w)
    return img[(h - s) // 2 : (h - s) // 2 + s, (w - s) // 2 : (w - s) // 2 + s]


def _grid_figure(
    images: Sequence[np.ndarray],
    true_names: Sequence[str],
    pred_names: Sequence[str],
    confidence: Sequence[float],
    cols: int,
) -> Figure:
    n = len(images)
    if not (len(true_names) == len(pred_names) == len(confidence) == n):
        raise ValueError(
            f"images, true_names, pred_names and probs differ in length: "
            f"{n}, {len(true_names)}, {len(pred_names)}, {len(confidence)}"
        )
    cols = max(1, min(cols, n)) if n else max(1, cols)
    rows = max(1, math.ceil(n / cols))
    tile_w = WIDTH / cols
    fig = new_figure(WIDTH, rows * tile_w * _TILE_HEIGHT)
    fig.get_layout_engine().set(w_pad=0.06, h_pad=0.06, wspace=0.04, hspace=0.04)
    axes = fig.subplots(rows, cols, squeeze=False)
    fontsize = 8.5 if cols <= 3 else 7.5
    limit = 30 if cols <= 3 else 22
    for k, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if k >= n:
            continue
        wrong = str(true_names[k]) != str(pred_names[k])
        img = _square(_to_uint8(images[k]))
        ax.imshow(img, cmap="gray" if img.ndim == 2 else None)
        mark = "✗ WRONG" if wrong else "✓ right"
        ax.set_title(
            f"{mark} ({float(confidence[k]):.0%})\npred: {_short(pred_names[k], limit)}\n"
            f"true: {_short(true_names[k], limit)}",
            fontsize=fontsize,
            color=WRONG_COLOR if wrong else "#222222",
            fontweight="bold" if wrong else "normal",
            linespacing=1.15,
        )
        if wrong:
            ax.add_patch(
                Rectangle((0, 0), 1, 1, transform=ax.transAxes, fill=False, lw=4.0, ls=(0, (3, 1.5)),
                          edgecolor=WRONG_COLOR, clip_on=False, zorder=5)
            )
    return fig


def plot_prediction_grid(
    images: Sequence[np.ndarray],
    true_names: Sequence[str],
    pred_names: Sequence[str],
    probs: Sequence[float] | np.ndarray,
    path: str | os.PathLike,
    *,
    cols: int = 4,
    svg: bool = False,
) -> list[Path]:
    """A grid of test images titled with the prediction, its probability and the truth.

    Images are centre-cropped to squares so the grid stays regular.  ``probs`` is the predicted class's probability per image (a ``(N, C)``
    matrix is reduced to its row maxima).  Wrong tiles get a thick dashed
    border and a bold "✗ WRONG" title, so they stand out in greyscale too.
    """
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1) if p.ndim == 2 else p
    with house_style():
        fig = _grid_figure(images, true_names, pred_names, conf, cols)
        return save_figure(fig, path, svg=svg)


def top_mistakes(y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, k: int = 12) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence (ties: lower index first)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    conf = np.asarray(confidence, dtype=np.float64)
    wrong = np.flatnonzero(yt != yp)
    return wrong[np.argsort(-conf[wrong], kind="stable")][:k]


def plot_misclassified(
    images: Sequence[np.ndarray],
    y_true: np.ndarray,
    y_pred: np.ndarray,
    confidence: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    k: int = 12,
    cols: int = 4,
    svg: bool = False,
) -> list[Path]:
    """Gallery of the ``k`` highest-confidence mistakes (see :func:`top_mistakes`).

    ``images`` is indexed only at the chosen positions, so a lazy sequence
    (e.g. one that decodes on ``__getitem__``) avoids loading every test image.
    Returns no files when there is no mistake.
    """
    conf = np.asarray(confidence, dtype=np.float64)
    if conf.ndim == 2:
        conf = conf.max(axis=1)
    idx = top_mistakes(y_true, y_pred, conf, k)
    if len(idx) == 0:
        return []
    names = [str(c) for c in class_names]
    return plot_prediction_grid(
        [images[int(i)] for i in idx],
        [names[int(y_true[i])] for i in idx],
        [names[int(y_pred[i])] for i in idx],
        conf[idx],
        path,
        cols=cols,
        svg=svg,
    )


# --------------------------------------------------------------------------- bottleneck


def feature_grid_shape(d: int) -> tuple[int, int]:
    """Near-square ``(rows, cols)`` with ``rows * cols >= d`` for showing a feature vector.

    Uses the largest divisor of ``d`` not above ``sqrt(d)`` (2048 -> 32x64,
    1280 -> 32x40, 1536 -> 32x48); if that is more than 2.5 times wider than
    tall (1001 -> 13x77), pads to a near square instead (31x33).
    """
    if d < 1:
        raise ValueError(f"feature width must be >= 1, got {d}")
    rows = max(r for r in range(1, math.isqrt(d) + 1) if d % r == 0)
    if d / (rows * rows) > 2.5:  # e.g. a prime width: pad instead of a 1 x d strip
        rows = math.isqrt(d)
        return rows, math.ceil(d / rows)
    return rows, d // rows


def plot_bottleneck(
    image: np.ndarray, feature_vector: np.ndarray, path: str | os.PathLike, *, svg: bool = False
) -> list[Path]:
    """The photo beside its bottleneck vector drawn as a near-square heatmap."""
    v = np.asarray(feature_vector, dtype=np.float64).ravel()
    rows, cols = feature_grid_shape(v.size)
    grid = np.full(rows * cols, np.nan)
    grid[: v.size] = v
    grid = grid.reshape(rows, cols)
    with house_style():
        fig = new_figure(WIDTH, 3.4)
        ax_img, ax_vec = fig.subplots(1, 2, width_ratios=[1, cols / rows * 1.15])
        img = _to_uint8(image)
        ax_img.imshow(img, cmap="gray" if img.ndim == 2 else None)
        ax_img.set_axis_off()
        ax_img.set_title("input image")
        ax_vec.grid(False)
        im = ax_vec.imshow(grid, cmap="viridis", aspect="equal")
        ax_vec.set_xticks([])
        ax_vec.set_yticks([])
        ax_vec.spines[:].set_visible(False)
        ax_vec.set_title(f"bottleneck: {v.size} values as {rows}×{cols}")
        fig.colorbar(im, ax=ax_vec, shrink=0.85, pad=0.02)
        return save_figure(fig, path, svg=svg)


def thumbnail(image: np.ndarray, path: str | os.PathLike, size: int = 96) -> Path:
    """A ``size`` x ``size`` PNG thumbnail (centre square crop, Lanczos); returns its path."""
    from PIL import Image

    img = Image.fromarray(_to_uint8(image))
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    return _atomic_write(_with_suffix(_stem(path), ".png"), lambda f: img.save(f, format="PNG"))


def plot_accuracy_vs_ntrain(agg: pd.DataFrame, path: str | Path,
                            literature: Sequence[dict[str, Any]] | None = None, *,
                            dataset: str | None = None, svg: bool = False) -> list[Path]:
    """Mean per-class accuracy vs training images per class, error bars = std over folds.

    One solid line per backbone/head in ``agg``; literature rows, if given, are
    drawn dashed (seed-post rows with small markers), so the lines do not rely
    on colour alone.  ``path`` is without suffix; returns the files written by
    :func:`tlreport.report.style.save_figure`.
    """
    from tlreport.report.style import house_style, new_figure, save_figure

    ours = _ours(agg, dataset)
    with house_style():
        fig = new_figure(height=5.0)
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
        return save_figure(fig, Path(path), svg=svg)
