"""The post's numbered references: cited by key while the post renders, listed at its end.

The bibliography is ``data/references.toml``; a post numbers the entries in the order it first cites
them, so the list holds exactly what the post cites.

>>> refs = Citations({"a": {"text": "A."}, "b": {"text": "B.", "url": "https://b.example"}})
>>> refs.cite("b"), refs.cite("a"), refs.cite("b")
('[\\\\[1\\\\]](#ref-1)', '[\\\\[2\\\\]](#ref-2)', '[\\\\[1\\\\]](#ref-1)')
>>> [(e["number"], e["text"]) for e in refs.listed()]
[(1, 'B.'), (2, 'A.')]
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

#: which entries a backbone's description cites: its architecture and the data its weights learnt from
BACKBONE_REFERENCES = {
    "efficientnet_lite": ("efficientnet", "efficientnet_lite", "imagenet"),
    "keras_apps:inception_v3": ("inception_v3", "imagenet"),
    "inception_2015": ("inception_v3", "imagenet"),
    "inception_v4": ("inception_v4", "imagenet"),
    "keras_apps:inception_resnet_v2": ("inception_v4", "imagenet"),
}


def bibliography(path: Path | None = None) -> dict[str, dict[str, Any]]:
    from tlreport.util.paths import shipped_path

    path = path or shipped_path("data", "references.toml")
    with open(path, "rb") as fh:
        return tomllib.load(fh)


def backbone_reference_keys(spec) -> tuple[str, ...]:
    """The references a backbone's paragraph cites, from its spec's family (and name)."""
    return (BACKBONE_REFERENCES.get(f"{spec.family}:{spec.name}")
            or BACKBONE_REFERENCES.get(spec.family) or BACKBONE_REFERENCES.get(spec.name) or ())


class Citations:
    """Numbers references in the order a render first cites them; one object per rendered page."""

    def __init__(self, entries: dict[str, dict[str, Any]] | None = None):
        self.entries = bibliography() if entries is None else entries
        self.order: list[str] = []

    def number(self, key: str) -> int:
        if key not in self.entries:
            raise KeyError(f"no reference {key!r} in references.toml")
        if key not in self.order:
            self.order.append(key)
        return self.order.index(key) + 1

    def cite(self, *keys: str) -> str:
        """Markdown links ``[\\[1\\]](#ref-1)`` to each key's entry in the References section."""
        return "".join(f"[\\[{n}\\]](#ref-{n})" for n in (self.number(k) for k in keys if k))

    def cite_html(self, *keys: str) -> str:
        """The same links as HTML, for text inside an HTML block (which Markdown leaves alone)."""
        return "".join(f'<a href="#ref-{n}">[{n}]</a>' for n in (self.number(k) for k in keys if k))

    def listed(self) -> list[dict[str, Any]]:
        return [{"number": i + 1, "key": k, "text": self.entries[k]["text"], "url": self.entries[k].get("url")}
                for i, k in enumerate(self.order)]


def dataset_reference(text: str) -> str | None:
    """The references.toml key of a Caltech dataset named in ``text`` (its path, artifact or credit line).

    >>> dataset_reference("artifact:caltech256"), dataset_reference("x Caltech-101: Li Fei-Fei"), dataset_reference("flowers")
    ('caltech256', 'caltech101', None)
    """
    t = text.lower().replace("-", "")
    if "caltech256" in t or "256_objectcategories" in t:
        return "caltech256"
    if "caltech101" in t or "101_objectcategories" in t:
        return "caltech101"
    return None
