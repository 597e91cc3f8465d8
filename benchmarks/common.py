"""What the benchmarks share: a built config's cached features on its table's protocol, synthetic
Caltech-101-shaped features, and the table check's budget.

The scripts import it as ``from common import ...`` (Python puts a script's own folder first on its
path); tlreport itself comes from the install (``pip install -e .``), so no script edits ``sys.path``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

# Images per class in Caltech-101's 101_ObjectCategories (BACKGROUND_Google included), sorted.
CALTECH101_SIZES = [
    31, 32, 33, 34, 34, 34, 34, 35, 35, 35, 37, 38, 39, 39, 39, 40, 40, 41, 42, 42, 42, 43, 43, 43, 45,
    45, 45, 46, 47, 47, 47, 47, 49, 49, 50, 50, 51, 51, 52, 53, 53, 54, 54, 55, 55, 56, 57, 57, 57, 59,
    59, 59, 59, 60, 61, 62, 63, 64, 64, 64, 64, 64, 65, 66, 67, 67, 67, 68, 69, 70, 73, 75, 75, 76, 78,
    80, 81, 82, 84, 85, 85, 85, 86, 86, 86, 87, 88, 91, 98, 99, 100, 107, 114, 123, 128, 200, 239, 435,
    435, 468, 798, 800,
]


def synthetic_caltech101(dim: int = 1280, *, noise: float = 2.5, nuisance: float = 3.0, rank: int = 64,
                         seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Caltech-101-shaped features: (9145, dim) float32, labels, 102 class names.

    Class means live on a ``rank``-dim subspace; on top of isotropic ``noise``
    every image gets a strong shared ``nuisance`` component (pose, background)
    on another low-rank subspace, so the noise is correlated as in real CNN
    features and a discriminative head beats nearest-centroid.  Rectified, as
    pooled post-activation features are.
    """
    rng = np.random.default_rng(seed)
    sizes = np.array(CALTECH101_SIZES)
    rng.shuffle(sizes)
    labels = np.repeat(np.arange(sizes.size), sizes)
    basis = rng.normal(size=(rank, dim)).astype(np.float32) / np.sqrt(rank)
    means = rng.normal(size=(sizes.size, rank)).astype(np.float32) @ basis
    nuis = rng.normal(size=(32, dim)).astype(np.float32) / np.sqrt(32)
    X = means[labels] + nuisance * rng.normal(size=(labels.size, 32)).astype(np.float32) @ nuis
    X += noise * rng.normal(size=(labels.size, dim)).astype(np.float32)
    X = np.maximum(X + 0.5, 0.0, out=X)
    return X, labels, [f"class_{i:03d}" for i in range(sizes.size)]


#: the table check's budget: points of mean per-class accuracy any row and setting may move (issue #15)
TABLE_BUDGET = 0.15


def setting_changes(before, after, settings) -> tuple[list[str], float, int]:
    """One row's means per setting (``before``/``after``: indexed by ``n_train``) side by side: the
    printed cells, the largest absolute change and the setting it is at."""
    cells, worst, at = [], 0.0, settings[0]
    for n in settings:
        a, b = before.loc[n], after.loc[n]
        if abs(b - a) > worst:
            worst, at = abs(b - a), n
        cells.append(f"{n}/class {a:.3f} -> {b:.3f} ({b - a:+.3f})")
    return cells, worst, at


def table_context(config: Path, dataset: str | None, *, features: dict | None = None, read_only: bool = True):
    """A build context for ``config``, its first table and that table's dataset use.

    ``features`` replaces keys of the config's ``[features]`` (``{"precision": "bfloat16"}``).  With
    ``read_only`` (the default) nothing is extracted or written.
    """
    import dataclasses

    from tlreport.config import load_config
    from tlreport.engine.stage import BuildContext
    from tlreport.engine.store import StageStore
    from tlreport.errors import UserError
    from tlreport.pipeline import data as pipeline_data

    cfg = load_config(config)
    if features:
        raw = {**cfg.raw, "features": {**cfg.raw["features"], **features}}
        cfg = dataclasses.replace(cfg, raw=raw)                      # the sections are derived from raw
    if not cfg.experiments.tables:
        raise UserError(f"{config} has no [[experiments.tables]]")
    ctx = BuildContext(config=cfg, store=StageStore(cfg.cache_dir / "stages"), read_only=read_only,
                       dataset_override=dataset, quiet=True)
    ctx.data_root = pipeline_data.resolve_data_root(cfg, dataset)
    table = cfg.experiments.tables[0]
    return ctx, table, pipeline_data.table_use(ctx, table)


def table_rows(ctx, table, use) -> tuple[dict[str, np.ndarray], np.ndarray, list[str], list[str], dict]:
    """Each ``experiments.backbones`` row's features for ``table`` (dataset use ``use``), and its protocol;
    extracted first where the cache lacks them and ``ctx`` may write, else a one-line error."""
    from tlreport.errors import UserError
    from tlreport.pipeline import data as pipeline_data
    from tlreport.pipeline import feature_sets

    cfg = ctx.config
    if table.drop_short_classes:  # the build's class filter lives in its experiments stage, not here
        raise UserError(f"{table.name or table.dataset}: drop_short_classes = true is not supported here; "
                        "the benchmarks run a table on all its classes")
    for b in dict.fromkeys(b for e in cfg.experiments.backbones for b in feature_sets.table_parts(e)):
        missing = feature_sets.missing_count(ctx, use, feature_sets.FeatureVariant(b))
        if missing and ctx.read_only:
            raise UserError(f"{b}: {missing} images have no cached features; run tlreport build first")
    m = pipeline_data.manifest(ctx, use)
    rows = {e: feature_sets.table_features(ctx, use, e) for e in cfg.experiments.backbones}
    protocol = {"settings": list(table.settings), "test_cap": table.test_cap, "n_splits": cfg.experiments.n_splits,
                "seed": cfg.seed}
    return rows, m.labels(), list(m.classes), [e.sha256 for e in m.entries], protocol


def grid_inputs(argv: list[str] | None, description: str) -> tuple[dict[str, np.ndarray], np.ndarray, list[str],
                                                                  list[str] | None, dict]:
    """``--config``/``--dataset`` parsed: a config's cached rows (:func:`table_rows`; nothing is extracted), else one synthetic
    Caltech-101-shaped 1280-d row on the Zeiler & Fergus protocol."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--config", type=Path, help="read this config's cached features (first table)")
    ap.add_argument("--dataset", help="the dataset folder, as for tlreport build --dataset")
    args = ap.parse_args(argv)
    if args.config:
        return table_rows(*table_context(args.config, args.dataset))
    X, y, names = synthetic_caltech101()

    return {"synthetic 1280-d": X}, y, names, None, {"settings": [15, 30], "test_cap": 50, "n_splits": 5, "seed": 0}
