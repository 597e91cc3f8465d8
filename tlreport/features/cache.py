"""The content-addressed feature store: (backbone key, image sha256) -> vector, in checksummed shards."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from tlreport.util.files import atomic_write_bytes, disk_error

_FORMAT = 1
_META = "backbone.json"


def backbone_key(spec: Any, *, weights_sha256: str | None = None) -> str:
    """sha256(spec fingerprint + weights identity + precision): the cache namespace of a backbone.

    The fingerprint covers the engine (``spec.engine``) unless it is TensorFlow's.

    ``weights_sha256`` is :func:`tlreport.backbones.identity.weights_identity`;
    left out, the spec's published hash is used, and a spec without one (an
    unpinned artifact) is an error rather than a key shared by every checkpoint.
    """
    from tlreport.backbones.identity import published_hash

    w = weights_sha256 or published_hash(spec)
    if not w:
        raise ValueError(f"{spec.name}: no published weights hash; pass the recorded one as weights_sha256")
    blob = f"{spec.fingerprint()}\n{w}\n{spec.precision}".encode()
    return hashlib.sha256(blob).hexdigest()


def feature_dtype(spec: Any) -> np.dtype:
    """Storage dtype of a spec's features (float16 when ``extra['feature_dtype']`` says so)."""
    return np.dtype(np.float16 if spec.extra.get("feature_dtype") == "float16" else np.float32)


class StoreInfo(NamedTuple):
    key: str
    images: int
    bytes: int


class FeatureStore:
    """A folder of feature shards per backbone key (see the module docstring)."""

    def __init__(self, root: str | os.PathLike, *, report: Callable[[str], None] | None = None,
                 read_only: bool = False):
        self.root = Path(root)
        self.read_only = read_only      # a plan or `cache info`: bad shards are reported, never deleted
        self.problems: list[str] = []
        self._report = report

    def _warn(self, msg: str) -> None:
        self.problems.append(msg)
        if self._report is not None:
            self._report(msg)
        else:
            print(f"tlreport: warning: {msg}", file=sys.stderr)

    def key_dir(self, key: str) -> Path:
        return self.root / key

    def _indexes(self, key: str) -> dict[str, dict[str, Any]]:
        """shard name -> index dict, for every committed shard of ``key``."""
        d = self.key_dir(key)
        out: dict[str, dict[str, Any]] = {}
        if not d.is_dir():
            return out
        for p in sorted(d.glob("*.json")):
            if p.name == _META or p.name.startswith("."):
                continue
            try:
                idx = json.loads(p.read_text(encoding="utf-8"))
                if (idx.get("format") != _FORMAT or not isinstance(idx.get("shas"), list)
                        or len(idx["shas"]) != idx["rows"] or not isinstance(idx.get("sha256"), str)
                        or not isinstance(idx.get("dim"), int)):
                    raise ValueError("bad index")      # every field a lookup reads, there and well-typed
            except (OSError, ValueError, KeyError, TypeError, AttributeError):
                self._warn(f"feature shard index {p} is unreadable; its rows will be recomputed")
                self._drop(p.with_suffix(""))
                continue
            out[p.stem] = idx
        return out

    def _drop(self, stem: Path) -> None:
        if self.read_only:
            return
        for suffix in (".json", ".npy"):
            try:
                stem.with_suffix(suffix).unlink(missing_ok=True)
            except OSError as e:           # a folder the user made unwritable: one line, not a traceback
                raise disk_error(stem.with_suffix(suffix), e) from None

    def _load_shard(self, key: str, name: str, idx: dict[str, Any]) -> np.ndarray | None:
        """The verified rows of a shard, or None (reported, deleted) when it is corrupt."""
        path = self.key_dir(key) / f"{name}.npy"
        problem = None
        try:
            data = path.read_bytes()
        except OSError as e:
            data, problem = b"", f"unreadable ({e.strerror})"
        if problem is None and hashlib.sha256(data).hexdigest() != idx["sha256"]:
            problem = "checksum mismatch (corrupt or truncated)"
        arr = None
        if problem is None:
            try:
                arr = np.load(io.BytesIO(data), allow_pickle=False)
                if arr.shape != (idx["rows"], idx["dim"]):
                    problem, arr = f"shape {arr.shape} != ({idx['rows']}, {idx['dim']})", None
            except (ValueError, OSError) as e:
                problem = f"unloadable ({e})"
        if problem is not None:
            self._warn(f"feature shard {path} is bad: {problem}; its {idx['rows']} rows will be recomputed")
            self._drop(path.with_suffix(""))
            return None
        return arr

    def lookup(self, key: str, shas: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (found_mask (N,) bool, rows (N, D) float32; rows not found are NaN).

        D is the stored feature width (0 when ``key`` has no shards).  Every
        shard read is checksum-verified; a bad one is reported, deleted and
        its rows count as not found.
        """
        n = len(shas)
        indexes = self._indexes(key)
        want = set(shas)
        loaded: dict[str, np.ndarray] = {}
        while True:
            where: dict[str, tuple[str, int]] = {}
            for name, idx in indexes.items():
                for row, sha in enumerate(idx["shas"]):
                    if sha in want and sha not in where:
                        where[sha] = (name, row)
            need = {name for name, _ in where.values()} - set(loaded)
            bad = False
            for name in sorted(need):
                arr = self._load_shard(key, name, indexes[name])
                if arr is None:
                    del indexes[name]
                    bad = True
                else:
                    loaded[name] = arr
            if not bad:
                break
        dim = next((int(i["dim"]) for i in indexes.values()), 0)
        found = np.zeros(n, dtype=bool)
        rows = np.full((n, dim), np.nan, dtype=np.float32)
        for i, sha in enumerate(shas):
            hit = where.get(sha)
            if hit is not None:
                found[i] = True
                rows[i] = loaded[hit[0]][hit[1]]
        return found, rows

    def add_shard(self, key: str, shas: Sequence[str], array: np.ndarray) -> str:
        """Write one shard atomically (npy first, then its JSON index); returns its name."""
        array = np.ascontiguousarray(array)
        if array.ndim != 2 or array.shape[0] != len(shas):
            raise ValueError(f"shard of shape {array.shape} for {len(shas)} images")
        if array.dtype not in (np.float32, np.float16):
            raise ValueError(f"feature dtype must be float32 or float16, not {array.dtype}")
        d = self.key_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        name = f"{time.time_ns():016x}-{os.getpid()}-{secrets.token_hex(3)}"
        buf = io.BytesIO()
        np.save(buf, array, allow_pickle=False)
        data = buf.getvalue()
        atomic_write_bytes(d / f"{name}.npy", data)
        idx = {"format": _FORMAT, "rows": int(array.shape[0]), "dim": int(array.shape[1]),
               "dtype": str(array.dtype), "sha256": hashlib.sha256(data).hexdigest(), "shas": list(shas)}
        atomic_write_bytes(d / f"{name}.json", json.dumps(idx, separators=(",", ":")).encode())
        return name

    def write_meta(self, key: str, meta: dict[str, Any]) -> None:
        """Record what a backbone key stands for (name, fingerprint, precision...)."""
        d = self.key_dir(key)
        d.mkdir(parents=True, exist_ok=True)
        if not (d / _META).exists():
            atomic_write_bytes(d / _META, json.dumps(meta, indent=1, sort_keys=True).encode())

    def meta(self, key: str) -> dict[str, Any]:
        try:
            return json.loads((self.key_dir(key) / _META).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def info(self) -> list[StoreInfo]:
        """(backbone key, distinct images, bytes on disk) for every key in the store."""
        out = []
        if not self.root.is_dir():
            return out
        for d in sorted(p for p in self.root.iterdir() if p.is_dir()):
            shas: set[str] = set()
            for idx in self._indexes(d.name).values():
                shas.update(idx["shas"])
            size = sum(p.stat().st_size for p in d.iterdir() if p.is_file())
            out.append(StoreInfo(d.name, len(shas), size))
        return out

    def prune(self, keep_keys: Sequence[str]) -> int:
        """Delete every backbone key not in ``keep_keys`` and stray temp files; returns bytes freed."""
        freed = 0
        if not self.root.is_dir():
            return 0
        keep = set(keep_keys)
        for d in self.root.iterdir():
            if not d.is_dir():
                continue
            for p in list(d.iterdir()):
                orphan = p.name.startswith(".") and p.name.endswith(".tmp")
                if d.name not in keep or orphan or (p.suffix == ".npy" and not p.with_suffix(".json").exists()):
                    freed += p.stat().st_size
                    p.unlink()
            if d.name not in keep:
                d.rmdir()
        return freed
