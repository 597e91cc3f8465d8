"""Where the packaged ``templates/``, ``data/`` and ``site/`` scaffold live.

In a source checkout (or an editable install) they are the top-level folders
next to the package; in a wheel they are shipped as ``tlreport/_shipped/*``.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent.parent   # the tlreport package


def shipped_path(*parts: str) -> Path:
    """Path to a shipped resource such as ``shipped_path("data", "imagenet_classes.tsv")``."""
    inside = _PKG / "_shipped" / Path(*parts)
    if inside.exists():
        return inside
    return _PKG.parent / Path(*parts)
