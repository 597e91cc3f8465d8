"""``tlreport cache info`` and ``tlreport cache prune``."""

from __future__ import annotations

import shutil

from tlreport.config import Config
from tlreport.errors import NeedsDownload
from tlreport.util.humanize import human_size


def cache_info(cfg: Config) -> int:
    from tlreport.engine.store import StageStore
    from tlreport.features.cache import FeatureStore

    root = cfg.cache_dir
    print(f"cache: {root}")
    total = 0
    for stage, key, size in StageStore(root / "stages").entries():
        print(f"  stage {stage:12s} {key}  {human_size(size)}")
        total += size
    features = FeatureStore(root / "features", read_only=True)     # looking never deletes
    for info in features.info():
        meta = features.meta(info.key)
        how = f"{meta.get('engine', 'tensorflow')} {meta.get('precision', 'float32')}"
        print(f"  features {meta.get('name', '?'):20s} {info.key[:16]}  {how:20s} {info.images:,} images  "
              f"{human_size(info.bytes)}")
        total += info.bytes
    print(f"total: {human_size(total)}" if total else "total: 0 B (empty: tlreport build fills it)")
    return 0


def _planning_context(cfg: Config, store, dataset: str | None, data_root: str | None):
    """A read-only build context for ``cfg`` that keys its stages as a build given ``--dataset dataset`` and
    ``--data-root data_root`` would (the entries of a build given ``--dataset`` are keyed on that folder)."""
    from tlreport.engine.stage import BuildContext
    from tlreport.pipeline import data as pipeline_data

    return BuildContext(config=cfg, store=store, quiet=True, dataset_override=dataset,
                        data_root=pipeline_data.resolve_data_root(cfg, data_root), read_only=True)


def cache_path(cfg: Config, stage: str, *, dataset: str | None = None, data_root: str | None = None) -> int:
    """Print the folder of ``stage``'s cache entry for this config (``train``: where ``classifier.keras`` is)."""
    from tlreport.engine.plan import plan
    from tlreport.engine.store import StageStore
    from tlreport.errors import UserError
    from tlreport.pipeline import STAGES

    names = [s.name for s in STAGES]
    if stage not in names:
        raise UserError(f"cache path: unknown stage {stage!r}; stages: {', '.join(names)}")
    store = StageStore(cfg.cache_dir / "stages")
    ctx = _planning_context(cfg, store, dataset, data_root)
    rows = plan(ctx, STAGES)
    row = next(r for r in rows if r.stage.name == stage)
    if not row.enabled:
        raise UserError(f"cache path: the {stage} stage is off in this config, so it has no entry")
    if row.key is None:
        # its inputs are not on this machine: most often a build that was given --dataset, asked about without it
        needs = sorted({n for r in rows for n in r.needs})
        raise UserError(f"cache path: cannot find the {stage} stage's entry: its inputs need "
                        f"{', '.join(needs) or 'what an earlier stage has not computed'}; if the build was given "
                        "--dataset PATH (or --data-root DIR), give it here too")
    path = store.path(stage, row.key)
    if path is None or not path.is_dir():
        raise UserError(f"cache path: the {stage} stage has no entry for this config yet; run tlreport build first"
                        + ("" if dataset else " (if the build was given --dataset PATH, give it here too)"))
    print(path.resolve())
    return 0


def cache_prune(cfg: Config, *, dataset: str | None = None, data_root: str | None = None) -> int:
    """Remove stage entries and feature namespaces that this config no longer references."""
    from tlreport.engine.plan import plan
    from tlreport.engine.store import StageStore, cache_lock
    from tlreport.features.cache import FeatureStore
    from tlreport.pipeline import STAGES, feature_sets

    store = StageStore(cfg.cache_dir / "stages")
    with cache_lock(cfg.cache_dir):
        ctx = _planning_context(cfg, store, dataset, data_root)
        rows = plan(ctx, STAGES)
        keep = {(name, store.path(name, key).name) for name, key in ctx.keys.items()}
        # a stage this plan could not key (its inputs need a download) keeps every entry it has
        unkeyed = {r.stage.name for r in rows if r.enabled and r.key is None}
        removed = 0
        for stage, key, _ in store.entries():
            if (stage, key) not in keep and stage not in unkeyed:
                shutil.rmtree(store.root / stage / key, ignore_errors=True)
                removed += 1
        unfinished = store.unfinished(keep)      # the lock is ours: no build is writing them
        for tmp in unfinished:
            shutil.rmtree(tmp, ignore_errors=True)
        try:
            keys = {feature_sets.feature_key(ctx, v) for _, v in feature_sets.feature_jobs(ctx)}
        except NeedsDownload:       # some backbone's weights are not installed: its namespace is unknown
            keys = None
        features = FeatureStore(cfg.cache_dir / "features")
        before = {i.key for i in features.info()}
        freed = features.prune(sorted(keys)) if keys is not None else 0
        removed_f = len(before - {i.key for i in features.info()})
    print(f"pruned {removed} stage entr{'y' if removed == 1 else 'ies'} and {removed_f} feature namespace(s)"
          + (f", {human_size(freed)} of features freed" if freed else "")
          + (f"; removed {len(unfinished)} unfinished stage folder(s) of interrupted builds" if unfinished else ""))
    return 0
