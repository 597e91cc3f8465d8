"""A stand-in backbone spec for the feature-store and extraction tests (and their kill script)."""

from __future__ import annotations

import dataclasses

from tlreport.backbones import get_spec
from tlreport.backbones.spec import WeightsSource

# crop 0.875 of 16 px -> shorter side 18: the 32-px fixtures are too small for a JPEG draft decode,
# so the pipeline's pixels equal a full decode + prepare() exactly
SPEC = dataclasses.replace(get_spec("efficientnet_lite0"), name="fake", input_size=16, feature_dim=4,
                           resize="center_crop", crop_fraction=0.875,
                           weights=WeightsSource(kind="random", sha256="fake-weights"))
