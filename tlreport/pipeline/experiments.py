"""The experiments stage: the Zeiler & Fergus grid for every results table."""

from __future__ import annotations

from pathlib import Path

from tlreport.engine.stage import BuildContext
from tlreport.pipeline.resources import feature_identity
from tlreport.util.files import atomic_write_json

# ----------------------------------------------------------------------------- experiments


def experiments_inputs(ctx: BuildContext) -> dict:
    from tlreport.pipeline import resources as datastage

    e = ctx.config.experiments
    uses = [datastage.table_use(ctx, t) for t in e.tables]
    return {"experiments": e, "seed": ctx.config.seed, "tables": [u.id for u in uses],
            "features": [feature_identity(ctx, u, v) for u in uses for v in datastage.table_variants(ctx)]}


def experiments_run(ctx: BuildContext, out: Path) -> None:
    import pandas as pd

    from tlreport.heads.grid import aggregate, run_grid
    from tlreport.pipeline import resources as datastage
    from tlreport.util.progress import bar

    e = ctx.config.experiments
    frames = []
    for i, t in enumerate(e.tables):
        use = datastage.table_use(ctx, t)
        m = datastage.manifest(ctx, use)
        feats = {b: datastage.features(ctx, use, datastage.FeatureVariant(b)) for b in e.backbones}
        flips = ({b: datastage.features(ctx, use, datastage.FeatureVariant(b, flip=True)) for b in e.backbones}
                 if e.flip else None)
        heads = e.heads
        name = t.name or t.dataset
        total = len(feats) * len(heads) * len(t.settings) * e.n_splits
        with bar(total=total, desc=f"experiments {name}", unit="fit", enabled=not ctx.quiet) as pbar:

            def progress(done: int, total: int, desc: str, pbar=pbar) -> None:
                pbar.set_postfix_str(desc, refresh=False)
                pbar.update(1)

            df = run_grid(feats, m.labels(), m.classes, settings=t.settings, test_cap=t.test_cap,
                          n_splits=e.n_splits, seed=ctx.config.seed, heads=heads,
                          keys=[x.sha256 for x in m.entries], dataset=f"table{i}", progress=progress,
                          features_flip=flips)
        ctx.count("experiments.fits", len(df))
        frames.append(df)
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    timing = df.pop("seconds") if "seconds" in df else None
    df.to_csv(out / "results.csv", index=False, float_format="%.6f")
    df["seconds"] = timing if timing is not None else 0.0
    agg = aggregate(df) if len(df) else pd.DataFrame()
    agg_seconds = agg.pop("seconds") if "seconds" in agg else None
    agg.to_csv(out / "aggregate.csv", index=False, float_format="%.4f")
    atomic_write_json(out / "results.json", {"splits": df.drop(columns="seconds").to_dict(orient="records"),
                                             "aggregate": agg.to_dict(orient="records")})
    atomic_write_json(out / "timing.json", {
        "grid_seconds": round(float(timing.sum()), 2) if timing is not None else 0.0,
        "mean_fit_seconds": agg_seconds.round(3).tolist() if agg_seconds is not None else []})
