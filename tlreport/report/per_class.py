"""Per-class accuracy on the test set: the table behind it and a sorted figure, worst classes named."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.ticker import PercentFormatter

from tlreport.report.confusion import confusion_counts
from tlreport.report.numbers import percent
from tlreport.report.style import (
    PALETTE,
    PHONE_DPI,
    PHONE_MIN_PT,
    PHONE_WIDTH,
    WIDTH,
    WRONG_COLOR,
    _short,
    house_style,
    new_figure,
    phone_path,
    phone_style,
    save_figure,
)


def per_class_accuracy(y_true: np.ndarray, y_pred: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    """One row per class with test images, sorted worst first (ties: by name).

    Columns: ``class, n, correct, accuracy``, and ``confused_with`` /
    ``confused_count``, the most frequent wrong answer for the class and how
    often it was given (empty and 0 when the class has no mistakes); when several
    wrong answers share the top count they are all named, joined by `` / ``,
    and ``confused_tied`` says how many (so a caption can say "1× each").
    """
    c = len(class_names)
    cm = confusion_counts(y_true, y_pred, c)
    n = cm.sum(axis=1)
    off = cm.copy()
    np.fill_diagonal(off, 0)
    worst = off.argmax(axis=1)
    rows = []
    for i in np.flatnonzero(n > 0):
        wrong = int(off[i, worst[i]])
        tied = [str(class_names[j]) for j in np.flatnonzero(off[i] == wrong)] if wrong else []
        rows.append({"class": str(class_names[i]), "n": int(n[i]), "correct": int(cm[i, i]),
                     "accuracy": cm[i, i] / n[i], "confused_with": " / ".join(tied), "confused_count": wrong,
                     "confused_tied": len(tied)})
    df = pd.DataFrame(rows, columns=["class", "n", "correct", "accuracy", "confused_with", "confused_count",
                                     "confused_tied"])
    return df.sort_values(["accuracy", "class"], kind="mergesort").reset_index(drop=True)


def wrong_answer_note(row: pd.Series | dict, width: int, *, compact: bool = False) -> str:
    """``→ crayfish ×5``: a class's most frequent wrong answer (its name cut to ``width``) and how often.

    When two wrong answers share the top count both are named (``→ crocodile and ibis, ×2 each``), when more
    share it the first and how many others (``→ crocodile and 2 others, ×2 each``); when no wrong answer
    came twice, the note says so instead of naming one.
    ``compact`` (the phone variant, where a long label squeezes the chart) names no tied answer.

    >>> wrong_answer_note({"confused_with": "lotus", "confused_count": 7}, 12)
    '→ lotus ×7'
    >>> wrong_answer_note({"confused_with": "BACKGROUND_Google / crocodile", "confused_count": 2}, 32)
    '→ BACKGROUND Goog… and crocodile, ×2 each'
    >>> wrong_answer_note({"confused_with": "ant / bee / cat", "confused_count": 3}, 12)
    '→ ant and 2 others, ×3 each'
    >>> wrong_answer_note({"confused_with": "a / b / c / d", "confused_count": 1}, 12)
    '→ 4 wrong answers, 1× each'
    >>> wrong_answer_note({"confused_with": "BACKGROUND_Google / crocodile", "confused_count": 2}, 12, compact=True)
    '→ 2 answers, ×2 each'
    """
    names = str(row["confused_with"]).split(" / ")
    count = int(row["confused_count"])
    if len(names) == 1:
        return f"→ {_short(names[0], width)} ×{count}"
    if compact:
        return f"→ {len(names)} answers, ×{count} each"
    if count == 1:
        return f"→ {len(names)} wrong answers, 1× each"
    if len(names) == 2:                        # two names in the room of one
        half = max(8, width // 2)
        return f"→ {_short(names[0], half)} and {_short(names[1], half)}, ×{count} each"
    return f"→ {_short(names[0], width)} and {len(names) - 1} others, ×{count} each"


#: the top panel names its bars up to this many classes (the phone figure: up to ``NAMED_BARS_PHONE``)
NAMED_BARS = 30
NAMED_BARS_PHONE = 16


def plot_per_class(table: pd.DataFrame, path: str | os.PathLike, *, worst: int = 12,
                   svg: bool = False, phone: bool = True) -> list[Path]:
    """Two panels: every class's accuracy sorted (the spread), then the ``worst`` classes as labelled bars.

    Each of the worst bars is labelled with its class, its test-image count and
    its most frequent wrong answer, so the figure says *why* a class is weak.
    The median is a dashed line in the top panel.  ``table`` is
    :func:`per_class_accuracy`'s output.  With ``phone`` a phone variant
    (``<path>.phone``, returned second) puts the wrong answer under the class name, in larger type.
    """
    acc = table["accuracy"].to_numpy(dtype=float)
    k = min(worst, len(table))
    out: list[Path] = []
    for small in ((False, True) if phone else (False,)):
        with phone_style() if small else house_style():
            row_in = 0.46 if small else 0.32
            # few classes: each bar of the top panel is named under it (many would be an unreadable comb)
            named = 0 < len(acc) <= (NAMED_BARS_PHONE if small else NAMED_BARS)
            names_in = (1.1 if small else 1.0) if named else 0.0
            fig = new_figure(PHONE_WIDTH if small else WIDTH, (2.6 if small else 2.2) + row_in * k + names_in)
            top, bottom = fig.subplots(2, 1, height_ratios=[2.0 + names_in, row_in * k + 0.4])
            order = np.arange(len(acc))
            colors = [WRONG_COLOR if i < k else PALETTE[0] for i in order]
            top.bar(order, acc, width=0.85 if len(acc) < 60 else 1.0, color=colors, linewidth=0)
            if len(acc):
                med = float(np.median(acc))
                top.axhline(med, color="#333333", ls="--", lw=1.0, label=f"median {percent(med)}")
                if small:   # above the bars: a narrow chart has no empty corner
                    top.legend(loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.1)
                else:
                    top.legend(loc="upper left")
            top.set_xlim(-0.6, max(len(acc), 1) - 0.4)
            top.set_ylim(0, 1.0)
            top.yaxis.set_major_formatter(PercentFormatter(1.0))
            if named:
                top.set_xticks(order, [_short(c, 14 if small else 18) for c in table["class"]],
                               rotation=90 if small else 45, ha="center" if small else "right",
                               rotation_mode="default" if small else "anchor")
                top.tick_params(axis="x", length=0)
                top.grid(axis="x", visible=False)
            else:
                top.set_xticks([])
            top.set_xlabel(f"all {len(acc)} classes, sorted\n(the {k} worst in red)" if small
                           else f"all {len(acc)} classes, sorted by test accuracy (the {k} worst in red)")
            top.set_ylabel("accuracy")
            w = table.head(k).iloc[::-1]                    # worst at the top of the bar chart
            y = np.arange(k)
            bottom.barh(y, w["accuracy"], color=WRONG_COLOR, height=0.7)
            if small:
                labels = [f"{_short(r['class'], 14)} ({r['n']})"
                          + (f"\n{wrong_answer_note(r, 12, compact=True)}" if r["confused_count"] else "")
                          for _, r in w.iterrows()]
                bottom.set_yticks(y, labels, linespacing=1.05)
            else:
                bottom.set_yticks(y, [f"{_short(r['class'], 26)} ({r['n']})" for _, r in w.iterrows()], fontsize=8.5)
            for yi, (_, r) in zip(y, w.iterrows(), strict=True):
                note = percent(r["accuracy"])
                if r["confused_count"] and not small:
                    note += "  " + wrong_answer_note(r, 32)
                bottom.text(r["accuracy"] + 0.01, yi, note, va="center", fontsize=PHONE_MIN_PT if small else 8.5)
            bottom.set_xlim(0, 1.25 if small else 1.5)     # room for the notes beside a full bar
            bottom.set_xticks([0, 0.5, 1.0] if small else [0, 0.25, 0.5, 0.75, 1.0])
            bottom.xaxis.set_major_formatter(PercentFormatter(1.0))
            bottom.set_xlabel("test accuracy;\n→ its most frequent\nwrong answer" if small
                              else "test accuracy; → the most frequent wrong answer and how often")
            bottom.grid(axis="y", visible=False)
            if small:
                out += save_figure(fig, phone_path(path), dpi=PHONE_DPI, palette=True)
            else:
                out += save_figure(fig, path, svg=svg, palette=True)
    return out
