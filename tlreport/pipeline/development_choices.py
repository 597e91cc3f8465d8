"""The post's "Chosen while looking at test accuracies" list: the settings of a build that were first
chosen during development while looking at Caltech-101 test accuracies (``data/development_choices.toml``),
each with how it was re-checked, for the builds it applies to."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from tlreport.engine.stage import BuildContext
from tlreport.report.references import dataset_reference


def development_choices(ctx: BuildContext, sections: dict) -> list[dict]:
    """The choices that apply to this build, for a post on Caltech-101 (none for another dataset)."""
    import tomllib

    from tlreport.backbones import get_spec
    from tlreport.pipeline.feature_sets import feature_jobs
    from tlreport.util.paths import shipped_path

    transfer, replication = sections.get("transfer"), sections.get("replication")
    on_caltech101 = bool(transfer and transfer["dataset_ref"] == "caltech101") or any(
        dataset_reference(f"{t.dataset} {t.literature or ''} {t.name or ''}") == "caltech101"
        for t in (ctx.config.experiments.tables if replication else ()))
    if not on_caltech101:
        return []
    families = {get_spec(variant.backbone).family for _, variant in feature_jobs(ctx)}
    grids = candidate_grids(ctx.config.experiments.heads) if replication else {}
    choices = tomllib.loads(shipped_path("data", "development_choices.toml").read_text(encoding="utf-8"))["choice"]
    return choices_that_apply(choices, families, dataclasses.asdict(ctx.config.train) if transfer else None, grids)


def choices_that_apply(choices: list[dict], families: set[str], train: dict | None,
                       grids: dict[str, Sequence[float]] | None = None) -> list[dict]:
    """The entries of ``data/development_choices.toml`` whose ``when`` holds: a backbone family the build
    uses, train settings that all match (``train`` is None when the build trains no single split), and a
    grid head choosing from the same values (``grids``: a head's name -> its candidates, for a build with
    a Zeiler & Fergus table).

    >>> c = [{"what": "w", "recheck": "r", "when": {"train": {"l2": 0.001}}}]
    >>> choices_that_apply(c, set(), {"l2": 0.001}), choices_that_apply(c, set(), {"l2": 0.0}), choices_that_apply(c, set(), None)
    ([{'what': 'w', 'recheck': 'r'}], [], [])
    >>> g = [{"what": "w", "recheck": "r", "when": {"grid": {"head": "h", "values": [0.1, 1.0]}}}]
    >>> choices_that_apply(g, set(), None, {"h": (1.0, 0.1)}), choices_that_apply(g, set(), None, {"h": (1.0,)})
    ([{'what': 'w', 'recheck': 'r'}], [])
    """
    chosen = []
    for c in choices:
        when = c["when"]
        if "backbone_family" in when and when["backbone_family"] not in families:
            continue
        if "train" in when and (train is None or any(train.get(k) != v for k, v in when["train"].items())):
            continue
        if "grid" in when:
            values = (grids or {}).get(when["grid"]["head"])
            if values is None or sorted(values) != sorted(when["grid"]["values"]):
                continue
        chosen.append({"what": c["what"], "recheck": c["recheck"]})
    return chosen


def candidate_grids(heads: Sequence[str]) -> dict[str, tuple[float, ...]]:
    """Each named head that chooses a value on its hold-out -> the values it tries (``softmax_sgd`` -> its
    ``l2_grid``, ``logreg`` -> its ``C_grid``)."""
    from tlreport.heads import get_head

    grids = {}
    for head in (get_head(h) for h in heads):
        for attr in ("l2_grid", "C_grid"):
            if hasattr(head, attr):
                grids[head.name] = tuple(getattr(head, attr))
    return grids
