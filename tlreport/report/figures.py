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

from tlreport.report.numbers import percent
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
    save_photo_figure,
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
            out += save_figure(fig, _with_suffix(stem, f"_{metric}"), svg=svg, palette=True)
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
            f"{mark} ({percent(confidence[k])})\npred: {_short(pred_names[k], limit)}\n"
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
) -> list[Path]:
    """A grid of test images titled with the prediction, its probability and the truth.

    Images are centre-cropped to squares so the grid stays regular.  ``probs`` is the predicted class's probability per image (a ``(N, C)``
    matrix is reduced to its row maxima).  Wrong tiles get a thick dashed
    border and a bold "✗ WRONG" title, so they stand out in greyscale too.
    The grid is photographs, so it is written as ``<path>.jpg``.
    """
    p = np.asarray(probs, dtype=np.float64)
    conf = p.max(axis=1) if p.ndim == 2 else p
    with house_style():
        fig = _grid_figure(images, true_names, pred_names, conf, cols)
        return save_photo_figure(fig, path)


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
    """A ``size`` x ``size`` thumbnail (centre square crop, Lanczos); returns its path.

    Written as JPEG when ``path`` ends in ``.jpg`` (photographs), else as PNG.
    """
    from PIL import Image

    from tlreport.report.style import JPEG_QUALITY

    img = Image.fromarray(_to_uint8(image))
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    img = img.resize((size, size), Image.Resampling.LANCZOS)
    if Path(path).suffix.lower() == ".jpg":
        return _atomic_write(Path(path), lambda f: img.convert("RGB").save(
            f, format="JPEG", quality=JPEG_QUALITY, optimize=True))
    return _atomic_write(_with_suffix(_stem(path), ".png"), lambda f: img.save(f, format="PNG"))


#: markers per feature set, so lines differ without colour (greyscale print, colour-vision deficiency)
_MARKERS = ["o", "s", "D", "^", "v", "P", "X", "h"]
#: line styles per head, in the order heads first appear
_HEAD_STYLES = ["-", (0, (5, 2)), (0, (1, 1.5)), (0, (6, 2, 1, 2))]
_REFERENCE_GREYS = ["#4d4d4d", "#7a7a7a", "#a6a6a6"]


def reference_rows(literature: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a comparison figure draws for reference: every seed-post row, then the best published row.

    "Best" is the published row with the highest mean at its largest setting.
    """
    seed = [r for r in literature if r.get("kind") == "seed post"]
    papers = [r for r in literature if r.get("kind") != "seed post" and r["results"]]
    best = max(papers, key=lambda r: r["results"][max(r["results"])]["mean"], default=None)
    return seed + ([best] if best else [])


def plot_accuracy_vs_ntrain(agg: pd.DataFrame, path: str | Path,
                            literature: Sequence[dict[str, Any]] | None = None, *,
                            dataset: str | None = None, svg: bool = False) -> list[Path]:
    """Write :func:`accuracy_figure` as ``<path>.png``; returns the files written."""
    from tlreport.report.style import house_style, save_figure

    with house_style():
        return save_figure(accuracy_figure(agg, literature, dataset=dataset), Path(path), svg=svg, palette=True)


def accuracy_figure(agg: pd.DataFrame, literature: Sequence[dict[str, Any]] | None = None, *,
                    dataset: str | None = None) -> Figure:
    """Mean per-class accuracy vs training images per class, error bars = ± one std over splits.

    This build's rows: one colour and marker per feature set, one line style
    per head (solid, dashed, ...), so a row is told apart in greyscale too.
    Reference rows (see :func:`reference_rows`): the seed post's rows in greys
    with hollow markers and thin lines, the best published row in black
    dash-dot.  Points of one setting are spread a little sideways so error
    bars do not hide each other.  Call inside :func:`house_style`.
    """
    from tlreport.report.style import new_figure

    ours = _ours(agg, dataset)
    refs = reference_rows(literature or [])
    backbones = list(dict.fromkeys(label.rsplit(" + ", 1)[0] for label, _ in ours))
    heads = list(dict.fromkeys(label.rsplit(" + ", 1)[1] for label, _ in ours))
    ticks = sorted({n for _, res in ours for n in res} | {n for r in refs for n in r["results"]})
    # sideways spread: a fraction of the smallest gap between settings, over all drawn rows
    gap = min((b - a for a, b in zip(ticks, ticks[1:], strict=False)), default=1)
    n_rows = len(ours) + len(refs)
    dodge = [(i - (n_rows - 1) / 2) * min(0.3, 0.15 * gap / max(1, n_rows - 1)) for i in range(n_rows)]
    short, prefix = _short_feature_names(backbones)
    fig = new_figure(height=5.4)
    ax = fig.add_subplot()
    for k, (label, res) in enumerate(ours):
        backbone, head = label.rsplit(" + ", 1)
        b, h = backbones.index(backbone), heads.index(head)
        ns = sorted(res)
        ax.errorbar([n + dodge[k] for n in ns], [res[n]["mean"] for n in ns],
                    yerr=[0.0 if np.isnan(res[n]["std"]) else res[n]["std"] for n in ns],
                    color=PALETTE[b % len(PALETTE)], marker=_MARKERS[b % len(_MARKERS)],
                    linestyle=_HEAD_STYLES[h % len(_HEAD_STYLES)], markersize=6, capsize=3,
                    label=f"{short[b]} + {head}")
    seed_i = 0
    for k, row in enumerate(refs, start=len(ours)):
        ns = sorted(row["results"])
        xs, ys = [n + dodge[k] for n in ns], [row["results"][n]["mean"] for n in ns]
        errs = [row["results"][n]["std"] or 0.0 for n in ns]
        if row.get("kind") == "seed post":
            grey = _REFERENCE_GREYS[seed_i % len(_REFERENCE_GREYS)]
            ax.errorbar(xs, ys, yerr=errs, color=grey, linestyle=(0, (2, 2)), lw=1.2,
                        marker=_MARKERS[(seed_i + 3) % len(_MARKERS)], markersize=5,
                        markerfacecolor="white", capsize=2, label=row["label"])
            seed_i += 1
        else:
            ax.errorbar(xs, ys, yerr=errs, color="black", linestyle=(0, (6, 2, 1, 2)), lw=1.4,
                        marker="*", markersize=8, capsize=2, label=f"{row['label']} (best published row)")
    ax.set_xticks(ticks)
    ax.set_xlabel("training images per class")
    ax.set_ylabel("mean per-class accuracy (%)")
    fig.legend(loc="outside lower center", ncols=2, fontsize=8.5,
               title=(f"features ({prefix}…) + head" + ("; references" if refs else "")) if prefix else None,
               title_fontsize=8.5)
    return fig


def _short_feature_names(backbones: Sequence[str]) -> tuple[list[str], str]:
    """Legend names without the prefix every backbone shares, and that prefix.

    >>> _short_feature_names(["efficientnet_lite0", "efficientnet_lite0+efficientnet_lite1"])
    (['lite0', 'lite0+lite1'], 'efficientnet_')
    """
    parts = [p for b in backbones for p in b.split("+")]
    common = os.path.commonprefix(parts) if len(set(parts)) > 1 else ""
    prefix = common[: common.rfind("_") + 1]
    if not prefix:
        return list(backbones), ""
    return ["+".join(p[len(prefix):] for p in b.split("+")) for b in backbones], prefix
