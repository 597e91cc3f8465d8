"""Label sets: output index -> human-readable class name, bundled for offline use.

Keras' ``decode_predictions`` downloads its label file at run time, so it fails
offline.  ``data/imagenet_classes.tsv`` is the standard 1,000 ImageNet-1k
classes (``wnid<TAB>name``) in output order.
"""

from __future__ import annotations

from functools import cache

from tlreport.errors import UserError
from tlreport.util.paths import shipped_path


@cache
def imagenet1k() -> tuple[str, ...]:
    path = shipped_path("data", "imagenet_classes.tsv")
    names = []
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].startswith("n"):
            raise UserError(f"{path}:{i}: expected 'wnid<TAB>name'")
        names.append(parts[1].strip())
    if len(names) != 1000:
        raise UserError(f"{path}: expected 1000 classes, found {len(names)}")
    return tuple(names)


def label_names(label_set: str) -> tuple[str, ...]:
    """Names for a backbone's classifier outputs (``spec.label_set``)."""
    if label_set == "imagenet1k":
        return imagenet1k()
    if label_set == "imagenet1001":            # TF-slim: background at index 0
        return ("background",) + imagenet1k()
    raise UserError(f"label set {label_set!r} is resolved by its backbone, not by tlreport.backbones.labels")


def top_k(probs, names: tuple[str, ...], k: int) -> list[tuple[str, float]]:
    import numpy as np

    p = np.asarray(probs, dtype=np.float64).ravel()
    idx = np.argsort(-p, kind="stable")[:k]
    return [(names[i] if i < len(names) else f"class {i}", float(p[i])) for i in idx]
