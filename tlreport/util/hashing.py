"""Content hashes: of bytes, of files, and of JSON-able objects (stage keys)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _plain(obj: Any) -> Any:
    """What JSON cannot say directly: a dataclass (a config section) as its fields, anything else as text."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def stable_json(obj: Any) -> str:
    """JSON with sorted keys and fixed separators: the same object, the same bytes.

    Lone surrogates (a file or folder name's bytes that are not UTF-8, as ``os.fsdecode`` gives them)
    are written as ``\\udcXX`` escapes, so the text encodes as UTF-8 and loads back as the same name.
    """
    text = json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, default=_plain) + "\n"
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


# outside JSON strings there is only ASCII, so every surrogate in the text is inside one
_SURROGATE = re.compile("[\ud800-\udfff]")


def hash_obj(obj: Any) -> str:
    """sha256 of an object's stable JSON: a config section hashes like the dict it was validated from.

    >>> hash_obj({"a": [1, 2]}) == hash_obj({"a": (1, 2)})
    True
    """
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=_plain).encode())
