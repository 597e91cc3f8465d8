"""What a reader sees for a backbone or head: display names for prose, tables and legends.

Registry names (``efficientnet_lite0``, ``softmax_sgd``) stay in code, configs and
``results.csv``; the post shows these instead.

>>> backbone_title("efficientnet_lite1")
'EfficientNet-Lite1'
>>> backbone_title("efficientnet_lite0+efficientnet_lite1+efficientnet_lite2")
'Lite0 + Lite1 + Lite2'
>>> backbone_title("inception_v3+efficientnet_lite0")
'Inception v3 + EfficientNet-Lite0'
>>> row_title("efficientnet_lite2", "logreg+flip")
'EfficientNet-Lite2 with logistic regression + flip'
"""

from __future__ import annotations

BACKBONE_TITLES = {
    "efficientnet_lite0": "EfficientNet-Lite0",
    "efficientnet_lite1": "EfficientNet-Lite1",
    "efficientnet_lite2": "EfficientNet-Lite2",
    "inception_v3": "Inception v3",
    "inception_v4": "Inception v4",
    "inception_resnet_v2": "Inception-ResNet v2",
    "inception_2015": "Inception v3 (2015 graph)",
    "tiny_random": "tiny random network",
}

# in a concatenation of one family, the family name is said once (in the prose around it)
_SHORT = {"efficientnet_lite0": "Lite0", "efficientnet_lite1": "Lite1", "efficientnet_lite2": "Lite2"}

HEAD_TITLES = {
    "softmax_sgd": "softmax (SGD)",
    "logreg": "logistic regression",
}


def backbone_title(name: str) -> str:
    """``EfficientNet-Lite0``; a concatenation ``a+b+c`` as ``Lite0 + Lite1 + Lite2``."""
    parts = [p for p in str(name).split("+") if p]
    if len(parts) > 1 and all(p in _SHORT for p in parts):
        return " + ".join(_SHORT[p] for p in parts)
    return " + ".join(BACKBONE_TITLES.get(p, p) for p in parts)


def head_title(name: str) -> str:
    """``softmax (SGD)``, ``logistic regression``; a ``+flip`` variant keeps its suffix in words."""
    base, flip, _ = str(name).partition("+flip")
    return HEAD_TITLES.get(base, base) + (" + flip" if flip else "")


def row_title(backbone: str, head: str) -> str:
    """One results row as a reader sees it: ``EfficientNet-Lite2 with logistic regression``."""
    return f"{backbone_title(backbone)} with {head_title(head)}"
