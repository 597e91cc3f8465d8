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
from matplotlib.ticker import MaxNLocator, PercentFormatter

from tlreport.report.numbers import percent
from tlreport.report.style import (
    DPI,
    PALETTE,
    PHONE_DPI,
    PHONE_WIDTH,
    WIDTH,
    _atomic_write,
    _stem,
    _to_uint8,
    _with_suffix,
    house_style,
    new_figure,
    phone_path,
    phone_style,
    save_figure,
)
from tlreport.report.tables import _ours

TRAIN_COLOR, VAL_COLOR = PALETTE[0], PALETTE[1]



# --------------------------------------------------------------------------- history


def plot_history(
    history: pd.DataFrame, path: str | os.PathLike, *, best_epoch: int | None = None, svg: bool = False,
    phone: bool = True,
) -> list[Path]:
    """Loss and accuracy by epoch, training vs validation: ``<path>_loss`` and ``<path>_accuracy``.

    Training is a solid line, validation dashed; ``best_epoch`` (the weights
    kept by early stopping) is marked with a dotted vertical line.  With
    ``phone`` each also gets a phone variant, ``<path>_loss.phone`` (see
    :func:`tlreport.report.style.phone_path`), returned after the two.
    """
    stem = _stem(path)
    out: list[Path] = []
    for small in ((False, True) if phone else (False,)):
        for metric, label in (("loss", "cross-entropy loss"), ("accuracy", "accuracy")):
            with phone_style() if small else house_style():
                fig = new_figure(PHONE_WIDTH, 3.0) if small else new_figure(WIDTH, 4.0)
                ax = fig.add_subplot()
                ax.plot(history["epoch"], history[metric], color=TRAIN_COLOR, label="training")
                if f"val_{metric}" in history and history[f"val_{metric}"].notna().any():
                    ax.plot(history["epoch"], history[f"val_{metric}"], color=VAL_COLOR, ls="--", label="validation")
                if best_epoch is not None:
                    ax.axvline(best_epoch, color="#555555", ls=":", lw=1.2, label=f"best epoch ({best_epoch})")
                ax.set_xlabel("epoch")
                ax.set_ylabel(label)
                ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=5 if small else "auto"))
                if metric == "accuracy":
                    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
                else:
                    ax.set_ylim(bottom=0)
                if small:
                    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))
                    fig.legend(loc="outside lower center", ncols=2)
                else:
                    ax.legend(loc="upper right" if metric == "loss" else "lower right")
                target = _with_suffix(stem, f"_{metric}")
                out += save_figure(fig, phone_path(target) if small else target, svg=svg and not small,
                                   dpi=PHONE_DPI if small else DPI, palette=True)
    return out


# --------------------------------------------------------------------------- prediction galleries
# The prediction grids are HTML (templates/macros.j2, prediction_grid): one small JPEG per image and an
# HTML caption under it, so a phone reader's text is the page's text, not pixels in a picture.

#: the probability under each image: percent with this many decimals (the same rounding as the post's)
PROB_DIGITS = 1


def prediction_label(probs: np.ndarray, class_names: Sequence[str], true: int) -> dict[str, Any]:
    """What a gallery says under one image, from its row of class probabilities.

    ``status`` is ``"right"``, ``"wrong"`` or ``"tie"``: a tie is two or more
    classes sharing the top probability at the shown precision
    (:data:`PROB_DIGITS`), and then no winner is named (``pred`` is None,
    ``tied`` lists them all, in class order).  ``prob`` is the shown top
    probability, ``true`` the true class.
    """
    p = np.asarray(probs, dtype=np.float64).ravel()
    shown = [percent(float(x), PROB_DIGITS) for x in p]
    best = int(p.argmax())
    tied = [i for i in range(len(p)) if shown[i] == shown[best]]
    names = [str(n) for n in class_names]
    out: dict[str, Any] = {"prob": shown[best], "true": names[int(true)], "pred": None,
                           "tied": [names[i] for i in tied] if len(tied) > 1 else []}
    if len(tied) > 1:
        out["status"] = "tie"
    else:
        out["pred"] = names[best]
        out["status"] = "right" if best == int(true) else "wrong"
    return out


def pick_grid(y_true: np.ndarray, y_pred: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, int]:
    """``n`` test positions for the random gallery, and how many of them are mistakes.

    Up to half are drawn from the wrong predictions (all of them if there are
    fewer), the rest from the right ones (more wrong ones fill in if there are
    too few right ones), each at random with ``seed``; the order is shuffled
    too, so a reader sees right and wrong side by side.
    """
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    wrong, right = np.flatnonzero(yt != yp), np.flatnonzero(yt == yp)
    n = min(n, len(yt))
    k_wrong = min(len(wrong), n // 2)
    k_right = min(len(right), n - k_wrong)
    k_wrong = min(len(wrong), n - k_right)
    rng = np.random.default_rng(seed)
    pick = np.concatenate([rng.choice(wrong, size=k_wrong, replace=False),
                           rng.choice(right, size=k_right, replace=False)]).astype(int)
    return pick[rng.permutation(len(pick))], k_wrong


def prediction_gallery(
    image: Any, positions: Sequence[int], probs: np.ndarray, y_true: np.ndarray,
    class_names: Sequence[str], out_dir: str | os.PathLike, rel: str, *, size: int,
) -> list[dict[str, Any]]:
    """One ``size``-px JPEG thumbnail per test position, ``<out_dir>/NN.jpg``, and its caption's facts.

    ``image(i)`` returns test image ``i``; ``probs`` is ``(N, C)``.  Each item is
    :func:`prediction_label`'s dict plus ``thumb`` (``<rel>/NN``, the figures
    stage's name for the file) and ``index`` (the test position).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    items = []
    for k, i in enumerate(positions):
        thumbnail(image(int(i)), out_dir / f"{k:02d}.jpg", size=size)
        items.append({**prediction_label(probs[int(i)], class_names, int(y_true[int(i)])),
                      "thumb": f"{rel}/{k:02d}", "index": int(i)})
    return items


def top_mistakes(y_true: np.ndarray, y_pred: np.ndarray, confidence: np.ndarray, k: int = 12) -> np.ndarray:
    """Indices of the ``k`` wrong predictions made with the highest confidence (ties: lower index first)."""
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    conf = np.asarray(confidence, dtype=np.float64)
    wrong = np.flatnonzero(yt != yp)
    return wrong[np.argsort(-conf[wrong], kind="stable")][:k]


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
    image: np.ndarray, feature_vector: np.ndarray, path: str | os.PathLike, *, svg: bool = False,
    phone: bool = True,
) -> list[Path]:
    """The photo beside its bottleneck vector drawn as a near-square heatmap.

    With ``phone`` a phone variant (``<path>.phone``, returned second) stacks the two, larger type.
    """
    v = np.asarray(feature_vector, dtype=np.float64).ravel()
    rows, cols = feature_grid_shape(v.size)
    grid = np.full(rows * cols, np.nan)
    grid[: v.size] = v
    grid = grid.reshape(rows, cols)
    img = _to_uint8(image)
    out: list[Path] = []
    for small in ((False, True) if phone else (False,)):
        with phone_style() if small else house_style():
            if small:
                fig = new_figure(PHONE_WIDTH, 1.9 + PHONE_WIDTH * 0.8 * rows / cols + 0.9)
                ax_img, ax_vec = fig.subplots(2, 1, height_ratios=[1.9, PHONE_WIDTH * 0.8 * rows / cols + 0.9])
            else:
                fig = new_figure(WIDTH, 3.4)
                ax_img, ax_vec = fig.subplots(1, 2, width_ratios=[1, cols / rows * 1.15])
            ax_img.imshow(img, cmap="gray" if img.ndim == 2 else None)
            ax_img.set_axis_off()
            ax_img.set_title("input image")
            ax_vec.grid(False)
            im = ax_vec.imshow(grid, cmap="viridis", aspect="equal")
            ax_vec.set_xticks([])
            ax_vec.set_yticks([])
            ax_vec.spines[:].set_visible(False)
            ax_vec.set_title(f"bottleneck: {v.size} values as {rows}×{cols}")
            if small:
                cb = fig.colorbar(im, ax=ax_vec, orientation="horizontal", shrink=0.85, pad=0.02, aspect=30)
                cb.ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
                out += save_figure(fig, phone_path(path), dpi=PHONE_DPI)
            else:
                fig.colorbar(im, ax=ax_vec, shrink=0.85, pad=0.02)
                out += save_figure(fig, path, svg=svg, dpi=DPI)
    return out


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


#: per head, in the order heads first appear: (marker, filled); shape and fill tell heads apart without colour
_HEAD_MARKS = [("o", True), ("s", False), ("D", True), ("^", False), ("v", True), ("P", False)]
SEED_GREY = "#6b6b6b"


def reference_rows(literature: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a comparison figure draws for reference: every seed-post row, then the best published row.

    "Best" is the published row with the highest mean at its largest setting.
    """
    seed = [r for r in literature if r.get("kind") == "seed post"]
    papers = [r for r in literature if r.get("kind") != "seed post" and r["results"]]
    best = max(papers, key=lambda r: r["results"][max(r["results"])]["mean"], default=None)
    return seed + ([best] if best else [])


def plot_table_accuracy(agg: pd.DataFrame, path: str | Path, literature: Sequence[dict[str, Any]] | None = None,
                        *, dataset: str | None = None, svg: bool = False, phone: bool = True) -> list[Path]:
    """Write :func:`table_accuracy_figure` as ``<path>.png`` (and its phone variant ``<path>.phone.png``, second)."""
    from tlreport.report.style import house_style, save_figure

    with house_style():
        out = save_figure(table_accuracy_figure(agg, literature, dataset=dataset), Path(path), svg=svg,
                          palette=True)
    if phone:
        with phone_style():
            out += save_figure(table_accuracy_figure(agg, literature, dataset=dataset, phone=True),
                               phone_path(path), dpi=PHONE_DPI, palette=True)
    return out


def table_accuracy_figure(agg: pd.DataFrame, literature: Sequence[dict[str, Any]] | None = None, *,
                          dataset: str | None = None, phone: bool = False) -> Figure:
    """A results table as a dot plot: one panel per training-set size, one line per feature set.

    Each point is a row's mean per-class accuracy, its bar ± one std over the
    splits.  On a feature set's line its heads sit one above the other, told
    apart by marker shape and fill (:data:`_HEAD_MARKS`; the colour is the
    feature set's, as the line's label also says).  Below a rule, the reference
    rows (:func:`reference_rows`): the seed post's in greys with hollow
    markers, the best published row as a black star.  The panels share their
    accuracy axis, so what more training images add reads across them; within
    a panel, rows whose bars overlap are not told apart by this build (the
    table's bold says which are, by paired splits).  Dots, not lines across
    the sizes: rows a point or two apart crossed and hid each other as lines.
    Call inside :func:`house_style`, or with ``phone=True``
    (one column of panels) inside :func:`phone_style`.
    """
    from matplotlib.lines import Line2D

    from tlreport.report.names import backbone_title, head_title
    from tlreport.report.style import new_figure

    ours = _ours(agg, dataset)
    refs = reference_rows(literature or [])
    backbones = list(dict.fromkeys(backbone for (backbone, _), _ in ours))
    heads = list(dict.fromkeys(head for (_, head), _ in ours))
    settings = sorted({n for _, res in ours for n in res} or {n for r in refs for n in r["results"]})
    if not settings:                      # nothing to draw: an empty panel that says so
        fig = new_figure(PHONE_WIDTH if phone else WIDTH, 1.5)
        fig.add_subplot().text(0.5, 0.5, "no results", ha="center", va="center")
        return fig
    labels = [backbone_title(b) for b in backbones] + [_reference_label(r) for r in refs]
    lines = len(labels)
    ncols = 1 if phone else (len(settings) if len(settings) <= 3 else 2)
    nrows = -(-len(settings) // ncols)
    # on the phone each line's label is written above its points, across the panel: beside them, the
    # labels took over half its width
    per_line = 0.45 if phone else 0.3
    panel_h = 0.55 + per_line * lines
    fig = new_figure(PHONE_WIDTH if phone else WIDTH, nrows * panel_h + (1.6 if phone else 1.2))
    axes = fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False).ravel()
    # heads of one feature set one above the other on its line, within +-0.22 of it
    spread = [0.0] if len(heads) == 1 else list(np.linspace(-0.22, 0.22, len(heads)))
    if phone:
        spread = [0.14 + 0.7 * s for s in spread]          # below the label
    for ax, n in zip(axes, settings, strict=False):
        for (backbone, head), res in ours:
            if n not in res:
                continue
            b, h = backbones.index(backbone), heads.index(head)
            marker, filled = _HEAD_MARKS[h % len(_HEAD_MARKS)]
            color = PALETTE[b % len(PALETTE)]
            std = res[n]["std"]
            ax.errorbar(res[n]["mean"], b + spread[h], xerr=0.0 if np.isnan(std) else std, color=color,
                        marker=marker, markersize=6, capsize=2.5, lw=1.4,
                        markerfacecolor=color if filled else "white", markeredgewidth=1.4)
        for k, row in enumerate(refs, start=len(backbones)):
            if n not in row["results"]:
                continue
            y = k + (0.14 if phone else 0.0)
            mean, err = row["results"][n]["mean"], row["results"][n]["std"] or 0.0
            if row.get("kind") == "seed post":          # one grey, as the key shows: each row is named
                ax.errorbar(mean, y, xerr=err, color=SEED_GREY, marker="o", markersize=5, markerfacecolor="white",
                            capsize=2, lw=1.2)
            else:
                ax.errorbar(mean, y, xerr=err, color="black", marker="*", markersize=9, capsize=2, lw=1.2)
        if refs and backbones:
            ax.axhline(len(backbones) - 0.5, color="#bbbbbb", lw=0.8)
        # three panels side by side leave no room for the long title (the caption says what n counts)
        images = "image" if n == 1 else "images"
        ax.set_title(f"{n} training {images} per class" if ncols < 3 else f"{n} per class", loc="left")
        ax.grid(axis="y", visible=False)
        if phone:
            for i, label in enumerate(labels):
                ax.text(0.015, i - 0.44, label, transform=ax.get_yaxis_transform(), ha="left", va="top")
    for ax in axes[len(settings):]:
        ax.set_visible(False)
    axes[0].set_yticks(range(lines), [] if phone else labels)
    axes[0].set_ylim(lines - 0.5, -0.5)                  # the first feature set at the top
    for ax in axes[:len(settings)]:
        ax.tick_params(axis="y", length=0)
        if phone:       # panels stacked a screen high: each keeps its own accuracy scale in sight
            ax.tick_params(axis="x", labelbottom=True)
    # the axis is named once per row of panels, under the middle one of three (fig.supxlabel would sit
    # on the legend)
    bottom = list(axes[max(0, len(settings) - ncols):len(settings)])
    for ax in bottom:                 # a bottom panel above a hidden one keeps its numbers too
        ax.tick_params(axis="x", labelbottom=True)
    for ax in bottom[1:2] if len(bottom) == 3 else bottom:
        ax.set_xlabel("mean per-class accuracy (%)")
    key = [Line2D([], [], color="#555555", marker=m, markerfacecolor="#555555" if filled else "white",
                  markeredgewidth=1.4, linestyle="none", label=head_title(h))
           for h, (m, filled) in zip(heads, [_HEAD_MARKS[i % len(_HEAD_MARKS)] for i in range(len(heads))],
                                     strict=True)]
    if any(r.get("kind") == "seed post" for r in refs):
        key.append(Line2D([], [], color=SEED_GREY, marker="o", markerfacecolor="white", linestyle="none",
                          label="the seed post's rows"))
    fig.legend(handles=key, loc="outside lower center", ncols=1 if phone else min(4, len(key)),
               title="bars: ± one std over the splits" + ("; quoted rows as printed" if refs else ""))
    return fig


def _reference_label(row: dict[str, Any]) -> str:
    if row.get("kind") == "seed post":
        return row["label"] if "seed" in row["label"] else f"{row['label']} (seed post)"
    return row["label"] + " (best published)"
