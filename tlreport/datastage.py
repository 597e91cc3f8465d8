"""Datasets and features as the stages see them.

A build may use several datasets (the transfer section's and one per results
table) and several backbones.  :func:`dataset_uses` lists them from the config,
:func:`manifest` scans each once per build (with a hash cache, so a rescan of
an unchanged folder is fast) and :func:`features` returns the feature matrix of
a (dataset, backbone) pair from the content-addressed store, extracting only
what is missing.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tlreport.backbones.spec import FLIP
from tlreport.build import BuildContext
from tlreport.errors import UserError


@dataclass(frozen=True)
class DatasetUse:
    ref: str                      # "demo", "artifact:NAME" or a path, as configured
    include: tuple[str, ...]
    exclude: tuple[str, ...]

    @property
    def id(self) -> str:
        blob = f"{self.ref}\0{','.join(self.include)}\0{','.join(self.exclude)}"
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def transfer_use(ctx: BuildContext) -> DatasetUse:
    d = ctx.config["dataset"]
    ref = ctx.dataset_override or d["path"]
    return DatasetUse(ref, tuple(d["include"]), tuple(d["exclude"]))


def table_use(ctx: BuildContext, table: dict) -> DatasetUse:
    ref = table["dataset"]
    if ctx.dataset_override and ref == ctx.config["dataset"]["path"]:
        ref = ctx.dataset_override          # --dataset points the same dataset elsewhere
    return DatasetUse(ref, (), tuple(table["exclude"]))


def table_backbones(ctx: BuildContext) -> list[str]:
    """The feature variants every replication table reads: each backbone, and ``<backbone>+flip``
    too with ``experiments.flip``."""
    e = ctx.config["experiments"]
    return [b + f for b in e["backbones"] for f in ("", FLIP) if not f or e["flip"]]


def feature_jobs(ctx: BuildContext) -> list[tuple[DatasetUse, str]]:
    """Every (dataset, backbone) pair whose features the enabled stages need.

    With ``experiments.flip`` the tables also need ``<backbone>+flip``: the
    features of the mirrored images, cached under their own key.
    """
    jobs: list[tuple[DatasetUse, str]] = []
    cfg = ctx.config
    if cfg["train"]["enabled"]:
        jobs.append((transfer_use(ctx), cfg["train"]["backbone"]))
    if cfg["experiments"]["enabled"]:
        for t in cfg["experiments"]["tables"]:
            for b in table_backbones(ctx):
                jobs.append((table_use(ctx, t), b))
    seen, out = set(), []
    for j in jobs:
        if (j[0].id, j[1]) not in seen:
            seen.add((j[0].id, j[1]))
            out.append(j)
    return out


def dataset_root(ctx: BuildContext, ref: str) -> Path:
    if ref == "demo":
        from tlreport.demo_dataset import make_demo_dataset

        return make_demo_dataset(ctx.cache_dir, seed=ctx.config["seed"])
    if ref.startswith("artifact:"):
        from tlreport import fetch

        name = ref.split(":", 1)[1]
        root = fetch.data_root(ctx.data_root)
        found = fetch.resolve_dataset(name, root)
        if found is None:
            found = fetch.ensure(name, root, allow_download=True)
        return Path(found)
    return ctx.config.resolve(ref)


def manifest(ctx: BuildContext, use: DatasetUse):
    """The scanned manifest of a dataset, once per build."""

    def scan():
        from tlreport.datasets import scan_dataset

        root = dataset_root(ctx, use.ref)
        cache = ctx.cache_dir / "manifests" / (hashlib.sha256(os.fsencode(str(root.resolve()))).hexdigest()[:16] + ".json")
        m = scan_dataset(root, include=use.include or None, exclude=use.exclude or None,
                         max_pixels=ctx.config["dataset"]["max_pixels"], hash_cache_path=cache,
                         progress=not ctx.quiet)
        ctx.log(f"dataset {use.ref}: {m.summary()}")
        for s in m.skipped[:20]:
            ctx.log(f"  skipped {s.label}/{s.relpath}: {s.reason}")
        if len(m.skipped) > 20:
            ctx.log(f"  ... and {len(m.skipped) - 20} more (listed in the manifest)")
        prov = ctx.memo.setdefault("provenance.datasets", [])
        prov.append({"name": use.ref, "hash": m.hash(), "summary": m.summary()})
        return m

    return ctx.once(f"manifest:{use.id}", scan)


def resolved_spec(ctx: BuildContext, backbone: str):
    """The registered spec with the configured precision (and ``+flip``) applied."""
    from tlreport.backbones import get_spec

    flip = backbone.endswith(FLIP)
    spec = get_spec(backbone.removesuffix(FLIP))
    if flip:
        spec = spec.with_flip()
    precision = ctx.config["features"]["precision"]
    if precision == "auto":
        precision = "bfloat16" if cpu_has_bf16() else "float32"
    return spec.with_precision(precision) if precision != spec.precision else spec


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX on this CPU (Linux ``/proc/cpuinfo`` flags)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def store(ctx: BuildContext):
    from tlreport.features import FeatureStore

    return ctx.once("feature_store", lambda: FeatureStore(ctx.cache_dir / "features", report=ctx.log))


def missing_count(ctx: BuildContext, use: DatasetUse, backbone: str) -> int:
    """Images of the dataset whose features the store lacks (looked up once per build)."""

    def count() -> int:
        from tlreport.features import backbone_key

        m = manifest(ctx, use)
        spec = resolved_spec(ctx, backbone)
        found, _ = store(ctx).lookup(backbone_key(spec), [e.sha256 for e in m.entries])
        return int(len(found) - found.sum())

    return ctx.once(f"missing:{use.id}:{backbone}", count)


def model(ctx: BuildContext, backbone: str):
    """The Keras model for a backbone, built once per build (``+flip`` shares it)."""
    backbone = backbone.removesuffix(FLIP)

    def build():
        from tlreport.backbones import load_model

        spec = resolved_spec(ctx, backbone)
        root = ctx.data_root
        if spec.precision == "bfloat16":
            import keras

            keras.mixed_precision.set_global_policy("mixed_bfloat16")
            try:
                return load_model(spec, cache_dir=ctx.cache_dir, data_root=root)
            finally:
                keras.mixed_precision.set_global_policy("float32")
        return load_model(spec, cache_dir=ctx.cache_dir, data_root=root)

    return ctx.once(f"model:{backbone}", build)


def features(ctx: BuildContext, use: DatasetUse, backbone: str) -> np.ndarray:
    """Features (N, D) float32 aligned with the manifest; computes only what the store lacks."""

    def get():
        from tlreport.features import extract_features

        m = manifest(ctx, use)
        spec = resolved_spec(ctx, backbone)
        if spec.family == "inception_2015":
            raise UserError("inception_2015 is the seed's classification demo; use inception_v3 for features")
        n_missing = missing_count(ctx, use, backbone)
        net = model(ctx, backbone) if n_missing else None

        def extracted(n: int) -> None:
            ctx.count("features.extracted", n)
            ctx.count(f"features.extracted.{backbone}", n)

        x = extract_features(m, spec, store(ctx), model=net, batch_size=ctx.config["features"]["batch_size"],
                             progress=not ctx.quiet, on_batch=lambda n: extracted(n),
                             max_pixels=ctx.config["dataset"]["max_pixels"])
        return x

    return ctx.once(f"features:{use.id}:{backbone}", get)
