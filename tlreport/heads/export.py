"""The exported classifier: backbone + new head in one .keras file, and inference with it."""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tlreport.errors import UserError
from tlreport.heads.softmax import TrainedHead
from tlreport.util.text import display_name, first_line

# --------------------------------------------------------------------------- export

_HEAD_LAYER_NAME = "new_softmax"
_LABELED_DENSE: Any = None


def _labeled_dense_class() -> Any:
    """The registered ``LabeledDense`` layer class (created on first use, TF imported lazily)."""
    global _LABELED_DENSE
    if _LABELED_DENSE is not None:
        return _LABELED_DENSE
    import keras

    @keras.saving.register_keras_serializable(package="tlreport", name="LabeledDense")
    class LabeledDense(keras.layers.Dense):
        """A ``Dense`` softmax classifier that carries its class names in its config."""

        def __init__(self, units: int, class_names: Sequence[str] = (), backbone: str = "", **kwargs: Any):
            kwargs.setdefault("activation", "softmax")
            super().__init__(units, **kwargs)
            self.class_names = [str(c) for c in class_names]
            self.backbone = str(backbone)
            if self.class_names and len(self.class_names) != units:
                raise ValueError(f"{len(self.class_names)} class names for {units} units")

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "class_names": list(self.class_names), "backbone": self.backbone}

    _LABELED_DENSE = LabeledDense
    return LabeledDense


def _features_output(backbone: Any) -> Any:
    struct = getattr(backbone, "output", None)
    if isinstance(struct, dict) and "features" in struct:   # the registry's {"features", "probs"} models
        return struct["features"]
    outs = list(backbone.outputs)
    if len(outs) == 1:
        return outs[0]
    names = list(getattr(backbone, "output_names", []) or [])
    for i, t in enumerate(outs):
        label = names[i] if i < len(names) else getattr(t, "name", "")
        if label == "features" or "features" in str(label):
            return t
    raise ValueError(f"backbone has {len(outs)} outputs and none is named 'features': {names}")


def export_classifier(
    backbone_model: Any, head: TrainedHead, class_names: Sequence[str], path: str | os.PathLike, *,
    backbone: str = "",
) -> Path:
    """Write ONE ``.keras`` file: the backbone followed by the new softmax layer.

    ``backbone_model`` may also be a list of backbones (a head trained on their
    concatenated features, ``backbone="a+b+c"``): the classifier then takes one
    image input per backbone, each at that backbone's size, and concatenates
    their features in that order before the head.

    The head is a ``Dense(num_classes, softmax)`` subclass, ``LabeledDense``
    (registered as ``tlreport>LabeledDense``), whose config also stores the
    class names and the backbone name(s), so :func:`load_classifier` and
    :func:`classify_files` need no side file.  The standardisation is folded
    into its weights.  The file is written atomically.  Each backbone must
    output (N, D) features (one output, or one named ``features``).
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"the classifier file must end in .keras. Received: path={str(path)!r}")
    if len(class_names) != head.num_classes:
        raise ValueError(f"{len(class_names)} class names for a head with {head.num_classes} classes")
    nets = list(backbone_model) if isinstance(backbone_model, (list, tuple)) else [backbone_model]
    if len(nets) == 1:
        inputs, feats = list(nets[0].inputs), _features_output(nets[0])
    else:
        # each backbone as a features-only sub-model of its own name, fed by an input of its own
        inputs, parts = [], []
        for i, net in enumerate(nets):
            sub = keras.Model(net.inputs, _features_output(net), name=f"features_{i}")
            inp = keras.Input(shape=tuple(net.inputs[0].shape[1:]), name=f"image_{i}")
            inputs.append(inp)
            parts.append(sub(inp))
        feats = keras.layers.Concatenate(name="concatenated_features")(parts)
    if len(feats.shape) != 2 or feats.shape[-1] != head.W.shape[0]:
        raise ValueError(f"backbone features have shape {feats.shape}; the head expects (None, {head.W.shape[0]})")
    layer = _labeled_dense_class()(head.num_classes, class_names=class_names, backbone=backbone,
                                   name=_HEAD_LAYER_NAME)
    probs = layer(feats)
    model = keras.Model(inputs, probs, name="tlreport_classifier")
    layer.set_weights(list(head.folded()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_classifier(path: str | os.PathLike, *, custom_objects: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """Load a file written by :func:`export_classifier`: ``(model, class_names)``."""
    import keras

    path = Path(path)
    shown = display_name(str(path))                 # the name in every message below
    if not path.is_file():
        raise UserError(f"no classifier file at {shown}")
    objs = {"LabeledDense": _labeled_dense_class(), **(custom_objects or {})}
    try:
        model = keras.saving.load_model(path, custom_objects=objs, compile=False)
    except (ValueError, OSError, KeyError, TypeError, AttributeError, zipfile.BadZipFile) as e:
        # not a .keras file, or a damaged or hand-edited one (Keras raises all of these)
        raise UserError(f"{shown} is not a readable Keras classifier ({type(e).__name__}: "
                        f"{first_line(e, 120) or 'unreadable'})") from None
    for layer in model.layers:
        names = getattr(layer, "class_names", None)
        if layer.name == _HEAD_LAYER_NAME and names:
            if not (isinstance(names, list | tuple) and all(isinstance(n, str) for n in names)
                    and len(names) == getattr(layer, "units", len(names))):
                raise UserError(f"{shown} is damaged: its class names do not match its "
                                f"{getattr(layer, 'units', '?')} outputs")
            return model, list(names)
    raise UserError(f"{shown} is not a tlreport classifier (no '{_HEAD_LAYER_NAME}' layer with class names)")


def classify_with(
    model: Any, class_names: Sequence[str], images: np.ndarray | Sequence[np.ndarray], top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """Top-``k`` ``(class name, probability)`` per image, most likely first.

    ``images`` is a uint8 batch ``(N, H, W, 3)`` already at the model's input
    size (a list of such batches, one per input, for a classifier on several
    backbones); it is handed to the model as float32 in [0, 255] (the backbones
    normalise inside the model).
    """
    batches = [np.asarray(b) for b in images] if isinstance(images, (list, tuple)) else [np.asarray(images)]
    batches = [b[None] if b.ndim == 3 else b for b in batches]
    if len(batches) != len(model.inputs):
        raise UserError(f"the model takes {len(model.inputs)} image input(s); got {len(batches)}")
    for b, inp in zip(batches, model.inputs, strict=True):
        want = tuple(inp.shape[1:3])
        if None not in want and tuple(b.shape[1:3]) != want:
            raise UserError(f"images are {b.shape[1]}x{b.shape[2]}; the model expects {want[0]}x{want[1]}")
    feed = [b.astype(np.float32) for b in batches]
    probs = np.asarray(model.predict(feed[0] if len(feed) == 1 else feed, verbose=0), dtype=np.float64)
    k = max(1, min(int(top_k), len(class_names)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(str(class_names[j]), float(p[j])) for j in row] for p, row in zip(probs, order, strict=True)]


def classify_files(path: str | os.PathLike, images: Sequence[str | os.PathLike], *, top_k: int = 5
                   ) -> list[tuple[Path, list[tuple[str, float]]]]:
    """Classify image files with an exported classifier, preprocessed as its backbone expects.

    The backbone's name is stored in the file's head layer; its registered spec
    gives the resize/crop, so a photo of any size can be passed.  A classifier
    on several backbones (``a+b+c``) gets each photo prepared once per backbone.
    """
    from tlreport.backbones import get_spec
    from tlreport.datasets.images import BadImage, check_image_path, load_prepared

    model, names = load_classifier(path)
    head = next(layer for layer in model.layers if layer.name == _HEAD_LAYER_NAME)
    if not getattr(head, "backbone", ""):
        raise UserError(f"{display_name(str(path))} does not record its backbone; export it again with tlreport build")
    specs = [get_spec(b) for b in head.backbone.split("+")]
    batches: list[list[np.ndarray]] = [[] for _ in specs]
    for p in images:
        p = Path(p)
        check_image_path(p)
        try:
            for batch, spec in zip(batches, specs, strict=True):
                batch.append(load_prepared(p, spec))
        except BadImage as e:
            raise UserError(f"cannot decode image {display_name(str(p))}: {e}") from None
    tops = classify_with(model, names, [np.stack(b) for b in batches], top_k=top_k)
    return [(Path(p), t) for p, t in zip(images, tops, strict=True)]
