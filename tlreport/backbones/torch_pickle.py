"""Read a PyTorch ``state_dict`` file into numpy arrays without importing torch.

Both on-disk formats written by ``torch.save`` are understood:

* the legacy stream (``_use_new_zipfile_serialization=False``, torch < 1.6):
  pickled magic number, protocol version and sys info, then the pickled object
  whose storages are persistent ids, then the pickled list of storage keys,
  then each storage's raw bytes prefixed by its int64 element count;
* the zip archive (torch >= 1.6): ``<root>/data.pkl`` plus one
  ``<root>/data/<key>`` member per storage.

Pickle can run arbitrary code, so the unpickler here is restricted: its
``find_class`` returns only what a state dict needs (``OrderedDict``, the
tensor rebuild functions and the storage type names) and refuses everything
else with a :class:`~tlreport.errors.UserError` before any of it is imported.
Tensors are rebuilt with explicit bounds checks on their storage views.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from tlreport.errors import UserError

__all__ = ["load_legacy_state_dict", "load_state_dict"]

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

# torch storage class name -> numpy dtype it holds (bfloat16 is widened to float32).
_STORAGE_DTYPES: dict[str, str] = {
    "DoubleStorage": "f8",
    "FloatStorage": "f4",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
}


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.<X>Storage``; not callable, so a pickle cannot invoke it."""

    name: str

    @property
    def itemsize(self) -> int:
        code = _STORAGE_DTYPES[self.name]
        return 2 if code == "bf16" else np.dtype(code).itemsize


@dataclass(frozen=True)
class _StorageRef:
    """A storage named by a persistent id: ``count`` elements from ``offset`` of root ``key``."""

    stype: _StorageType
    key: str
    offset: int
    count: int


@dataclass(frozen=True)
class _LazyTensor:
    """What ``_rebuild_tensor_v2`` returns; materialised once the storage bytes are read."""

    storage: _StorageRef
    storage_offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _is_int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _LazyTensor:
    """Safe replacement for ``torch._utils._rebuild_tensor_v2``."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("tensor without a storage persistent id")
    if not _is_int(storage_offset) or storage_offset < 0:
        raise pickle.UnpicklingError(f"bad storage offset {storage_offset!r}")
    size = tuple(size)
    stride = tuple(stride)
    if len(size) != len(stride) or not all(_is_int(v) and v >= 0 for v in size + stride):
        raise pickle.UnpicklingError(f"bad tensor size/stride {size!r}/{stride!r}")
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data: Any, requires_grad: Any = False, backward_hooks: Any = None) -> Any:
    """Safe replacement for ``torch._utils._rebuild_parameter``: a Parameter is its data."""
    if not isinstance(data, _LazyTensor):
        raise pickle.UnpicklingError("parameter without tensor data")
    return data


_ALLOWED: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only build dicts, tensors and storages."""

    def __init__(self, file: IO[bytes], path: Path, *, legacy: bool, allow_storages: bool):
        super().__init__(file)
        self._path = path
        self._legacy = legacy
        self._allow_storages = allow_storages

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise UserError(
            f"refusing to load {self._path}: pickle wants to build {module}.{name}, "
            "which is not allow-listed")

    def persistent_load(self, pid: Any) -> Any:
        if not self._allow_storages:
            raise pickle.UnpicklingError("unexpected persistent id in the file header")
        if not isinstance(pid, tuple) or not pid or pid[0] != "storage":
            kind = pid[0] if isinstance(pid, tuple) and pid else type(pid).__name__
            raise UserError(f"refusing to load {self._path}: persistent id of kind {kind!r} "
                            "(only tensor storages are allowed)")
        if self._legacy:
            if len(pid) != 6:
                raise pickle.UnpicklingError(f"bad storage persistent id {pid!r}")
            _, stype, key, _location, numel, view = pid
        else:
            if len(pid) != 5:
                raise pickle.UnpicklingError(f"bad storage persistent id {pid!r}")
            _, stype, key, _location, numel = pid
            view = None
        if not isinstance(stype, _StorageType) or not isinstance(key, str) or not _is_int(numel):
            raise pickle.UnpicklingError(f"bad storage persistent id {pid!r}")
        if view is None:
            return _StorageRef(stype, key, 0, numel)
        if (not isinstance(view, tuple) or len(view) != 3
                or not _is_int(view[1]) or not _is_int(view[2])):
            raise pickle.UnpicklingError(f"bad storage view {view!r}")
        _view_key, offset, view_size = view
        if offset < 0 or view_size < 0 or offset + view_size > numel:
            raise pickle.UnpicklingError(f"storage view {view!r} outside its storage of {numel}")
        return _StorageRef(stype, key, offset, view_size)


def _unpickle(f: IO[bytes], path: Path, *, legacy: bool, allow_storages: bool) -> Any:
    return _RestrictedUnpickler(f, path, legacy=legacy, allow_storages=allow_storages).load()


def _decode(raw: bytes, stype: _StorageType, little_endian: bool) -> np.ndarray:
    """Raw storage bytes -> 1-D numpy array of the storage's dtype."""
    order = "<" if little_endian else ">"
    code = _STORAGE_DTYPES[stype.name]
    if code == "bf16":
        bits = np.frombuffer(raw, dtype=order + "u2").astype(np.uint32) << 16
        return bits.view(np.float32)
    dt = np.dtype(code).newbyteorder(order) if np.dtype(code).itemsize > 1 else np.dtype(code)
    return np.frombuffer(raw, dtype=dt).astype(dt.newbyteorder("="), copy=False)


def _materialise(t: _LazyTensor, storages: dict[str, np.ndarray], path: Path) -> np.ndarray:
    """Apply offset/size/stride to the storage with bounds checks; returns a contiguous copy."""
    ref = t.storage
    if ref.key not in storages:
        raise UserError(f"cannot read {path}: storage {ref.key!r} has no data")
    root = storages[ref.key]
    if ref.offset + ref.count > root.size:
        raise UserError(f"cannot read {path}: storage {ref.key!r} is shorter than declared")
    base = root[ref.offset: ref.offset + ref.count]
    if any(s == 0 for s in t.size):
        return np.zeros(t.size, dtype=base.dtype)
    last = t.storage_offset + sum((n - 1) * s for n, s in zip(t.size, t.stride, strict=True))
    if last >= base.size:
        raise UserError(f"cannot read {path}: tensor view (offset {t.storage_offset}, size "
                        f"{t.size}, stride {t.stride}) runs past its storage of {base.size}")
    view = np.lib.stride_tricks.as_strided(
        base[t.storage_offset:], shape=t.size,
        strides=tuple(s * base.itemsize for s in t.stride), writeable=False)
    return np.array(view, copy=True, order="C")


def _to_arrays(obj: Any, storages: dict[str, np.ndarray], path: Path) -> dict[str, np.ndarray]:
    if not isinstance(obj, dict):
        raise UserError(f"cannot read {path}: expected a state dict, found {type(obj).__name__}")
    out: dict[str, np.ndarray] = {}
    for k, v in obj.items():
        if not isinstance(k, str) or not isinstance(v, _LazyTensor):
            raise UserError(f"cannot read {path}: entry {k!r} is not a tensor ({type(v).__name__})")
        out[k] = _materialise(v, storages, path)
    return out


def _collect_refs(obj: Any) -> dict[str, _StorageType]:
    refs: dict[str, _StorageType] = {}
    if isinstance(obj, dict):
        for v in obj.values():
            if isinstance(v, _LazyTensor):
                prev = refs.setdefault(v.storage.key, v.storage.stype)
                if prev != v.storage.stype:
                    raise pickle.UnpicklingError(f"storage {v.storage.key!r} used with two types")
    return refs


def _load_legacy(f: IO[bytes], path: Path, file_size: int) -> dict[str, np.ndarray]:
    magic = _unpickle(f, path, legacy=True, allow_storages=False)
    if magic != LEGACY_MAGIC:
        raise UserError(f"cannot read {path}: not a PyTorch file (bad magic number)")
    protocol = _unpickle(f, path, legacy=True, allow_storages=False)
    if protocol != LEGACY_PROTOCOL:
        raise UserError(f"cannot read {path}: unsupported legacy protocol {protocol!r}")
    sys_info = _unpickle(f, path, legacy=True, allow_storages=False)
    little = bool(sys_info.get("little_endian", True)) if isinstance(sys_info, dict) else True
    obj = _unpickle(f, path, legacy=True, allow_storages=True)
    keys = _unpickle(f, path, legacy=True, allow_storages=False)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise UserError(f"cannot read {path}: bad storage key list")
    refs = _collect_refs(obj)
    storages: dict[str, np.ndarray] = {}
    for key in keys:
        if key not in refs:
            raise UserError(f"cannot read {path}: storage {key!r} is not used by any tensor")
        stype = refs[key]
        head = f.read(8)
        if len(head) != 8:
            raise UserError(f"cannot read {path}: truncated before storage {key!r}")
        (count,) = struct.unpack("<q" if little else ">q", head)
        nbytes = count * stype.itemsize
        if count < 0 or nbytes > file_size - f.tell():
            raise UserError(f"cannot read {path}: storage {key!r} claims {count} elements, "
                            "more than the file holds")
        storages[key] = _decode(f.read(nbytes), stype, little)
    return _to_arrays(obj, storages, path)


def _load_zip(path: Path) -> dict[str, np.ndarray]:
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise UserError(f"cannot read {path}: zip file without exactly one data.pkl")
        root = pkl[0][: -len("data.pkl")]
        little = True
        if root + "byteorder" in names:
            little = zf.read(root + "byteorder").strip() != b"big"
        obj = _unpickle(io.BytesIO(zf.read(pkl[0])), path, legacy=False, allow_storages=True)
        storages: dict[str, np.ndarray] = {}
        for key, stype in _collect_refs(obj).items():
            member = f"{root}data/{key}"
            if member not in names:
                raise UserError(f"cannot read {path}: storage {key!r} is missing from the archive")
            storages[key] = _decode(zf.read(member), stype, little)
    return _to_arrays(obj, storages, path)


def load_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a ``torch.save``-d state dict (legacy stream or zip) as ``{name: ndarray}``."""
    p = Path(path)
    try:
        if zipfile.is_zipfile(p):
            return _load_zip(p)
        with open(p, "rb") as f:
            return _load_legacy(f, p, os.fstat(f.fileno()).st_size)
    except UserError:
        raise
    except FileNotFoundError:
        raise UserError(f"cannot read {p}: no such file") from None
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            IndexError, KeyError, struct.error, zipfile.BadZipFile, OverflowError) as e:
        raise UserError(f"cannot read {p}: not a valid PyTorch state dict ({e})") from None


def load_legacy_state_dict(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Read a legacy-format (or zip-format) PyTorch state dict without torch.

    Returns ``{name: contiguous little-endian-native ndarray}``.  Raises
    :class:`UserError` for a missing, malformed or unsafe file.
    """
    return load_state_dict(path)
