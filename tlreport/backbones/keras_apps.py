"""Backbones from ``keras.applications``: InceptionV3 and InceptionResNetV2.

The model built here follows the pixel contract of
:mod:`tlreport.backbones.spec`: it takes float32 RGB in ``[0, 255]`` and applies
``(x - mean) / std`` from the spec itself, then returns the global-average-pool
output (layer ``avg_pool``) as ``features`` and the softmax (layer
``predictions``) as ``probs``.

Weights are looked up, in order: ``spec.extra["weights_file"]``; the Keras cache
``$KERAS_HOME/models/<filename>`` (``~/.keras`` without ``KERAS_HOME``) when its
md5 matches the spec; a download through ``keras.utils.get_file``.  A failed
download becomes a one-line :class:`~tlreport.errors.UserError` that says where
to put the file by hand.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

from tlreport.backbones.spec import BackboneSpec
from tlreport.errors import IntegrityError, UserError

FEATURE_LAYER = "avg_pool"
PROBS_LAYER = "predictions"


def _application(spec: BackboneSpec) -> Callable:
    """The ``keras.applications`` constructor for ``spec.name``."""
    import keras

    apps = {
        "inception_v3": keras.applications.InceptionV3,
        "inception_resnet_v2": keras.applications.InceptionResNetV2,
    }
    try:
        return apps[spec.name]
    except KeyError:
        raise UserError(
            f"backbone {spec.name!r} is not a keras.applications model (known: {', '.join(sorted(apps))})"
        ) from None


def keras_home() -> Path:
    """Keras' cache root, read from ``KERAS_HOME`` now (Keras reads it once, at import)."""
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser()
    home = Path("~").expanduser()
    if not os.access(home, os.W_OK):
        home = Path("/tmp")
    return home / ".keras"


def keras_cache_path(spec: BackboneSpec) -> Path:
    """Where Keras keeps (and where to put by hand) the weights file of ``spec``."""
    return keras_home() / "models" / spec.weights.filename


def md5_file(path: Path, chunk_size: int = 1 << 20) -> str:
    """Hex md5 of a file, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            h.update(chunk)
    return h.hexdigest()


def _download_error(spec: BackboneSpec, target: Path, reason: str) -> UserError:
    artifact = spec.weights.artifact or spec.name
    reason = " ".join(str(reason).split())  # one line, whatever the exception said
    if reason.startswith("URL fetch failure on") and " -- " in reason:
        reason = reason.split(" -- ", 1)[1]  # Keras repeats the URL; keep urllib's reason
    return UserError(
        f"cannot download the {spec.name} weights from {spec.weights.url} ({reason}); "
        f"put the file by hand at {target} (md5 {spec.weights.md5}) "
        f"or run `tlreport fetch {artifact}`"
    )


def resolve_weights(spec: BackboneSpec) -> Path:
    """Path of a verified weights file for ``spec``, downloading it if needed."""
    local = spec.extra.get("weights_file")
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise UserError(f"{spec.name}: weights_file {str(path)!r} does not exist")
        return path

    target = keras_cache_path(spec)
    if target.is_file():
        if not spec.weights.md5 or md5_file(target) == spec.weights.md5:
            return target

    import keras

    try:
        got = keras.utils.get_file(
            fname=spec.weights.filename,
            origin=spec.weights.url,
            cache_dir=str(keras_home()),
            cache_subdir="models",
            file_hash=spec.weights.md5 or None,
            hash_algorithm="md5",
        )
    except ValueError as e:
        # raised by get_file when the downloaded file fails the hash check
        raise IntegrityError(
            f"the {spec.name} weights downloaded from {spec.weights.url} do not match md5 "
            f"{spec.weights.md5}; delete {target} and retry, or run `tlreport fetch "
            f"{spec.weights.artifact or spec.name}`"
        ) from e
    except Exception as e:  # get_file wraps every urllib error in a bare Exception
        raise _download_error(spec, target, str(e)) from e
    return Path(got)


def build(spec: BackboneSpec, *, cache_dir: Path, random_weights: bool = False,
          data_root: str | None = None):
    """Build the feature/probability model for ``spec``.

    Returns a Keras model mapping float32 RGB ``(N, S, S, 3)`` in ``[0, 255]``
    to ``{"features": (N, feature_dim), "probs": (N, num_classes)}``.
    ``cache_dir`` is tlreport's cache; Keras weights live in Keras' own cache.
    """
    import keras
    import numpy as np

    constructor = _application(spec)
    weights = None if random_weights else str(resolve_weights(spec))
    size = spec.input_size
    base = constructor(
        include_top=True,
        weights=None,
        input_shape=(size, size, 3),
        classes=spec.num_classes,
        classifier_activation="softmax",
    )
    if weights is not None:
        try:
            base.load_weights(weights)
        except (OSError, ValueError) as e:
            raise UserError(
                f"{spec.name}: cannot load weights from {weights}: {' '.join(str(e).split())}"
            ) from e

    heads = keras.Model(
        base.input,
        [base.get_layer(FEATURE_LAYER).output, base.get_layer(PROBS_LAYER).output],
        name=f"{spec.name}_heads",
    )
    mean = np.asarray(spec.mean, dtype="float32")
    std = np.asarray(spec.std, dtype="float32")
    inputs = keras.Input((size, size, 3), dtype="float32", name="rgb_0_255")
    scaled = keras.layers.Rescaling(scale=1.0 / std, offset=-mean / std, name="scale")(inputs)
    features, probs = heads(scaled)
    return keras.Model(inputs, {"features": features, "probs": probs}, name=spec.name)
