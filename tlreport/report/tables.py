"""The results tables: literature rows, formatted cells, and what the paired splits allow the post to claim."""

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
                     "ref": raw.get("ref"),
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


def _ours(agg: pd.DataFrame, dataset: str | None) -> list[tuple[tuple[str, str], dict[int, dict[str, float]]]]:
    """``[((backbone, head), {n_train: {mean, std}})]`` for every backbone/head in ``agg``."""
    if dataset is not None and "dataset" in agg:
        agg = agg[agg["dataset"] == dataset]
    out = []
    for (backbone, head), g in agg.groupby(["backbone", "head"], sort=False):
        res = {int(r.n_train): {"mean": float(r.mean), "std": float(r.std)} for r in g.itertuples()}
        out.append(((backbone, head), res))
    return out


# ------------------------------------------------------------ noise-aware claims

#: the rule for calling one row better than another, over the paired splits: ahead on at least this
#: share of them, and a mean paired difference that Nadeau and Bengio's corrected resampled t-test finds
#: beyond chance at this two-sided level.  Their correction: the splits share training and test images,
#: so the per-split differences vary less than independent experiments would, and the plain standard
#: error (sd / sqrt(k)) calls a lead clear far more often than the level says (Dietterich, 1998); the
#: corrected one is sd * sqrt(1/k + n_test/n_train).
LEAD_MIN_SHARE = 0.8
#: two means closer than this (points) share the top: half the last digit the table prints them to, so a
#: smaller gap would not show there (on Caltech-101 it is also about one test image of 20,000 predictions)
TIE_POINTS = 0.05
LEAD_LEVEL = 0.95
#: with fewer paired splits than this no row is called better than another
LEAD_MIN_SPLITS = 3


def lead_t(k: int) -> float:
    """The two-sided :data:`LEAD_LEVEL` quantile of Student's t with ``k - 1`` degrees of freedom.

    >>> round(lead_t(5), 3)
    2.776
    """
    from scipy.stats import t

    return float(t.ppf(0.5 + LEAD_LEVEL / 2, k - 1))


def lead_rule(k: int) -> str:
    """:data:`LEAD_MIN_SHARE` and the corrected t-test in words, for ``k`` paired splits.

    >>> lead_rule(1).split(",")[0]
    'with 1 split per setting no row is called better than another'
    """
    if k < LEAD_MIN_SPLITS:
        return (f"with {k} split{'s' if k != 1 else ''} per setting no row is called better than another, since "
                f"the rule this post uses (ahead on at least {LEAD_MIN_SHARE:.0%} of the paired splits, and a lead "
                f"beyond chance by the corrected resampled t-test at {LEAD_LEVEL:.0%}) needs at least "
                f"{LEAD_MIN_SPLITS} paired splits")
    return (f"a row is called better than another only when it is ahead on at least {LEAD_MIN_SHARE:.0%} of "
            f"the paired splits and its mean paired lead exceeds {lead_t(k):.2f} (Student's t with {k - 1} "
            f"degrees of freedom, {LEAD_LEVEL:.0%} two-sided) corrected standard errors. The corrected standard "
            f"error is the standard deviation of the per-split differences times the square root of 1/{k} + "
            "n<sub>test</sub>/n<sub>train</sub>, Nadeau and Bengio's correction for splits that share their "
            "images; the plain standard error, over the square root of the number of splits, calls a lead clear "
            f"far more often than {1 - LEAD_LEVEL:.0%} of the time when there is none")


def paired_lead(a: pd.Series, b: pd.Series, *, test_per_train: float) -> dict[str, Any]:
    """How far row ``a`` leads row ``b`` over the same splits (accuracies as fractions), in points.

    ``test_per_train`` is a split's test images over its training images.  ``se`` is the corrected
    standard error (:data:`LEAD_LEVEL`), ``t`` the lead over it; ``clear`` applies :func:`lead_rule`.

    >>> r = paired_lead(pd.Series([.90, .91, .92, .93, .94]), pd.Series([.89, .90, .91, .92, .93]), test_per_train=1)
    >>> r["clear"], round(r["mean"], 2), r["ahead"]
    (True, 1.0, 5)
    >>> paired_lead(pd.Series([.90, .91, .92, .93, .94]), pd.Series([.91, .90, .93, .92, .94]), test_per_train=1)["clear"]
    False
    """
    diff = (a - b).dropna() * 100.0
    k = len(diff)
    mean = float(diff.mean()) if k else float("nan")
    sd = float(diff.std(ddof=1)) if k > 1 else float("nan")
    ahead = int((diff > 1e-9).sum())
    se = sd * np.sqrt(1 / k + test_per_train) if k > 1 else float("nan")
    t = mean / se if k > 1 and se > 0 else (float("inf") if k > 1 and mean > 0 else float("nan"))
    clear = bool(k >= LEAD_MIN_SPLITS and ahead >= np.ceil(LEAD_MIN_SHARE * k - 1e-9)
                 and np.isfinite(se) and t > lead_t(k))
    return {"mean": mean, "sd": sd, "se": se, "t": t, "ahead": ahead, "k": k, "clear": clear}


def _by_split(splits: pd.DataFrame, dataset: str | None, n: int) -> pd.DataFrame:
    """One column per (backbone, head), one row per split: the paired accuracies at ``n`` per class."""
    if dataset is not None and "dataset" in splits:
        splits = splits[splits["dataset"] == dataset]
    s = splits[splits["n_train"] == n]
    if s.empty:
        return pd.DataFrame()
    return s.pivot_table(index="split", columns=["backbone", "head"], values="mean_per_class_accuracy",
                         sort=False).dropna(axis=1)


def verdict(splits: pd.DataFrame, dataset: str | None, n: int, *, num_classes: int) -> dict[str, Any] | None:
    """Which of this build's rows are best at ``n`` per class, under :func:`lead_rule`.

    A split trains on ``n`` images of each of ``num_classes`` classes and tests on ``n_test`` images
    (the column of ``splits``; their mean over the splits enters the correction).

    Returns ``{"n", "top", "level", "leads", "behind", "decided"}``: ``top`` the (backbone, head) with the
    highest mean; ``level`` every row not shown behind the best (itself included): neither the top row nor
    a row tied with it (:data:`TIE_POINTS`) clearly leads it, each compared with those rows only (not with
    each other);
    ``leads`` maps each other row to :func:`paired_lead` of the top row over it; ``behind`` maps each row
    shown behind the best to ``(leader, lead)``, the tied top row that clearly leads it and by how much;
    ``decided`` is false when there are too few splits to call any row better (then ``level`` is empty).
    ``None`` when fewer than two rows have results.
    """
    by_split = _by_split(splits, dataset, n)
    if by_split.shape[1] < 2:
        return None
    means = by_split.mean().sort_values(ascending=False, kind="stable")
    top = means.index[0]
    if num_classes < 1:
        raise ValueError(f"a table with results needs its number of classes (got {num_classes})")
    rows = splits if dataset is None or "dataset" not in splits else splits[splits["dataset"] == dataset]
    test_per_train = float(rows.loc[rows["n_train"] == n, "n_test"].mean()) / (n * num_classes)
    leads = {key: paired_lead(by_split[top], by_split[key], test_per_train=test_per_train)
             for key in means.index[1:]}
    decided = len(by_split) >= LEAD_MIN_SPLITS
    # rows tied with the top row (means closer than the table can show) are best as much as it is: a row
    # any of them clearly leads is shown behind the best, whichever of them came first by a hair
    co_top = [key for key in means.index[1:] if (means[top] - means[key]) * 100 < TIE_POINTS]
    behind: dict[Any, tuple[Any, dict[str, Any]]] = {}
    for leader in [top, *co_top] if decided else []:
        for key in means.index[1:]:
            if key in behind or key in co_top or key == leader:
                continue
            lead = leads[key] if leader == top else paired_lead(by_split[leader], by_split[key],
                                                                 test_per_train=test_per_train)
            if lead["clear"]:
                behind[key] = (leader, lead)
    level = [top] + [key for key in means.index[1:] if key not in behind] if decided else []
    return {"n": n, "top": top, "means": {k: float(v) * 100 for k, v in means.items()},
            "level": level, "leads": leads, "behind": {k: behind[k] for k in means.index if k in behind},
            "decided": decided, "k": len(by_split)}


# -------------------------------------------------------------------- the table


def results_table(agg: pd.DataFrame, splits: pd.DataFrame, literature: Sequence[dict[str, Any]],
                  settings: Sequence[int], *, dataset: str | None = None, num_classes: int) -> dict[str, Any]:
    """The results table as groups of rows, with bold cells only where :func:`verdict` allows.

    Returns ``{"groups": [{"title", "rows": [{"label", "key", "ref", "cells", "bold"}]}], "verdicts"}``.
    The first group holds this build's rows (``key`` is ``(backbone, head)``), the next the seed post's
    rows, the last the published rows the seed quotes (``ref`` names their source in references.toml).
    A cell is ``"mean ± std"`` in percent with one decimal (literature values as printed); a cell of
    this build is bold when its row is level with the best at that setting and not every row is.
    """
    from tlreport.report.names import row_title

    verdicts = {n: verdict(splits, dataset, n, num_classes=num_classes) for n in settings}
    ours = []
    for key, res in _ours(agg, dataset):
        backbone, head = key
        cells, bold = [], []
        for n in settings:
            r = res.get(n)
            cells.append(format_cell(r["mean"], r["std"]) if r else "-")
            v = verdicts.get(n)
            level = v["level"] if v else []
            bold.append(bool(r) and key in level and len(level) < len(v["means"]))
        ours.append({"label": row_title(backbone, head), "key": key, "ref": None, "cells": cells, "bold": bold})

    def quoted(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            cells = [format_cell(r["results"][n]["mean"], r["results"][n]["std"], exact=True)
                     if n in r["results"] else "-" for n in settings]
            out.append({"label": r["label"], "key": None, "ref": r.get("ref"), "cells": cells,
                        "bold": [False] * len(settings)})
        return out

    groups = []
    if ours:
        groups.append({"title": "This build", "rows": ours})
    seed_rows = [r for r in literature if r.get("kind") == "seed post"]
    paper_rows = [r for r in literature if r.get("kind") != "seed post"]
    if seed_rows:
        groups.append({"title": "Quoted from the seed post", "rows": quoted(seed_rows)})
    if paper_rows:
        groups.append({"title": "From the papers the seed post quotes", "rows": quoted(paper_rows)})
    return {"groups": groups, "verdicts": verdicts}


def claims(agg: pd.DataFrame, splits: pd.DataFrame, literature: Sequence[dict[str, Any]],
           settings: Sequence[int], dataset: str | None, *, num_classes: int) -> list[dict[str, Any]]:
    """For each setting this build has results for, what the post may claim about it.

    Each item: ``{"n", "best": [row titles level with the best], "level_rows": [{"title", "mean",
    "std"}] of those rows, "mean", "std" (of the top row), "decided", "clear_lead": paired lead of the
    single best row over the next (or None), "closest": {"title", "lead"} for the nearest row inside the
    noise (or None), "behind": [{"title", "by", **lead}] the rows shown behind the best, each with the
    (tied) top row "by" that clearly leads it, "behind_groups": [{"by", "rows"}] the same grouped by that
    row (the top row's first), "tie_points": :data:`TIE_POINTS`, "tie": the top row's lead is below :data:`TIE_POINTS`, "seed": {"label", "mean", "std",
    "cell" (as printed), "diff"} | None, "paper": {...} | None}``.
    """
    from tlreport.report.names import row_title

    table = dict(_ours(agg, dataset))
    out = []
    for n in settings:
        v = verdict(splits, dataset, n, num_classes=num_classes)
        scored = [(res[n]["mean"], key) for key, res in table.items() if n in res]
        if not scored:
            continue
        if v is None:                                 # one row: nothing to compare it with
            top, level, decided, leads = max(scored)[1], [max(scored)[1]], False, {}
        else:
            top, level, decided, leads = v["top"], v["level"], v["decided"], v["leads"]
        k = v["k"] if v else len(_by_split(splits, dataset, n))
        item: dict[str, Any] = {
            "n": n, "top": row_title(*top), "best": [row_title(*k) for k in level], "decided": decided,
            # every row level with the best, each with its own mean and std (two level rows are two numbers)
            "level_rows": [{"title": row_title(*k), "mean": table[k][n]["mean"], "std": table[k][n]["std"]}
                           for k in level],
            "mean": table[top][n]["mean"], "std": table[top][n]["std"], "clear_lead": None, "closest": None,
            "tie": False, "tie_points": TIE_POINTS, "behind": [], "behind_groups": [], "all_level": None, "k": k, "rows": len(v["means"]) if v else len(scored), "only": len(scored) == 1,
            "seed": None, "paper": None}
        if leads and decided:
            if len(level) == 1:
                runner = next(iter(leads))
                item["clear_lead"] = {"over": row_title(*runner), **leads[runner]}
            else:                                     # the nearest row inside the noise, never a beaten one
                runner = next(key for key in leads if key in level)
                item["closest"] = {"title": row_title(*runner), **leads[runner]}
            lead = item["clear_lead"] or item["closest"]
            # a gap the table cannot show is no lead: the post says the means differ by less than that
            item["tie"] = bool(lead) and abs(lead["mean"]) < TIE_POINTS
            # the rows shown behind the best, each with the lead of the (tied) top row that leads it: a lower
            # row can be bold and a higher one not, and this says which are behind and by how much
            item["behind"] = [{"title": row_title(*key), "by": row_title(*leader), **lead}
                              for key, (leader, lead) in v["behind"].items()]
            # grouped by the tied top row that leads them, the top row's group first
            groups: dict[str, list[dict[str, Any]]] = {}
            for b in sorted(item["behind"], key=lambda b: b["by"] != row_title(*top)):
                groups.setdefault(b["by"], []).append(b)
            item["behind_groups"] = [{"by": by, "rows": rows} for by, rows in groups.items()]
            if len(level) == len(v["means"]):         # every row level: the span, top over the lowest row
                lowest = list(leads)[-1]
                item["all_level"] = {"title": row_title(*lowest), **leads[lowest],
                                     "row": {"mean": table[lowest][n]["mean"], "std": table[lowest][n]["std"]}}
        for key, rows in (("seed", [r for r in literature if r.get("kind") == "seed post"]),
                          ("paper", [r for r in literature if r.get("kind") != "seed post"])):
            cand = [(r["results"][n]["mean"], r["label"], r.get("ref"), r["results"][n]["std"])
                    for r in rows if n in r["results"]]
            if cand:
                ref_mean, ref_label, ref, ref_std = max(cand, key=lambda c: (c[0], c[1]))
                item[key] = {"label": ref_label, "mean": ref_mean, "ref": ref, "diff": item["mean"] - ref_mean,
                             "std": ref_std, "cell": format_cell(ref_mean, ref_std, exact=True)}   # as printed
        out.append(item)
    return out


def chosen_sentence(splits: pd.DataFrame, dataset: str | None,
                    grids: dict[str, Sequence[float]] | None = None) -> str:
    """What each head chose on its hold-out, over every fit of the table, as one clause per head.

    ``splits`` has one row per fit with a ``chosen`` column (``"C=0.1"``); a head that chose nothing,
    and the ``+flip`` rows (the same fits), are left out.  Up to three values are each counted; more
    are given as their range and the most frequent.  ``""`` when no head chose anything.  With
    ``grids`` (a head's name -> the values it chooses from), a most frequent value at an end of its
    head's grid says so: the best value may lie beyond what was tried.

    >>> df = pd.DataFrame({"head": ["a", "a", "a", "a+flip", "b"], "chosen": ["l2=0.01", "l2=0.03", "l2=0.01",
    ...                    "l2=0.01", None]})
    >>> chosen_sentence(df, None)
    "a's l2=0.01 in 2 of 3 fits, l2=0.03 in 1."
    >>> chosen_sentence(pd.DataFrame({"head": ["b"] * 5, "chosen": ["C=0.1", "C=10", "C=1", "C=0.1", "C=3"]}), None)
    "b's C from 0.1 to 10, most often 0.1 (2 of 5 fits)."
    >>> chosen_sentence(df, None, {"a": (0.01, 0.03, 0.1)})
    "a's l2=0.01 in 2 of 3 fits (the smallest value it tries: a smaller one might do better), l2=0.03 in 1."
    """
    if dataset is not None and "dataset" in splits:
        splits = splits[splits["dataset"] == dataset]
    if "chosen" not in splits:
        return ""
    from tlreport.report.names import head_title

    parts = []
    for head, g in splits.groupby("head", sort=False):
        values = g["chosen"].fillna("").astype(str)
        values = values[values != ""]
        if str(head).endswith("+flip") or values.empty:
            continue
        counts = values.value_counts(sort=False)
        order = sorted(counts.index, key=lambda v: (-counts[v], v))
        names = {v.split("=", 1)[0] for v in order}
        edge = _edge_note(order, counts, (grids or {}).get(str(head)))
        if len(order) > 3 and len(names) == 1 and all("," not in v for v in order):
            name = names.pop()
            numbers = sorted(float(v.split("=", 1)[1]) for v in order)
            mode = order[0].split("=", 1)[1]
            parts.append(f"{head_title(head)}'s {name} from {numbers[0]:g} to {numbers[-1]:g}, most often {mode} "
                         f"({counts[order[0]]} of {len(values)} fits{'; ' + edge if edge else ''})")
        else:
            listed = [f"{v} in {counts[v]}" + (f" of {len(values)} fits" + (f" ({edge})" if edge else "")
                                               if i == 0 else "")
                      for i, v in enumerate(order)]
            parts.append(f"{head_title(head)}'s {', '.join(listed)}")
    if not parts:
        return ""
    return "; ".join(parts) + "."


def _edge_note(order: Sequence[str], counts: pd.Series, grid: Sequence[float] | None) -> str:
    """Every choice in ``order`` (most frequent first, ``"C=0.1"``) at an end of ``grid``, with how often (the
    best value may lie beyond what was tried); ``""`` when no choice is at an end.

    >>> c = pd.Series({"C=3": 12, "C=10": 6, "C=0.0001": 1, "C=1": 9})
    >>> _edge_note(["C=3", "C=1", "C=10", "C=0.0001"], c, (1e-4, 1e-3, 0.1, 1, 3, 10))
    '0.0001 in 1 fit and 10 in 6 are the ends of the values it tries: a value beyond might do better there'
    >>> _edge_note(["C=10", "C=3"], c, (0.1, 1, 3, 10))
    'the largest value it tries: a larger one might do better'
    """
    ends = [(v, side) for v in order if (side := _grid_side(v, grid))]
    if not ends:
        return ""
    if len(ends) == 1 and ends[0][0] == order[0]:
        return f"the {ends[0][1]} value it tries: a {ends[0][1][:-3]}er one might do better"
    listed = [f"{v.split('=', 1)[1]} in {counts[v]}" + (" fit" if counts[v] == 1 else " fits") * (i == 0)
              for i, (v, _) in enumerate(sorted(ends, key=lambda e: e[1] == "largest"))]
    verb = "is an end" if len(ends) == 1 else "are the ends"
    return f"{' and '.join(listed)} {verb} of the values it tries: a value beyond might do better there"


def _grid_side(value: str, grid: Sequence[float] | None) -> str:
    """``"smallest"`` when ``value`` (``"l2=0.003"``) is the smallest of ``grid``, ``"largest"`` when the
    largest, else ``""``."""
    if not grid or len(grid) < 2 or "," in value or "=" not in value:
        return ""
    try:
        x = float(value.split("=", 1)[1])
    except ValueError:
        return ""
    # ``chosen`` holds 6 significant digits (``:g``): a grid value like 10**-2.5 matches to that
    if np.isclose(x, min(grid), rtol=1e-5, atol=0.0):
        return "smallest"
    if np.isclose(x, max(grid), rtol=1e-5, atol=0.0):
        return "largest"
    return ""
