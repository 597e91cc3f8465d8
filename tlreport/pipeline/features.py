"""The features stage: every (dataset, feature variant) matrix the later stages read."""

from __future__ import annotations

from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.pipeline.feature_sets import feature_identity
from tlreport.util.files import atomic_write_json, atomic_write_text


def features_inputs(ctx: BuildContext) -> dict:
    from tlreport.backbones.identity import weights_download
    from tlreport.errors import NeedsDownload
    from tlreport.pipeline import feature_sets

    jobs, needs = [], []
    for use, v in feature_sets.feature_jobs(ctx):       # every job, so a dry run lists every download at once
        try:
            jobs.append(feature_identity(ctx, use, v))
            missing = feature_sets.missing_count(ctx, use, v) if ctx.read_only else 0
        except NeedsDownload as e:
            needs += e.downloads
            missing = 1
        if missing and ctx.read_only:               # extracting them would fetch the weights first
            needs.append(weights_download(feature_sets.resolved_spec(ctx, v), data_root=ctx.data_root))
    needs = list(dict.fromkeys(n for n in needs if n))
    if needs:
        raise NeedsDownload(needs)
    return {"jobs": jobs}


def features_detail(ctx: BuildContext) -> str:
    from tlreport.pipeline import feature_sets

    new: dict[str, int] = {}
    for use, v in feature_sets.feature_jobs(ctx):
        new[v.name] = new.get(v.name, 0) + feature_sets.missing_count(ctx, use, v)
    parts = [f"{b} {n:,} new image{'s' if n != 1 else ''}" for b, n in new.items() if n]
    return ", ".join(parts) if parts else "reindex (all cached)"


def features_run(ctx: BuildContext, out: Path) -> None:
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets
    from tlreport.util.text import display_name

    jobs = []
    extracted_before = ctx.counters.get("features.extracted", 0)
    for use, v in feature_sets.feature_jobs(ctx):
        m = pipeline_data.manifest(ctx, use)
        x = feature_sets.features(ctx, use, v)
        spec = feature_sets.resolved_spec(ctx, v)
        atomic_write_text(out / f"manifest-{use.id}.json", m.to_json())
        jobs.append({"dataset": use.ref, "id": use.id, "backbone": v.name, "key": feature_sets.feature_key(ctx, v),
                     "precision": spec.precision, "engine": spec.engine, "images": int(x.shape[0]), "dim": int(x.shape[1]),
                     "summary": m.summary(), "manifest_hash": m.hash(),
                     "skipped": [[display_name(s.relpath), display_name(s.label), s.reason] for s in m.skipped]})
    # where this build computed features, if not on the machine's CPU alone (a GPU, a Ray cluster)
    # "extracted": images this run passed through a network (0: every vector came from the feature cache)
    atomic_write_json(out / "features.json", {"jobs": jobs,
                                              "computed_on": ctx.memo.get("provenance.computed_on", []),
                                              "extracted": ctx.counters.get("features.extracted", 0) - extracted_before})
