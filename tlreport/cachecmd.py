"""``tlreport cache info`` and ``tlreport cache prune``."""

from __future__ import annotations

import shutil

from tlreport.config import Config


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


def cache_info(cfg: Config) -> int:
    from tlreport.cache import StageStore
    from tlreport.features import FeatureStore

    root = cfg.cache_dir
    print(f"cache: {root}")
    total = 0
    for stage, key, size in StageStore(root / "stages").entries():
        print(f"  stage {stage:12s} {key}  {_size(size)}")
        total += size
    for info in FeatureStore(root / "features").info():
        name = FeatureStore(root / "features").meta(info[0]).get("name", "?")
        print(f"  features {name:20s} {info[0][:16]}  {info[1]:,} images  {_size(info[2])}")
        total += info[2]
    print(f"total: {_size(total)}")
    return 0


def cache_prune(cfg: Config) -> int:
    """Remove stage entries and feature namespaces that this config no longer references."""
    from tlreport import datastage
    from tlreport.build import BuildContext, plan, resolve_data_root
    from tlreport.cache import BuildLock, StageStore
    from tlreport.features import FeatureStore, backbone_key
    from tlreport.stages import STAGES

    store = StageStore(cfg.cache_dir / "stages")
    with BuildLock(cfg.cache_dir):
        ctx = BuildContext(config=cfg, store=store, quiet=True, data_root=resolve_data_root(cfg))
        plan(ctx, STAGES)
        keep = {(name, store.path(name, key).name) for name, key in ctx.keys.items()}
        removed = 0
        for stage, key, _ in store.entries():
            if (stage, key) not in keep:
                shutil.rmtree(store.root / stage / key, ignore_errors=True)
                removed += 1
        keys = {backbone_key(datastage.resolved_spec(ctx, b)) for _, b in datastage.feature_jobs(ctx)}
        removed_f = FeatureStore(cfg.cache_dir / "features").prune(sorted(keys))
    print(f"pruned {removed} stage entr{'y' if removed == 1 else 'ies'} and {removed_f} feature namespace(s)")
    return 0
