"""Inception v4 (Szegedy et al. 2016) in Keras, loaded from TF-slim's checkpoint.

The architecture follows TF-slim's ``nets/inception_v4.py`` exactly (stem
``Conv2d_1a_3x3`` .. ``Mixed_5a``, 4x Inception-A ``Mixed_5b..e``, Reduction-A
``Mixed_6a``, 7x Inception-B ``Mixed_6b..h``, Reduction-B ``Mixed_7a``, 3x
Inception-C ``Mixed_7b..d``, global average pool, ``Logits``).  Every slim
``conv2d`` is a bias-free convolution, a batch norm without gamma
(``scale=False``, epsilon 0.001) and a ReLU.  The auxiliary head
(``InceptionV4/AuxLogits``) is only used in training and is not built.

Naming scheme
-------------
A Keras layer that owns weights is named after the slim variable scope it
replaces, with ``/`` written as ``.`` (Keras 3 forbids ``/`` in layer names and
slim scopes never contain ``.``), so the mapping is mechanical and reversible::

    Keras layer  InceptionV4.Mixed_5b.Branch_1.Conv2d_0b_3x3            kernel
    slim var     InceptionV4/Mixed_5b/Branch_1/Conv2d_0b_3x3/weights

    Keras layer  InceptionV4.Mixed_5b.Branch_1.Conv2d_0b_3x3.BatchNorm  beta | moving_mean | moving_variance
    slim var     InceptionV4/Mixed_5b/Branch_1/Conv2d_0b_3x3/BatchNorm/beta | moving_mean | moving_variance

    Keras layer  InceptionV4.Logits.Logits                              kernel | bias
    slim var     InceptionV4/Logits/Logits/weights | biases             (1536, 1001) | (1001,)

:func:`load_slim_checkpoint` maps every checkpoint variable: each Keras weight
must be found with the right shape, and each checkpoint variable must be used
or be in the explicit :func:`ignored_variables` set (the auxiliary head and
``global_step``); anything else is a :class:`~tlreport.errors.UserError`.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
from keras import layers

from tlreport.backbones.spec import BackboneSpec
from tlreport.errors import UserError

SCOPE = "InceptionV4"
SEP = "."
CHECKPOINT_NAME = "inception_v4.ckpt"

# Keras variable name -> slim variable leaf, per layer class.
_LEAVES: dict[str, dict[str, str]] = {
    "Conv2D": {"kernel": "weights"},
    "BatchNormalization": {
        "beta": "beta",
        "moving_mean": "moving_mean",
        "moving_variance": "moving_variance",
    },
    "Dense": {"kernel": "weights", "bias": "biases"},
}
_MAX_LISTED = 25


def keras_name(scope: str) -> str:
    """Slim scope ``A/B/C`` -> Keras layer name ``A.B.C``."""
    if SEP in scope:
        raise ValueError(f"slim scope {scope!r} contains {SEP!r}")
    return scope.replace("/", SEP)


def slim_scope(layer_name: str) -> str:
    """Keras layer name ``A.B.C`` -> slim scope ``A/B/C`` (inverse of :func:`keras_name`)."""
    return layer_name.replace(SEP, "/")


# --------------------------------------------------------------------------- architecture


class _Builder:
    """Creates layers named after slim scopes; ``policy`` is the Keras dtype policy."""

    def __init__(self, policy: str | None):
        self.policy = policy

    def conv(self, x, filters: int, kernel: tuple[int, int], scope: str, *,
             strides: int = 1, padding: str = "SAME"):
        """slim.conv2d under inception_arg_scope: conv (no bias) + BN (no gamma) + ReLU."""
        x = layers.Conv2D(filters, kernel, strides=strides, padding=padding.lower(), use_bias=False,
                          name=keras_name(scope), dtype=self.policy)(x)
        x = layers.BatchNormalization(epsilon=1e-3, momentum=0.9997, center=True, scale=False,
                                      name=keras_name(f"{scope}/BatchNorm"), dtype=self.policy)(x)
        return layers.ReLU(name=keras_name(f"{scope}/Relu"), dtype=self.policy)(x)

    def max_pool(self, x, scope: str, *, strides: int = 2, padding: str = "VALID"):
        return layers.MaxPooling2D(3, strides=strides, padding=padding.lower(),
                                   name=keras_name(scope), dtype=self.policy)(x)

    def avg_pool(self, x, scope: str):
        """3x3 stride-1 SAME average pool; like TF, padded cells are not counted."""
        return layers.AveragePooling2D(3, strides=1, padding="same",
                                       name=keras_name(scope), dtype=self.policy)(x)

    def concat(self, xs: list, scope: str):
        return layers.Concatenate(axis=-1, name=keras_name(f"{scope}/concat"), dtype=self.policy)(xs)

    # ---- blocks (slim: block_inception_a, block_reduction_a, ...)

    def inception_a(self, x, s: str):
        b0 = self.conv(x, 96, (1, 1), f"{s}/Branch_0/Conv2d_0a_1x1")
        b1 = self.conv(x, 64, (1, 1), f"{s}/Branch_1/Conv2d_0a_1x1")
        b1 = self.conv(b1, 96, (3, 3), f"{s}/Branch_1/Conv2d_0b_3x3")
        b2 = self.conv(x, 64, (1, 1), f"{s}/Branch_2/Conv2d_0a_1x1")
        b2 = self.conv(b2, 96, (3, 3), f"{s}/Branch_2/Conv2d_0b_3x3")
        b2 = self.conv(b2, 96, (3, 3), f"{s}/Branch_2/Conv2d_0c_3x3")
        b3 = self.avg_pool(x, f"{s}/Branch_3/AvgPool_0a_3x3")
        b3 = self.conv(b3, 96, (1, 1), f"{s}/Branch_3/Conv2d_0b_1x1")
        return self.concat([b0, b1, b2, b3], s)

    def reduction_a(self, x, s: str):
        b0 = self.conv(x, 384, (3, 3), f"{s}/Branch_0/Conv2d_1a_3x3", strides=2, padding="VALID")
        b1 = self.conv(x, 192, (1, 1), f"{s}/Branch_1/Conv2d_0a_1x1")
        b1 = self.conv(b1, 224, (3, 3), f"{s}/Branch_1/Conv2d_0b_3x3")
        b1 = self.conv(b1, 256, (3, 3), f"{s}/Branch_1/Conv2d_1a_3x3", strides=2, padding="VALID")
        b2 = self.max_pool(x, f"{s}/Branch_2/MaxPool_1a_3x3")
        return self.concat([b0, b1, b2], s)

    def inception_b(self, x, s: str):
        b0 = self.conv(x, 384, (1, 1), f"{s}/Branch_0/Conv2d_0a_1x1")
        b1 = self.conv(x, 192, (1, 1), f"{s}/Branch_1/Conv2d_0a_1x1")
        b1 = self.conv(b1, 224, (1, 7), f"{s}/Branch_1/Conv2d_0b_1x7")
        b1 = self.conv(b1, 256, (7, 1), f"{s}/Branch_1/Conv2d_0c_7x1")
        b2 = self.conv(x, 192, (1, 1), f"{s}/Branch_2/Conv2d_0a_1x1")
        b2 = self.conv(b2, 192, (7, 1), f"{s}/Branch_2/Conv2d_0b_7x1")
        b2 = self.conv(b2, 224, (1, 7), f"{s}/Branch_2/Conv2d_0c_1x7")
        b2 = self.conv(b2, 224, (7, 1), f"{s}/Branch_2/Conv2d_0d_7x1")
        b2 = self.conv(b2, 256, (1, 7), f"{s}/Branch_2/Conv2d_0e_1x7")
        b3 = self.avg_pool(x, f"{s}/Branch_3/AvgPool_0a_3x3")
        b3 = self.conv(b3, 128, (1, 1), f"{s}/Branch_3/Conv2d_0b_1x1")
        return self.concat([b0, b1, b2, b3], s)

    def reduction_b(self, x, s: str):
        b0 = self.conv(x, 192, (1, 1), f"{s}/Branch_0/Conv2d_0a_1x1")
        b0 = self.conv(b0, 192, (3, 3), f"{s}/Branch_0/Conv2d_1a_3x3", strides=2, padding="VALID")
        b1 = self.conv(x, 256, (1, 1), f"{s}/Branch_1/Conv2d_0a_1x1")
        b1 = self.conv(b1, 256, (1, 7), f"{s}/Branch_1/Conv2d_0b_1x7")
        b1 = self.conv(b1, 320, (7, 1), f"{s}/Branch_1/Conv2d_0c_7x1")
        b1 = self.conv(b1, 320, (3, 3), f"{s}/Branch_1/Conv2d_1a_3x3", strides=2, padding="VALID")
        b2 = self.max_pool(x, f"{s}/Branch_2/MaxPool_1a_3x3")
        return self.concat([b0, b1, b2], s)

    def inception_c(self, x, s: str):
        b0 = self.conv(x, 256, (1, 1), f"{s}/Branch_0/Conv2d_0a_1x1")
        b1 = self.conv(x, 384, (1, 1), f"{s}/Branch_1/Conv2d_0a_1x1")
        b1 = self.concat([self.conv(b1, 256, (1, 3), f"{s}/Branch_1/Conv2d_0b_1x3"),
                          self.conv(b1, 256, (3, 1), f"{s}/Branch_1/Conv2d_0c_3x1")], f"{s}/Branch_1")
        b2 = self.conv(x, 384, (1, 1), f"{s}/Branch_2/Conv2d_0a_1x1")
        b2 = self.conv(b2, 448, (3, 1), f"{s}/Branch_2/Conv2d_0b_3x1")
        b2 = self.conv(b2, 512, (1, 3), f"{s}/Branch_2/Conv2d_0c_1x3")
        b2 = self.concat([self.conv(b2, 256, (1, 3), f"{s}/Branch_2/Conv2d_0d_1x3"),
                          self.conv(b2, 256, (3, 1), f"{s}/Branch_2/Conv2d_0e_3x1")], f"{s}/Branch_2")
        b3 = self.avg_pool(x, f"{s}/Branch_3/AvgPool_0a_3x3")
        b3 = self.conv(b3, 256, (1, 1), f"{s}/Branch_3/Conv2d_0b_1x1")
        return self.concat([b0, b1, b2, b3], s)

    def base(self, x):
        """slim ``inception_v4_base`` up to ``Mixed_7d``: (N,299,299,3) -> (N,8,8,1536)."""
        s = SCOPE
        x = self.conv(x, 32, (3, 3), f"{s}/Conv2d_1a_3x3", strides=2, padding="VALID")
        x = self.conv(x, 32, (3, 3), f"{s}/Conv2d_2a_3x3", padding="VALID")
        x = self.conv(x, 64, (3, 3), f"{s}/Conv2d_2b_3x3")
        # Mixed_3a
        b0 = self.max_pool(x, f"{s}/Mixed_3a/Branch_0/MaxPool_0a_3x3")
        b1 = self.conv(x, 96, (3, 3), f"{s}/Mixed_3a/Branch_1/Conv2d_0a_3x3", strides=2, padding="VALID")
        x = self.concat([b0, b1], f"{s}/Mixed_3a")
        # Mixed_4a
        b0 = self.conv(x, 64, (1, 1), f"{s}/Mixed_4a/Branch_0/Conv2d_0a_1x1")
        b0 = self.conv(b0, 96, (3, 3), f"{s}/Mixed_4a/Branch_0/Conv2d_1a_3x3", padding="VALID")
        b1 = self.conv(x, 64, (1, 1), f"{s}/Mixed_4a/Branch_1/Conv2d_0a_1x1")
        b1 = self.conv(b1, 64, (1, 7), f"{s}/Mixed_4a/Branch_1/Conv2d_0b_1x7")
        b1 = self.conv(b1, 64, (7, 1), f"{s}/Mixed_4a/Branch_1/Conv2d_0c_7x1")
        b1 = self.conv(b1, 96, (3, 3), f"{s}/Mixed_4a/Branch_1/Conv2d_1a_3x3", padding="VALID")
        x = self.concat([b0, b1], f"{s}/Mixed_4a")
        # Mixed_5a
        b0 = self.conv(x, 192, (3, 3), f"{s}/Mixed_5a/Branch_0/Conv2d_1a_3x3", strides=2, padding="VALID")
        b1 = self.max_pool(x, f"{s}/Mixed_5a/Branch_1/MaxPool_1a_3x3")
        x = self.concat([b0, b1], f"{s}/Mixed_5a")
        for c in "bcde":
            x = self.inception_a(x, f"{s}/Mixed_5{c}")
        x = self.reduction_a(x, f"{s}/Mixed_6a")
        for c in "bcdefgh":
            x = self.inception_b(x, f"{s}/Mixed_6{c}")
        x = self.reduction_b(x, f"{s}/Mixed_7a")
        for c in "bcd":
            x = self.inception_c(x, f"{s}/Mixed_7{c}")
        return x


def build_inception_v4(
    num_classes: int = 1001,
    *,
    input_size: int | None = 299,
    mean: tuple[float, float, float] = (127.5, 127.5, 127.5),
    std: tuple[float, float, float] = (127.5, 127.5, 127.5),
    precision: str = "float32",
) -> keras.Model:
    """The slim Inception v4 as a Keras functional model (random initial weights).

    Input: float32 RGB in [0, 255], ``(N, input_size, input_size, 3)`` (``None``:
    any size >= 75); the model applies ``(x - mean) / std`` itself.  Output:
    ``{"features": (N, 1536) global average pool, "probs": (N, num_classes)}``.
    ``precision="bfloat16"`` computes in bfloat16 (mixed policy, float32
    variables); outputs are float32 either way.
    """
    if precision not in ("float32", "bfloat16"):
        raise ValueError(f"unsupported precision {precision!r}")
    policy = "mixed_bfloat16" if precision == "bfloat16" else "float32"
    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="images")
    mean_a = np.asarray(mean, np.float64)
    std_a = np.asarray(std, np.float64)
    x = layers.Rescaling(scale=tuple(float(v) for v in 1.0 / std_a),
                         offset=tuple(float(v) for v in -mean_a / std_a),
                         name="preprocess", dtype=policy)(inputs)
    x = _Builder(policy).base(x)
    features = layers.GlobalAveragePooling2D(name=keras_name(f"{SCOPE}/Logits/AvgPool_1a"),
                                             dtype="float32")(x)
    logits = layers.Dense(num_classes, name=keras_name(f"{SCOPE}/Logits/Logits"), dtype=policy)(features)
    probs = layers.Activation("softmax", name=keras_name(f"{SCOPE}/Predictions"), dtype="float32")(logits)
    return keras.Model(inputs, {"features": features, "probs": probs}, name="inception_v4")


# --------------------------------------------------------------------------- checkpoint


def ignored_variables(num_classes: int = 1001) -> dict[str, tuple[int, ...]]:
    """Checkpoint variables deliberately not loaded: the auxiliary head and ``global_step``.

    Shapes are those slim creates at 299x299 (Mixed_6h 17x17x1024 -> 5x5 avg
    pool -> 1x1 conv 128 -> 5x5 VALID conv 768 -> fully connected).
    """
    aux = f"{SCOPE}/AuxLogits"
    out: dict[str, tuple[int, ...]] = {"global_step": ()}
    for scope, shape in ((f"{aux}/Conv2d_1b_1x1", (1, 1, 1024, 128)), (f"{aux}/Conv2d_2a", (5, 5, 128, 768))):
        out[f"{scope}/weights"] = shape
        for leaf in ("beta", "moving_mean", "moving_variance"):
            out[f"{scope}/BatchNorm/{leaf}"] = (shape[-1],)
    out[f"{aux}/Aux_logits/weights"] = (768, num_classes)
    out[f"{aux}/Aux_logits/biases"] = (num_classes,)
    return out


def slim_variables(model: keras.Model) -> dict[str, keras.Variable]:
    """Slim checkpoint name -> Keras variable, for every weight of ``model``."""
    out: dict[str, keras.Variable] = {}
    for layer in model.layers:
        if not layer.weights:
            continue
        leaves = _LEAVES.get(type(layer).__name__)
        for var in layer.weights:
            if leaves is None or var.name not in leaves:
                raise ValueError(f"no slim name for weight {var.path!r} of {type(layer).__name__}")
            out[f"{slim_scope(layer.name)}/{leaves[var.name]}"] = var
    return out


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load_slim_checkpoint` did."""

    assigned: tuple[str, ...]
    ignored: tuple[str, ...]


def _listed(title: str, items: list[str]) -> list[str]:
    lines = [f"  {title}: {item}" for item in items[:_MAX_LISTED]]
    if len(items) > _MAX_LISTED:
        lines.append(f"  ... and {len(items) - _MAX_LISTED} more {title}")
    return lines


def load_slim_checkpoint(model: keras.Model, ckpt_prefix: str | os.PathLike) -> LoadReport:
    """Assign every weight of ``model`` from the slim checkpoint at ``ckpt_prefix``.

    Raises :class:`UserError` listing every problem when a Keras weight has no
    checkpoint variable, a shape differs (ignored variables' shapes are checked
    too), or a checkpoint variable is neither used nor in
    :func:`ignored_variables`.  Nothing is assigned in that case.
    """
    import tensorflow as tf

    prefix = str(ckpt_prefix)
    try:
        reader = tf.train.load_checkpoint(prefix)
        shapes = {k: tuple(v) for k, v in reader.get_variable_to_shape_map().items()}
    except (tf.errors.OpError, ValueError) as e:
        raise UserError(f"cannot read TF checkpoint {prefix}: {e}") from None

    wanted = slim_variables(model)
    logits_bias = wanted.get(f"{SCOPE}/Logits/Logits/biases")
    ignorable = ignored_variables(int(logits_bias.shape[0]) if logits_bias is not None else 1001)
    missing = sorted(f"{n} {tuple(v.shape)}" for n, v in wanted.items() if n not in shapes)
    expected = {n: tuple(v.shape) for n, v in wanted.items()} | ignorable
    mismatched = sorted(
        f"{n}: checkpoint {shapes[n]} vs expected {s}"
        for n, s in expected.items() if n in shapes and shapes[n] != s
    )
    unused = sorted(f"{n} {s}" for n, s in shapes.items() if n not in expected)
    if missing or mismatched or unused:
        lines = [f"{prefix}: checkpoint does not match Inception v4 "
                 f"({len(missing)} missing, {len(mismatched)} shape mismatch(es), {len(unused)} unused)"]
        lines += _listed("missing", missing) + _listed("shape mismatch", mismatched) + _listed("unused", unused)
        raise UserError("\n".join(lines))

    for name, var in wanted.items():
        var.assign(reader.get_tensor(name).astype(np.float32, copy=False))
    ignored = tuple(sorted(n for n in shapes if n in ignorable))
    return LoadReport(assigned=tuple(sorted(wanted)), ignored=ignored)


def find_checkpoint(path: str | os.PathLike) -> str:
    """The prefix of ``inception_v4.ckpt`` (V1 file or V2 ``.index``) at or under ``path``."""
    p = Path(path)
    if p.is_file():
        if p.name == CHECKPOINT_NAME:
            return str(p)
        if p.name == CHECKPOINT_NAME + ".index":
            return str(p.with_suffix(""))
    if p.is_dir():
        for cand in sorted(p.rglob(CHECKPOINT_NAME + "*")):
            if cand.name == CHECKPOINT_NAME and cand.is_file():
                return str(cand)
            if cand.name == CHECKPOINT_NAME + ".index":
                return str(cand.with_suffix(""))
    raise UserError(f"no {CHECKPOINT_NAME} found at {p}; run `tlreport fetch inception_v4`")


def checkpoint_files(prefix: str) -> list[Path]:
    """The files making up the checkpoint at ``prefix`` (V1: one file; V2: index + data)."""
    p = Path(prefix)
    if p.is_file():
        return [p]
    files = sorted(p.parent.glob(p.name + ".index")) + sorted(p.parent.glob(p.name + ".data-*"))
    if not files:
        raise UserError(f"no checkpoint files at {prefix}")
    return files


def checkpoint_digest(prefix: str) -> str:
    """sha256 over the checkpoint's files (names and contents)."""
    h = hashlib.sha256()
    for f in checkpoint_files(prefix):
        h.update(f.name.encode() + b"\0")
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


def _save_atomic(model: keras.Model, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name.removesuffix('.weights.h5')}.tmp{os.getpid()}.weights.h5")
    try:
        model.save_weights(str(tmp))
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def load_weights(model: keras.Model, ckpt_prefix: str, cache_dir: Path | None) -> Path | None:
    """Load ``ckpt_prefix`` into ``model``, through a converted ``.weights.h5`` cache when possible.

    Returns the cache file used or written (``None`` without ``cache_dir``).
    """
    if cache_dir is None:
        load_slim_checkpoint(model, ckpt_prefix)
        return None
    cached = Path(cache_dir) / "weights" / f"inception_v4-{checkpoint_digest(ckpt_prefix)[:16]}.weights.h5"
    if cached.is_file():
        try:
            model.load_weights(str(cached))
            return cached
        except Exception as e:  # a damaged cache is rebuilt from the checkpoint
            warnings.warn(f"ignoring unreadable weights cache {cached}: {e}", stacklevel=2)
    load_slim_checkpoint(model, ckpt_prefix)
    try:
        _save_atomic(model, cached)
    except OSError as e:
        warnings.warn(f"could not cache converted weights at {cached}: {e}", stacklevel=2)
        return None
    return cached


def build(spec: BackboneSpec, *, cache_dir: Path, random_weights: bool = False,
          data_root: str | None = None) -> keras.Model:
    """Build the model for the ``inception_v4`` spec (the :func:`tlreport.backbones.load_model` hook)."""
    model = build_inception_v4(spec.num_classes, input_size=spec.input_size,
                               mean=spec.mean, std=spec.std, precision=spec.precision)
    if random_weights:
        return model
    from tlreport.artifacts.install import ensure
    from tlreport.artifacts.registry import data_root as default_data_root

    artifact = spec.weights.artifact or spec.name
    location = ensure(artifact, default_data_root(data_root), allow_download=True)
    load_weights(model, find_checkpoint(location), Path(cache_dir))
    return model


__all__ = [
    "SCOPE", "SEP", "LoadReport", "build", "build_inception_v4", "checkpoint_digest", "find_checkpoint",
    "ignored_variables", "keras_name", "load_slim_checkpoint", "load_weights", "slim_scope", "slim_variables",
]
