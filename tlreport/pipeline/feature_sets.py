"""Feature sets as the stages see them: which backbone variants a build needs, their cache keys, and the
matrices, extracting only what the content-addressed cache lacks.

:func:`feature_jobs` lists the (dataset, feature variant) pairs the enabled
stages read; :func:`features` returns a matrix aligned with the dataset's
manifest; :func:`table_features` one backbone's, or several side by side.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from tlreport.backbones.spec import FLIP
from tlreport.engine.stage import BuildContext
from tlreport.errors import NeedsDownload, UserError
from tlreport.pipeline.data import DatasetUse, manifest, table_use, transfer_use
from tlreport.util.cpu import cpu_flags
from tlreport.util.hashing import hash_obj


@dataclass(frozen=True, order=True)
class FeatureVariant:
    """Which features of a dataset: a backbone's, on the images as they are or mirrored left-right.

    The mirrored images' features (``flip=True``) feed test-time flip averaging
    and are cached under a key of their own.
    """

    backbone: str
    flip: bool = False

    @property
    def name(self) -> str:
        """How the plan, the counters and the cache listing show it: ``efficientnet_lite0+flip``."""
        return self.backbone + (FLIP if self.flip else "")


def table_parts(entry: str) -> list[str]:
    """The backbones of a feature set (a table row's or ``train.backbone``): ``a+b`` is the concatenation of
    a's and b's features."""
    return entry.split("+")


def table_variants(ctx: BuildContext) -> list[FeatureVariant]:
    """The feature variants every replication table reads: each backbone's (concatenated rows read their
    parts'), and with ``experiments.flip`` each backbone's on the mirrored images too."""
    e = ctx.config.experiments
    backbones = dict.fromkeys(b for entry in e.backbones for b in table_parts(entry))
    return [FeatureVariant(b, flip) for b in backbones for flip in (False, True) if not flip or e.flip]


def table_features(ctx: BuildContext, use: DatasetUse, entry: str, *, flip: bool = False) -> np.ndarray:
    """The features a table row or the transfer section reads: one backbone's, or several side by side
    (``a+b+c``).

    Concatenated as they are: ``logreg`` standardises every feature on its
    training images; ``softmax_sgd`` reads raw values, so a block of larger
    values weighs more there (the three EfficientNet-Lite blocks are of one scale).
    """
    parts = [features(ctx, use, FeatureVariant(b, flip)) for b in table_parts(entry)]
    return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def feature_jobs(ctx: BuildContext) -> list[tuple[DatasetUse, FeatureVariant]]:
    """Every (dataset, feature variant) pair whose features the enabled stages need, once each."""
    jobs: list[tuple[DatasetUse, FeatureVariant]] = []
    cfg = ctx.config
    if cfg.train.enabled:
        jobs += [(transfer_use(ctx), FeatureVariant(b)) for b in table_parts(cfg.train.backbone)]
    if cfg.experiments.enabled:
        for t in cfg.experiments.tables:
            for v in table_variants(ctx):
                jobs.append((table_use(ctx, t), v))
    seen, out = set(), []
    for use, v in jobs:
        if (use.id, v) not in seen:
            seen.add((use.id, v))
            out.append((use, v))
    return out


def resolved_spec(ctx: BuildContext, variant: FeatureVariant | str):
    """The registered spec with the configured precision (and the mirroring) applied."""
    from tlreport.backbones import get_spec

    if isinstance(variant, str):
        variant = FeatureVariant(variant)
    spec = get_spec(variant.backbone)
    if variant.flip:
        spec = spec.with_flip()
    precision = ctx.config.features.precision
    engine = ctx.config.features.engine
    if engine == "auto":
        from tlreport.features.engines import auto_engine

        engine = auto_engine(cpu_flags())
    if precision == "auto":
        from tlreport.features.engines import auto_precision

        precision = auto_precision(engine, cpu_flags())
    if precision != spec.precision:
        spec = spec.with_precision(precision)
    return spec.with_engine(engine) if engine != spec.engine else spec


def weights_id(ctx: BuildContext, backbone: str) -> str:
    """The backbone's weights identity (:mod:`tlreport.backbones.identity`), once per build."""
    from tlreport.backbones import get_spec
    from tlreport.backbones.identity import weights_identity

    return ctx.once(f"weights:{backbone}", lambda: weights_identity(
        get_spec(backbone), data_root=ctx.data_root, download=not ctx.read_only))


def feature_key(ctx: BuildContext, variant: FeatureVariant) -> str:
    """The feature store namespace of a variant: spec, weights identity and precision."""
    from tlreport.features.cache import backbone_key

    return backbone_key(resolved_spec(ctx, variant), weights_sha256=weights_id(ctx, variant.backbone))


def store(ctx: BuildContext):
    from tlreport.features.cache import FeatureStore

    return ctx.once("feature_store", lambda: FeatureStore(ctx.cache_dir / "features", report=ctx.log,
                                                          read_only=ctx.read_only))


def missing_count(ctx: BuildContext, use: DatasetUse, variant: FeatureVariant) -> int:
    """Images of the dataset whose features the store lacks (looked up once per build)."""

    def count() -> int:
        m = manifest(ctx, use)
        found, _ = store(ctx).lookup(feature_key(ctx, variant), [e.sha256 for e in m.entries])
        return int(len(found) - found.sum())

    return ctx.once(f"missing:{use.id}:{variant.name}", count)


def model(ctx: BuildContext, backbone: str):
    """The Keras model for a backbone, built once per build (its mirrored variant shares it)."""

    def build():
        from tlreport.features.engines import load_keras_model

        return load_keras_model(resolved_spec(ctx, backbone), cache_dir=ctx.cache_dir, data_root=ctx.data_root)

    return ctx.once(f"model:{backbone}", build)


def extractor(ctx: BuildContext, variant: FeatureVariant):
    """What computes a variant's features: the Keras model, or its OpenVINO conversion (``features.engine``),
    loaded once per build (the mirror shares it).  OpenVINO builds the Keras model only to convert it."""
    spec = resolved_spec(ctx, variant)

    def load():
        from tlreport.backbones.device import compute_device, cpu_only

        if spec.engine == "tensorflow":
            ctx.log(f"features: {variant.backbone} on {ctx.once('device', compute_device)}")
            return model(ctx, variant.backbone)
        from tlreport.features.engines import openvino_backbone

        ctx.log(f"features: {variant.backbone} on {cpu_only()}, OpenVINO {spec.precision}")
        return openvino_backbone(spec, build_keras=lambda: model(ctx, variant.backbone), cache_dir=ctx.cache_dir,
                                 key=feature_key(ctx, FeatureVariant(variant.backbone)))

    return ctx.once(f"extractor:{variant.backbone}:{spec.engine}", load)


def computed_on(ctx: BuildContext, where: str) -> None:
    """Record where this build computed features beyond the machine's CPU (the post's provenance)."""
    seen = ctx.memo.setdefault("provenance.computed_on", [])
    if where not in seen:
        seen.append(where)


def features(ctx: BuildContext, use: DatasetUse, variant: FeatureVariant) -> np.ndarray:
    """Features (N, D) float32 aligned with the manifest; computes only what the store lacks.

    Extracting on this machine, the first variant of a dataset that lacks images extracts every
    variant of it the build needs in one pass (:func:`extract_missing`), so each image is decoded once.
    """

    def get():
        from tlreport.features.extract import extract_features

        m = manifest(ctx, use)
        spec = _feature_spec(ctx, variant)
        n_missing = missing_count(ctx, use, variant)
        feats_cfg = ctx.config.features
        batches = None
        if feats_cfg.runner == "ray" and n_missing:
            from tlreport.features.ray_runner import ray_feature_batches

            batches = functools.partial(ray_feature_batches, root=m.root, spec=spec, address=feats_cfg.ray_address,
                              workers=feats_cfg.ray_workers, batch_size=feats_cfg.batch_size,
                              max_pixels=ctx.config.dataset.max_pixels, cache_dir=ctx.cache_dir,
                              data_root=ctx.data_root, weights_sha256=weights_id(ctx, variant.backbone),
                              key=feature_key(ctx, FeatureVariant(variant.backbone)), log=ctx.log,
                              on_cluster=lambda where: computed_on(ctx, where))
        net = None
        if batches is None and n_missing:
            extract_missing(ctx, use)                  # this variant and its siblings, in one pass
            net = _local_extractor(ctx, variant)       # loaded by that pass; used only if the pass left some
        return extract_features(m, spec, store(ctx), model=net, batch_size=feats_cfg.batch_size,
                                progress=not ctx.quiet, on_batch=_counter(ctx, variant), key=feature_key(ctx, variant),
                                max_pixels=ctx.config.dataset.max_pixels, batches=batches)

    return ctx.once(f"features:{use.id}:{variant.name}", get)


def extract_missing(ctx: BuildContext, use: DatasetUse) -> None:
    """Extract, on this machine, every feature variant of ``use`` that the build needs and the store lacks,
    in one pass over the images (each decoded once, prepared for every variant); once per build."""

    def run() -> None:
        from tlreport.features.extract import Extraction, extract_features_many

        variants = [v for u, v in feature_jobs(ctx) if u.id == use.id and missing_count(ctx, u, v)]
        jobs = [Extraction(_feature_spec(ctx, v), _local_extractor(ctx, v), feature_key(ctx, v), _counter(ctx, v))
                for v in variants]
        if jobs:
            extract_features_many(manifest(ctx, use), jobs, store(ctx), batch_size=ctx.config.features.batch_size,
                                  progress=not ctx.quiet, max_pixels=ctx.config.dataset.max_pixels)

    ctx.once(f"extracted:{use.id}", run)


def _feature_spec(ctx: BuildContext, variant: FeatureVariant):
    spec = resolved_spec(ctx, variant)
    if spec.family == "inception_2015":
        raise UserError("inception_2015 is the seed's classification demo; use inception_v3 for features")
    return spec


def _local_extractor(ctx: BuildContext, variant: FeatureVariant):
    """:func:`extractor`, noting in the provenance where TensorFlow runs it if not on the CPU alone."""
    net = extractor(ctx, variant)
    if resolved_spec(ctx, variant).engine == "tensorflow":    # OpenVINO runs on the CPU
        from tlreport.backbones.device import compute_device, cpu_only

        device = ctx.once("device", compute_device)
        if device != cpu_only():
            computed_on(ctx, device)         # a GPU, or a split CPU: the machine line does not say it
    return net


def _counter(ctx: BuildContext, variant: FeatureVariant):
    def extracted(n: int) -> None:
        ctx.count("features.extracted", n)
        ctx.count(f"features.extracted.{variant.name}", n)

    return extracted


def feature_identity(ctx: BuildContext, use: DatasetUse, variant: FeatureVariant) -> dict:
    """What one (dataset, variant) feature matrix depends on: the manifest and the variant's cache key.

    Read-only, both are looked up before either's :class:`NeedsDownload` is raised, so the plan names both.
    """
    needs: list[str] = []
    found = {}
    for name, get in (("manifest", lambda: manifest(ctx, use).hash()), ("key", lambda: feature_key(ctx, variant))):
        try:
            found[name] = get()
        except NeedsDownload as e:
            needs += e.downloads
    if needs:
        raise NeedsDownload(needs)
    skipped = [[s.relpath, s.label, s.reason] for s in manifest(ctx, use).skipped]
    return {"dataset": use.id, "manifest": found["manifest"], "backbone": variant.name,
            "key": found["key"], "max_pixels": ctx.config.dataset.max_pixels,
            "skipped": hash_obj(skipped)}        # features.json reports them, and the post its summary


def backbone_code(spec) -> str:
    """The code that builds a backbone: its family module is imported by name, so the static scan of the
    stage's own imports (:mod:`tlreport.engine.code`) cannot see it."""
    from tlreport.engine.code import code_fingerprint

    return code_fingerprint(f"tlreport.backbones.{spec.family}")
