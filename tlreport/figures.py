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

import contextlib
import io
import math
import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from cycler import cycler  # noqa: E402
from matplotlib.colors import PowerNorm  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402
from matplotlib.ticker import MaxNLocator, PercentFormatter  # noqa: E402

DPI = 160
WIDTH = 7.5  # inches: 1200 px at DPI, a blog column at 2x
#: Okabe-Ito: distinguishable with colour-vision deficiencies and in greyscale order
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
TRAIN_COLOR, VAL_COLOR = PALETTE[0], PALETTE[1]
WRONG_COLOR = "#B2182B"
RIGHT_COLOR = "#1A6B3A"
_SVG_SALT = "tlreport"

HOUSE_RC: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.use": True,
    "font.family": "DejaVu Sans",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d0d0d0",
    "grid.linewidth": 0.6,
    "grid.linestyle": ":",
    "axes.prop_cycle": cycler(color=PALETTE),
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
    "image.interpolation": "nearest",
    "svg.hashsalt": _SVG_SALT,
    "svg.fonttype": "path",
    "path.simplify": True,
}


@contextlib.contextmanager
def house_style() -> Iterator[dict[str, Any]]:
    """Context manager applying :data:`HOUSE_RC`; yields the rc dict.

    >>> with house_style():
    ...     fig = Figure(figsize=(WIDTH, 4))
    """
    with matplotlib.rc_context(HOUSE_RC):
        yield HOUSE_RC


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in (".png", ".svg") else p


def _with_suffix(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)  # names may contain dots


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Render into memory, then write through :func:`tlreport.cache.atomic_write_bytes`."""
    from tlreport.cache import atomic_write_bytes

    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def new_figure(width: float = WIDTH, height: float = 4.0) -> Figure:
    """A pyplot-free figure in the house style (call inside :func:`house_style`)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike, *, svg: bool = False) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (and ``<path>.svg``); return the paths written.

    ``path`` is given without a suffix (a ``.png``/``.svg`` suffix is dropped).
    PNG at :data:`DPI` dpi with no ``Software`` chunk; SVG with a fixed hash
    salt and no date, so both are byte-reproducible.  Pixel size is exactly
    ``figsize * DPI`` (no tight bounding box).
    """
    stem = _stem(path)
    out = [
        _atomic_write(
            _with_suffix(stem, ".png"),
            lambda f: fig.savefig(f, format="png", dpi=DPI, metadata={"Software": None}),
        )
    ]
    if svg:
        with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT, "svg.fonttype": "path"}):
            out.append(
                _atomic_write(
                    _with_suffix(stem, ".svg"),
                    lambda f: fig.savefig(f, format="svg", metadata={"Date": None, "Creator": None}),
                )
            )
    return out


def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        if img.size and np.nanmax(img) <= 1.5:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).round().astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def _short(name: str, limit: int = 24) -> str:
    """A class name as a figure label: one line, shortened, ``$`` kept literal (not mathtext)."""
    name = " ".join(str(name).replace("_", " ").split())
    name = name if len(name) <= limit else name[: limit - 1] + "…"
    return name.replace("$", r"\$")


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


def _tick_plan(c: int, side_in: float) -> tuple[float, int]:
    """(font size in pt, label every k-th class) for ``c`` classes on ``side_in`` inches."""
    per_class_pt = side_in * 0.78 * 72 / max(c, 1)
    size = min(8.0, 0.9 * per_class_pt)
    if size >= 3.5:
        return size, 1
    return 3.5, math.ceil(3.5 / (0.9 * per_class_pt))


def confusion_figure(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], *, order: str = "cluster"
) -> tuple[Figure, Any, np.ndarray]:
    """Build (not save) the confusion heatmap; returns ``(fig, ax, class_order)``."""
    c = len(class_names)
    cm = confusion_counts(y_true, y_pred, c)
    if order == "cluster":
        idx = confusion_order(cm)
    elif order == "given":
        idx = np.arange(c)
    else:
        raise ValueError(f"order must be 'cluster' or 'given'. Received: order={order!r}")
    r = _row_normalise(cm)[np.ix_(idx, idx)]
    side = WIDTH if c <= 30 else 10.0
    with house_style():
        fig = new_figure(side, side * 0.94)
        ax = fig.add_subplot()
        ax.grid(False)
        im = ax.imshow(r, cmap="Blues", norm=PowerNorm(0.5, vmin=0.0, vmax=1.0), interpolation="nearest", aspect="equal")
        cb = fig.colorbar(im, ax=ax, shrink=0.8, pad=0.01)
        cb.set_label("fraction of the true class (square-root scale)")
        cb.set_ticks([0, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0])
        cb.ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=0))
        names = [_short(class_names[i], 22) for i in idx]
        size, step = _tick_plan(c, side)
        ticks = np.arange(0, c, step)
        ax.set_xticks(ticks, [names[i] for i in ticks], rotation=90, fontsize=size)
        ax.set_yticks(ticks, [names[i] for i in ticks], fontsize=size)
        ax.tick_params(length=0 if c > 30 else 2, pad=1)
        ax.set_xlabel("predicted class")
        ax.set_ylabel("true class")
        for spine in ax.spines.values():
            spine.set_visible(True)
            spine.set_color("#999999")
        if c <= 30:
            for i in range(c):
                for j in range(c):
                    if cm[idx[i], idx[j]]:
                        ax.text(j, i, f"{r[i, j] * 100:.0f}", ha="center", va="center", fontsize=7,
                                color="white" if r[i, j] > 0.45 else "#222222")
    return fig, ax, idx


def plot_confusion(
    y_true: np.ndarray,
    y_pred: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike,
    *,
    order: str = "cluster",
    svg: bool = False,
) -> list[Path]:
    """Row-normalised confusion heatmap, classes ordered so confusions cluster.

    Up to 30 classes every cell shows its percentage; above that only colour,
    with tick labels that shrink and, past ~200 classes, label every k-th class.
    ``order="given"`` keeps the class order.
    """
    fig, _, _ = confusion_figure(y_true, y_pred, class_names, order=order)
    return save_figure(fig, path, svg=svg)


def confused_pairs(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str], k: int = 15
) -> pd.DataFrame:
    """The ``k`` most-confused ordered pairs (true -> predicted), off the diagonal.

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
    return df.head(k).reset_index(drop=True)


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
