"""Paths: where the packaged ``templates/``, ``data/`` and ``site/`` scaffold live, and whether one
folder lies inside another.

In a source checkout (or an editable install) the scaffold is the top-level folders
next to the package; in a wheel it is shipped as ``tlreport/_shipped/*``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent   # the tlreport package


def shipped_path(*parts: str) -> Path:
    """Path to a shipped resource such as ``shipped_path("data", "imagenet_classes.tsv")``."""
    inside = _PKG / "_shipped" / Path(*parts)
    if inside.exists():
        return inside
    return _PKG.parent / Path(*parts)


def is_within(inner: str, outer: str) -> bool:
    """``inner`` is ``outer`` or lies below it; both resolved (``os.path.realpath``), compared as text.

    >>> [is_within(p, "/data/cats") for p in ("/data/cats/sub", "/data/cats", "/data/catsup")]
    [True, True, False]
    """
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)
