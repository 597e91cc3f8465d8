"""The results tables: literature rows, formatted cells, bold best values, sentences."""

from __future__ import annotations

import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlreport.errors import UserError

# ---------------------------------------------------------------- literature


def _literature_path() -> Path:
    from tlreport.util.paths import shipped_path

    return shipped_path("data", "literature.toml")


def literature_rows(dataset: str, path: Path | None = None) -> list[dict[str, Any]]:
    """The published and seed-post rows for ``dataset`` (``caltech101`` or ``caltech256``).

    Each row is ``{"label", "kind", "citation", "note", "dataset", "results"}``
    where ``results`` maps ``n_train`` to ``{"mean": ..., "std": ... or None}``
    in percent, exactly as the seed post prints them.
    """
    path = path or _literature_path()
    with open(path, "rb") as fh:
        data = tomllib.load(fh)
    rows = []
    for raw in data.get("row", []):
        if raw["dataset"] != dataset:
            continue
        results = {int(r["n_train"]): {"mean": float(r["mean"]),
                                       "std": float(r["std"]) if "std" in r else None}
                   for r in raw["results"]}
        rows.append({"dataset": raw["dataset"], "label": raw["label"], "kind": raw.get("kind", "literature"),
                     "citation": raw.get("citation", ""), "note": raw.get("note", ""), "results": results})
    if not rows:
        known = sorted({r["dataset"] for r in data.get("row", [])})
        raise UserError(f"No literature rows for dataset {dataset!r} in {path}; known: {', '.join(known)}.")
    return rows


# ----------------------------------------------------------- report helpers


def _decimals(value: float, exact: bool) -> int:
    """One decimal, as the seed prints; literature values keep a printed second decimal (0.33)."""
    if exact and abs(round(value, 1) - value) > 1e-9:
        return 2
    return 1


def format_cell(mean: float | None, std: float | None, *, exact: bool = False) -> str:
    """``"87.5 ± 0.5"``, ``"73.2"`` without a std, ``"-"`` when there is no result."""
    if mean is None or (isinstance(mean, float) and np.isnan(mean)):
        return "-"
    text = f"{mean:.{_decimals(mean, exact)}f}"
    if std is not None and not (isinstance(std, float) and np.isnan(std)):
        text += f" ± {std:.{_decimals(std, exact)}f}"
    return text


def _ours(agg: pd.DataFrame, dataset: str | None) -> list[tuple[str, dict[int, dict[str, float]]]]:
    """``[(label, {n_train: {mean, std}})]`` for every backbone/head in ``agg``."""
    if dataset is not None and "dataset" in agg:
        agg = agg[agg["dataset"] == dataset]
    out = []
    for (backbone, head), g in agg.groupby(["backbone", "head"], sort=False):
        res = {int(r.n_train): {"mean": float(r.mean), "std": float(r.std)} for r in g.itertuples()}
        out.append((f"{backbone} + {head}", res))
    return out


def table_rows(agg: pd.DataFrame, literature: Sequence[dict[str, Any]], settings: Sequence[int], *,
               dataset: str | None = None) -> tuple[list[list[str]], list[list[bool]]]:
    """Cells for the results table and which of them to bold.

    Returns ``(rows, best)``: ``rows[i] = [label, cell for settings[0], ...]``
    (literature rows first, then ours; a cell is ``"mean ± std"`` with one
    decimal, as the seed), and ``best[i][j]`` is true where row ``i`` has the
    highest mean in column ``settings[j]`` (ties all flagged).  ``best`` has no
    entry for the label column.
    """
    entries: list[tuple[str, dict[int, dict[str, Any]], bool]] = [
        (r["label"], r["results"], True) for r in literature]
    entries += [(label, res, False) for label, res in _ours(agg, dataset)]
    rows, means = [], []
    for label, res, exact in entries:
        cells, row_means = [label], []
        for n in settings:
            r = res.get(n)
            cells.append(format_cell(r["mean"], r["std"], exact=exact) if r else "-")
            row_means.append(r["mean"] if r else np.nan)
        rows.append(cells)
        means.append(row_means)
    m = np.asarray(means, dtype=float).reshape(len(rows), len(settings))
    best = np.zeros_like(m, dtype=bool)
    for j in range(m.shape[1]):
        col = m[:, j]
        if np.isfinite(col).any():
            # compare at the printed precision so two cells that read the same are both bold (as printed:
            # f"{89.35:.1f}" is 89.3 where np.round gives 89.4)
            shown = np.array([float(f"{v:.1f}") if np.isfinite(v) else np.nan for v in col])
            best[:, j] = shown == np.nanmax(shown)
    return rows, best.tolist()


def comparison_sentences(agg: pd.DataFrame, literature: Sequence[dict[str, Any]], dataset: str
                         ) -> list[str]:
    """A few sentences of facts computed from ``agg`` against the literature rows.

    For the largest and smallest training setting: the best backbone/head, and
    its gap to the seed's best row and to Zeiler & Fergus; then how much the
    best result gains from the smallest to the largest setting.
    """
    ours = _ours(agg, dataset)
    if not ours:
        return []
    settings = sorted({n for _, res in ours for n in res})
    sentences = []
    for b in best_by_setting(agg, literature, sorted({settings[0], settings[-1]}, reverse=True), dataset):
        text = f"At {b['n']} training images per class, {b['label']} reaches {format_cell(b['mean'], b['std'])}%"
        refs = [f"{_points(b['mean'] - ref['mean'])} the {ref['mean']:.1f} of {ref['label']}"
                for ref in (b["seed"], b["paper"]) if ref]
        if refs:
            text += ", " + " and ".join(refs)
        sentences.append(text + ".")
    if len(settings) > 1:
        lo, hi = settings[0], settings[-1]
        gains = [(res[hi]["mean"] - res[lo]["mean"], label) for label, res in ours if lo in res and hi in res]
        if gains:
            gain, label = max(gains)
            sentences.append(f"The largest gain from {lo} to {hi} training images per class is "
                             f"{gain:.1f} points ({label}).")
    return sentences


def margin_sentences(splits: pd.DataFrame, dataset: str | None, settings: Sequence[int]) -> list[str]:
    """For each setting, how far this build's best row leads its next-best row, split by split.

    Every row is scored on the same splits, so the per-split differences are
    paired: their mean and sample standard deviation, and on how many splits the
    best row is ahead, say whether the lead is larger than the splits' noise
    (the ± of each row includes how hard each split is, which both rows share).
    ``splits`` has one row per fit (``results.csv``); no sentence for fewer than
    two rows or two splits.
    """
    if dataset is not None and "dataset" in splits:
        splits = splits[splits["dataset"] == dataset]
    out = []
    for n in settings:
        s = splits[splits["n_train"] == n]
        by_split = s.pivot_table(index="split", columns=["backbone", "head"], values="mean_per_class_accuracy")
        by_split = by_split.dropna(axis=1)
        if by_split.shape[1] < 2 or len(by_split) < 2:
            continue
        means = by_split.mean().sort_values(ascending=False, kind="stable")
        first, second = means.index[0], means.index[1]
        diff = (by_split[first] - by_split[second]) * 100.0
        ahead = int((diff > 0).sum())
        how = "is level with" if abs(diff.mean()) < 0.005 else "leads"
        out.append(f"At {n} per class the best row, {first[0]} + {first[1]}, {how} the next, {second[0]} + {second[1]}: "
                   f"{diff.mean():.2f} ± {diff.std(ddof=1):.2f} points over the "
                   f"{len(diff)} paired splits, ahead on {ahead} of them.")
    return out


def chosen_sentence(splits: pd.DataFrame, dataset: str | None) -> str:
    """What each head's cross-validation chose, over every fit of the table.

    ``splits`` has one row per fit with a ``chosen`` column (``"C=0.1"``); a head that chose nothing,
    and the ``+flip`` rows (the same fits), are left out.  Up to three values are each counted; more
    are given as their range and the most frequent.  ``""`` when no head chose anything.

    >>> df = pd.DataFrame({"head": ["a", "a", "a", "a+flip", "b"], "chosen": ["l2=0.01", "l2=0.03", "l2=0.01",
    ...                    "l2=0.01", None]})
    >>> chosen_sentence(df, None)
    "What the cross-validation chose: a's l2=0.01 in 2 of 3 fits, l2=0.03 in 1."
    >>> chosen_sentence(pd.DataFrame({"head": ["b"] * 5, "chosen": ["C=0.1", "C=10", "C=1", "C=0.1", "C=3"]}), None)
    "What the cross-validation chose: b's C from 0.1 to 10, most often 0.1 (2 of 5 fits)."
    """
    if dataset is not None and "dataset" in splits:
        splits = splits[splits["dataset"] == dataset]
    if "chosen" not in splits:
        return ""
    parts = []
    for head, g in splits.groupby("head", sort=False):
        values = g["chosen"].fillna("").astype(str)
        values = values[values != ""]
        if str(head).endswith("+flip") or values.empty:
            continue
        counts = values.value_counts(sort=False)
        order = sorted(counts.index, key=lambda v: (-counts[v], v))
        names = {v.split("=", 1)[0] for v in order}
        if len(order) > 3 and len(names) == 1 and all("," not in v for v in order):
            name = names.pop()
            numbers = sorted(float(v.split("=", 1)[1]) for v in order)
            mode = order[0].split("=", 1)[1]
            parts.append(f"{head}'s {name} from {numbers[0]:g} to {numbers[-1]:g}, most often {mode} "
                         f"({counts[order[0]]} of {len(values)} fits)")
        else:
            listed = [f"{v} in {counts[v]}" + (f" of {len(values)} fits" if i == 0 else "")
                      for i, v in enumerate(order)]
            parts.append(f"{head}'s {', '.join(listed)}")
    if not parts:
        return ""
    return "What the cross-validation chose: " + "; ".join(parts) + "."


def best_by_setting(agg: pd.DataFrame, literature: Sequence[dict[str, Any]], settings: Sequence[int],
                    dataset: str | None = None) -> list[dict[str, Any]]:
    """For each setting: this build's best row and the best seed-post and published rows to compare with.

    Each item is ``{"n", "label", "mean", "std", "seed": {"label", "mean"} | None,
    "paper": {"label", "mean"} | None}``; settings this build has no result for
    are left out.  Means are in percent.
    """
    ours = _ours(agg, dataset)
    out = []
    for n in settings:
        scored = [(res[n]["mean"], res[n]["std"], label) for label, res in ours if n in res]
        if not scored:
            continue
        mean, std, label = max(scored)
        item: dict[str, Any] = {"n": n, "label": label, "mean": mean, "std": std, "seed": None, "paper": None}
        for key, rows in (("seed", [r for r in literature if r.get("kind") == "seed post"]),
                          ("paper", [r for r in literature if r.get("kind") != "seed post"])):
            cand = [(r["results"][n]["mean"], r["label"]) for r in rows if n in r["results"]]
            if cand:
                ref_mean, ref_label = max(cand)
                item[key] = {"label": ref_label, "mean": ref_mean}
        out.append(item)
    return out


def _points(diff: float) -> str:
    if abs(diff) < 0.05:
        return "level with"
    return f"{abs(diff):.1f} points {'above' if diff > 0 else 'below'}"
