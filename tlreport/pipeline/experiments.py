"""The experiments stage: the Zeiler & Fergus grid for every results table."""

from __future__ import annotations

from pathlib import Path

from tlreport.config import TableConfig
from tlreport.engine.stage import BuildContext
from tlreport.errors import UserError
from tlreport.pipeline.feature_sets import feature_identity
from tlreport.util.faults import fault_point
from tlreport.util.files import atomic_write_json, read_json
from tlreport.util.text import display_name


def short_classes(ctx: BuildContext, index: int, table: TableConfig) -> list[tuple[str, int]]:
    """The classes of a table's dataset too small for its largest setting, as (name, images).

    Checked while planning, before any stage runs: with ``drop_short_classes``
    they are left out of the table; without it, this is the one-line error that
    names each such class, its count, and the two ways out.
    """
    import numpy as np

    from tlreport.pipeline import data as pipeline_data

    m = pipeline_data.manifest(ctx, pipeline_data.table_use(ctx, table))
    counts = np.bincount(m.labels(), minlength=len(m.classes))
    need = max(table.settings) + 1               # n training images and at least one to test on
    short = [(name, int(n)) for name, n in zip(m.classes, counts, strict=True) if n < need]
    if short and not table.drop_short_classes:
        def too_small_for(n: int) -> str:
            return ", ".join(str(s) for s in table.settings if n < s + 1)

        listed = "; ".join(f"'{display_name(name)}' has {n} (too few for {too_small_for(n)})"
                           for name, n in short[:10])
        more = f"; and {len(short) - 10} more" if len(short) > 10 else ""
        smallest = min(n for _, n in short)
        # a class of one image fits no setting (n_train >= 1, and one image to test on)
        lower = (f"lower the settings to at most {smallest - 1}" if smallest >= 2 else
                 "give those classes more images (or leave them out with dataset.exclude)")
        raise UserError(
            f"experiments.tables[{index}] ({table.name or table.dataset}): {len(short)} class(es) have fewer "
            f"than n_train + 1 images for settings {list(table.settings)}: {listed}{more}. Either {lower}, "
            "or set drop_short_classes = true in this table to leave those classes out of it (the post lists "
            "them)")
    if len(m.classes) - len(short) < 2:
        raise UserError(
            f"experiments.tables[{index}] ({table.name or table.dataset}): only {len(m.classes) - len(short)} "
            f"class(es) have the {need} images its largest setting needs; lower the settings")
    return short if table.drop_short_classes else []


def head_precision(ctx: BuildContext) -> str:
    """``experiments.precision`` with ``"auto"`` resolved for this machine's CPU."""
    from tlreport.heads.softmax_sgd import auto_precision
    from tlreport.util.cpu import cpu_flags

    return auto_precision(ctx.config.experiments.precision, cpu_flags())


def experiments_heads(ctx: BuildContext) -> list:
    """The configured heads, each with the resolved precision where it has one."""
    import dataclasses

    from tlreport.heads import get_head

    precision = head_precision(ctx)
    heads = [get_head(h) for h in ctx.config.experiments.heads]
    return [dataclasses.replace(h, precision=precision) if hasattr(h, "precision") else h for h in heads]


def experiments_inputs(ctx: BuildContext) -> dict:
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets

    e = ctx.config.experiments
    uses = [pipeline_data.table_use(ctx, t) for t in e.tables]
    features = [feature_identity(ctx, u, v) for u in uses for v in feature_sets.table_variants(ctx)]
    return {"experiments": e, "seed": ctx.config.seed, "tables": [u.id for u in uses], "features": features,
            "dropped": [short_classes(ctx, i, t) for i, t in enumerate(e.tables)],
            "head_precision": head_precision(ctx)}


class FinishedFits:
    """The grid's finished backbone x head fits of one table, kept in the stage's partial folder
    (:meth:`~tlreport.engine.store.StageStore.partial`), so that a build stopped in the grid (Ctrl-C,
    SIGTERM, a crash, a killed machine) resumes there instead of fitting everything again."""

    def __init__(self, folder: Path, table: int):
        self.folder, self.table = folder, table
        self.resumed = 0                           # rows read back, for the build's counters

    def _path(self, backbone: str, head: str) -> Path:
        import hashlib

        name = hashlib.sha256(f"{self.table}\0{backbone}\0{head}".encode()).hexdigest()[:24]
        return self.folder / f"{name}.json"

    def load(self, backbone: str, head: str) -> list[dict] | None:
        try:
            saved = read_json(self._path(backbone, head))
            if (saved["table"], saved["backbone"], saved["head"]) == (self.table, backbone, head):
                self.resumed += len(saved["rows"])
                return list(saved["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            pass                                   # none, or unreadable: fit again
        return None

    def save(self, backbone: str, head: str, rows: list[dict]) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self._path(backbone, head),
                              {"table": self.table, "backbone": backbone, "head": head, "rows": rows})
        except OSError:
            return      # only a resume is lost; the stage's own output is written (or fails) as before
        fault_point("experiments:fits-saved")


def experiments_run(ctx: BuildContext, out: Path) -> None:
    import numpy as np
    import pandas as pd

    from tlreport.heads.grid import aggregate, run_grid
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets
    from tlreport.util.progress import bar

    e = ctx.config.experiments
    frames, dropped_by_table, classes_by_table = [], [], []
    heads = experiments_heads(ctx)
    trained_by_tf = [h.name for h in heads if getattr(h, "uses_tensorflow", False)]
    if trained_by_tf and e.tables:
        from tlreport.backbones.device import compute_device, cpu_only

        device = ctx.once("device", compute_device)       # TensorFlow places the SGD runs on a GPU if it has one
        ctx.log(f"experiments: {', '.join(trained_by_tf)} on {device}")
        if device != cpu_only():
            feature_sets.computed_on(ctx, device)
    key = ctx.keys.get("experiments")
    finished = ctx.store.partial("experiments", key) if key and not ctx.read_only else None
    for i, t in enumerate(e.tables):
        use = pipeline_data.table_use(ctx, t)
        m = pipeline_data.manifest(ctx, use)
        dropped = short_classes(ctx, i, t)
        dropped_by_table.append(dropped)
        labels, classes = m.labels(), list(m.classes)
        keep = np.flatnonzero(~np.isin(labels, [classes.index(name) for name, _ in dropped]))
        kept_classes = [c for c in classes if c not in {name for name, _ in dropped}]
        classes_by_table.append(len(kept_classes))
        labels = np.searchsorted([classes.index(c) for c in kept_classes], labels[keep])   # 0..C'-1
        feats = {b: feature_sets.table_features(ctx, use, b)[keep] for b in e.backbones}
        flips = ({b: feature_sets.table_features(ctx, use, b, flip=True)[keep] for b in e.backbones}
                 if e.flip else None)
        resume = FinishedFits(finished, i) if finished is not None else None
        name = t.name or t.dataset
        total = len(feats) * len(heads) * len(t.settings) * e.n_splits
        with bar(total=total, desc=f"experiments {name}", unit="fit", enabled=not ctx.quiet) as pbar:

            def progress(done: int, total: int, desc: str, pbar=pbar) -> None:
                pbar.set_postfix_str(desc, refresh=False)
                pbar.update(1)

            df = run_grid(feats, labels, kept_classes, settings=t.settings, test_cap=t.test_cap,
                          n_splits=e.n_splits, seed=ctx.config.seed, heads=heads,
                          keys=[m.entries[j].sha256 for j in keep], dataset=f"table{i}", progress=progress,
                          features_flip=flips,
                          ray_address=ctx.config.features.ray_address if ctx.config.features.runner == "ray" else None,
                          finished=resume)
        ctx.count("experiments.fits", len(df))
        if resume is not None and resume.resumed:
            ctx.count("experiments.fits_resumed", resume.resumed)
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
    # a split trains on n images of each kept class: the post's paired comparisons need that count
    atomic_write_json(out / "tables.json", {"dropped": dropped_by_table, "classes": classes_by_table})
    atomic_write_json(out / "timing.json", {
        "grid_seconds": round(float(timing.sum()), 2) if timing is not None else 0.0,
        "mean_fit_seconds": agg_seconds.round(3).tolist() if agg_seconds is not None else []})
