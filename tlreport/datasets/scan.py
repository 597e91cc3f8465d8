"""Image-folder datasets: scanning every file once, validating it, and the manifest of what is usable.

(Decoding one image and the backbone's resize and crop live in :mod:`tlreport.datasets.images`.)

A dataset is a folder whose immediate subfolders are the classes; files nested
deeper belong to their top-level class.  Files are recognised by content
(magic bytes), not by extension.  Every file that looks like an image but
cannot be used is reported as a :class:`Skip` with a reason; a scan never stops
on a bad file.  Hashing and validation results are cached by
``(relpath, size, mtime_ns, inode)`` so rescanning an unchanged folder only
costs a directory walk.
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import json
import os
import stat
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from tlreport.datasets.images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTS,
    IMAGE_FORMATS,
    BadImage,
    _header_size,
    _unsupported_format,
    sniff,
    validate,
)
from tlreport.errors import UserError
from tlreport.util.files import atomic_write_text
from tlreport.util.paths import is_within
from tlreport.util.progress import bar
from tlreport.util.text import display_name

# files and folders that operating systems and archivers leave behind (macOS zips: __MACOSX)
JUNK_NAMES = frozenset({"thumbs.db", "desktop.ini", ".ds_store", "ehthumbs.db", "icon\r", "__macosx"})
_CACHE_VERSION = 1


# --------------------------------------------------------------------------- manifest

@dataclass(frozen=True)
class Entry:
    relpath: str   # POSIX, relative to the dataset root; may hold surrogate escapes
    label: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Skip:
    relpath: str
    label: str
    reason: str

    @property
    def kind(self) -> str:
        """Short category of the reason ("truncated", "corrupt", ...)."""
        return self.reason.split(":", 1)[0]


@dataclass
class Manifest:
    root: str
    classes: list[str]
    entries: list[Entry]
    skipped: list[Skip] = field(default_factory=list)

    def labels(self) -> np.ndarray:
        """Integer label of every entry (index into :attr:`classes`)."""
        index = {c: i for i, c in enumerate(self.classes)}
        return np.fromiter((index[e.label] for e in self.entries), dtype=np.int64, count=len(self.entries))

    def paths(self) -> list[str]:
        """Absolute path of every entry."""
        return [os.path.join(self.root, *e.relpath.split("/")) for e in self.entries]

    def hash(self) -> str:
        """The dataset identity: sha256 over sorted (relpath, label, size, sha256)."""
        h = hashlib.sha256()
        for e in sorted(self.entries, key=lambda e: (os.fsencode(e.relpath), os.fsencode(e.label))):
            h.update(b"\0".join((os.fsencode(e.relpath), os.fsencode(e.label),
                                 str(e.size).encode(), e.sha256.encode())) + b"\n")
        return h.hexdigest()

    def summary(self) -> str:
        """One line, e.g. ``9,145 images in 102 classes; 0 skipped``."""
        n, k = len(self.entries), len(self.classes)
        line = f"{n:,} image{'' if n == 1 else 's'} in {k:,} class{'' if k == 1 else 'es'}; {len(self.skipped):,} skipped"
        if self.skipped:
            kinds = Counter(s.kind for s in self.skipped)
            line += " (" + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + ")"
        return line

    def to_json(self) -> str:
        return json.dumps({"version": 1, "root": self.root, "classes": self.classes,
                           "entries": [asdict(e) for e in self.entries],
                           "skipped": [asdict(s) for s in self.skipped]}, indent=None)

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        d = json.loads(text)
        return cls(root=d["root"], classes=list(d["classes"]),
                   entries=[Entry(**e) for e in d["entries"]],
                   skipped=[Skip(**s) for s in d["skipped"]])


# --------------------------------------------------------------------------- scanning

_HEAD_BYTES = 32      # enough for sniff() to name every format tlreport reads


def _read_file(path: str) -> bytes:
    """A file's bytes if its first bytes are those of an image format tlreport reads, else only those first
    bytes: a video or an archive among the images is not read into memory (a seam for tests that simulate
    files vanishing)."""
    with open(path, "rb") as fh:
        head = fh.read(_HEAD_BYTES)
        return head + fh.read() if sniff(head) is not None else head


class LinkedClassFolder(UserError):
    """A class folder that is a link into another class folder (``link``, ``target``): the same images twice."""

    def __init__(self, message: str, *, link: str, target: str) -> None:
        super().__init__(message)
        self.link = link
        self.target = target


def _check_class_folders(root: str, classes: Sequence[str], config_field: str = "dataset") -> None:
    """One line when a class folder is a link to another class folder, to the dataset folder or a folder
    above it: its images would be counted twice, under two labels."""
    real_root = os.path.realpath(root)
    real = {c: os.path.realpath(os.path.join(root, c)) for c in classes}
    by_real: dict[str, list[str]] = {}
    for c in classes:
        by_real.setdefault(real[c], []).append(c)
    for c in classes:
        if is_within(real_root, real[c]):
            raise UserError(f"class folder '{display_name(c)}' is a link to the dataset folder or a folder "
                            f"above it; remove the link or leave it out with {config_field}.exclude")
    # a class folder is another's when its real path is that one's or lies below it: its own path and
    # its ancestors are looked up (not every pair of classes: a dataset may have thousands)
    for c in sorted(classes, key=lambda c: not os.path.islink(os.path.join(root, c))):   # links first
        path, above = real[c], os.path.dirname(real[c])
        while True:
            other = next((o for o in by_real.get(path, ()) if o != c), None)
            if other is not None:
                raise LinkedClassFolder(f"class folders '{display_name(c)}' and '{display_name(other)}' hold the "
                                        f"same images (one is a link into the other); leave one out with "
                                        f"{config_field}.exclude", link=c, target=other)
            if above == path:
                break
            path, above = above, os.path.dirname(above)


def _without_copies(entries: list[Entry]) -> tuple[list[Entry], list[Skip]]:
    """Byte-identical images, kept once: the entries left and the copies skipped, each with its reason.

    Copies inside one class could land on both sides of a split (the same picture in training and in
    test flatters the score), so the first by path is kept.  The same picture in two classes has no
    one true class, so every copy is skipped.
    """
    by_hash: dict[str, list[Entry]] = {}
    for e in entries:
        by_hash.setdefault(e.sha256, []).append(e)
    kept: list[Entry] = []
    skips: list[Skip] = []
    for group in by_hash.values():
        if len(group) == 1:
            kept.append(group[0])
            continue
        group.sort(key=lambda e: e.relpath)
        labels = sorted({e.label for e in group})
        if len(labels) == 1:
            kept.append(group[0])
            skips += [Skip(e.relpath, e.label, f"duplicate: the same bytes as {group[0].relpath}") for e in group[1:]]
        else:
            skips += [Skip(e.relpath, e.label, f"duplicate: the same image in classes {', '.join(labels)}")
                      for e in group]
    return kept, skips


#: hidden folders that tools keep beside their files: skipped without a word
TOOL_FOLDERS = frozenset({".git", ".hg", ".svn", ".ipynb_checkpoints", ".tlreport", ".cache", ".thumbnails",
                          ".Trash", ".Trashes", ".Spotlight-V100", ".fseventsd", ".TemporaryItems"})


class EmptyClasses(UserError):
    """Class folders without a usable image; ``classes`` names them, ``without_files`` those that hold
    no file at all (the others' files were skipped, each for a reason)."""

    def __init__(self, message: str, *, classes: list[str], without_files: list[str],
                 skips: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.classes = classes
        self.without_files = without_files
        self.skips = skips or {}            # class -> why its files were skipped ("12 duplicate")


def _holds_an_image(folder: str, look_at: int = 10_000) -> bool:
    """Whether a file with an image extension lies below ``folder`` (at most ``look_at`` entries read)."""
    seen = 0
    for _, _, files in os.walk(folder):
        for f in files:
            if os.path.splitext(f)[1].lower() in IMAGE_EXTS:
                return True
            seen += 1
        if seen >= look_at:
            break
    return False


def _is_hidden_or_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


@dataclass
class _Found:
    relpath: str
    path: str
    label: str
    st: os.stat_result | None = None
    skip: str | None = None


def _walk_class(root: str, label: str, found: list[_Found]) -> None:
    """Collect every file under ``root/label`` (following dir symlinks, refusing loops).

    A link back to the dataset folder is a loop too: followed, it would bring every other class's
    images into this one.
    """
    top = os.path.join(root, label)
    try:
        top_st = os.stat(top)
        root_st = os.stat(root)
    except OSError as e:
        found.append(_Found(label, top, label, skip=f"unreadable: {e.strerror}"))
        return
    stack: list[tuple[str, str, frozenset[tuple[int, int]]]] = [
        (top, label, frozenset({(top_st.st_dev, top_st.st_ino), (root_st.st_dev, root_st.st_ino)}))]
    while stack:
        dpath, drel, ancestors = stack.pop()
        try:
            with os.scandir(dpath) as it:
                items = sorted(it, key=lambda d: d.name)
        except OSError as e:
            found.append(_Found(drel + "/", dpath, label, skip=f"unreadable folder: {e.strerror}"))
            continue
        for d in items:
            if _is_hidden_or_junk(d.name):
                continue
            rel = f"{drel}/{d.name}"
            try:
                st = os.stat(d.path)  # follows symlinks
            except OSError as e:
                if e.errno == errno.ELOOP:
                    found.append(_Found(rel, d.path, label, skip="symlink loop"))
                elif e.errno == errno.ENOENT:
                    reason = "broken symlink" if d.is_symlink() else "vanished: deleted while scanning"
                    found.append(_Found(rel, d.path, label, skip=reason))
                else:
                    found.append(_Found(rel, d.path, label, skip=f"unreadable: {e.strerror}"))
                continue
            if stat.S_ISDIR(st.st_mode):
                key = (st.st_dev, st.st_ino)
                if key in ancestors:
                    found.append(_Found(rel + "/", d.path, label, skip="symlink loop: the folder links to one above it"))
                else:
                    stack.append((d.path, rel, ancestors | {key}))
            elif stat.S_ISREG(st.st_mode):
                found.append(_Found(rel, d.path, label, st=st))
            else:
                found.append(_Found(rel, d.path, label, skip="not a regular file"))


def _did_you_mean(name: str, options: Sequence[str]) -> str:
    close = difflib.get_close_matches(name, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _select_classes(all_classes: list[str], include: Iterable[str] | None,
                    exclude: Iterable[str] | None, config_field: str = "dataset", root: str = "") -> list[str]:
    known = set(all_classes)
    problems = []
    for what, names in (("include", include), ("exclude", exclude)):
        for n in names or ():
            if n not in known:
                problems.append(f"{config_field}.{what} names class {n!r}, which "
                                f"{display_name(os.path.basename(root)) or 'the dataset folder'} has no folder for"
                                f"{_did_you_mean(n, all_classes)}")
    if problems:
        raise UserError("; ".join(problems))
    chosen = [c for c in all_classes if include is None or c in set(include)]
    return [c for c in chosen if c not in set(exclude or ())]


FileStatus = Literal["ok", "skip", "ignore"]  # usable image / reported as a Skip / not an image at all


@dataclass
class FileRecord:
    """What hashing and validating one file found; the value of the hash cache, keyed by relpath."""

    size: int      # an image's bytes read and hashed; the stat size for any other file
    mtime_ns: int  # stat mtime_ns at scan time; with size and inode, decides whether the record is stale
    inode: int
    sha256: str = ""   # "" unless the file is an image (a file that is not one is never read whole)
    width: int = 0     # decoded size; for a "too large" skip the header's size (0 when unknown)
    height: int = 0
    status: FileStatus = "skip"
    reason: str = ""   # the Skip reason when status is "skip"

    def matches(self, st: os.stat_result) -> bool:
        """Whether this record still describes the file with stat ``st``."""
        return self.size == st.st_size and self.mtime_ns == st.st_mtime_ns and self.inode == st.st_ino

    def to_json(self) -> list[Any]:
        """The compact on-disk form: ``[size, mtime_ns, inode, sha256, width, height, status, reason]``."""
        return [self.size, self.mtime_ns, self.inode, self.sha256, self.width, self.height, self.status,
                self.reason]

    @classmethod
    def from_json(cls, value: Any) -> FileRecord:
        """Inverse of :meth:`to_json`; raises ``ValueError`` for anything else."""
        if not isinstance(value, list) or len(value) != 8:
            raise ValueError(f"not a file record: {value!r}")
        size, mtime_ns, inode, sha256, width, height, status, reason = value
        if status not in ("ok", "skip", "ignore"):
            raise ValueError(f"unknown file status {status!r}")
        return cls(int(size), int(mtime_ns), int(inode), str(sha256), int(width), int(height), status,
                   str(reason))


def _validate_file(f: _Found, max_pixels: int) -> FileRecord:
    """One file's cache record: an image is hashed and fully decoded; any other file is named by its first
    bytes (:func:`_read_file`), ignored or reported as a skip."""
    st = f.st
    assert st is not None
    rec = FileRecord(size=st.st_size, mtime_ns=st.st_mtime_ns, inode=st.st_ino)
    ext = os.path.splitext(f.relpath)[1].lower()
    if st.st_size == 0:
        rec.reason = "empty file: 0 bytes"
        return rec
    try:
        data = _read_file(f.path)
    except FileNotFoundError:
        rec.reason = "vanished: deleted while scanning"
        return rec
    except PermissionError as e:
        rec.reason = f"unreadable: {e.strerror}"
        return rec
    except OSError as e:
        rec.reason = ("symlink loop" if e.errno == errno.ELOOP else f"unreadable: {e.strerror}")
        return rec
    if not data:
        rec.reason = "empty file: 0 bytes"
        return rec
    if sniff(data[:_HEAD_BYTES]) is None:      # only its first bytes were read (_read_file)
        other = _unsupported_format(data)
        if other:
            rec.reason = f"unsupported format: {other}"
        elif ext in IMAGE_EXTS:
            rec.reason = f"not an image: content is not {'/'.join(IMAGE_FORMATS)} despite the {ext} name"
        else:
            rec.status = "ignore"
        return rec
    rec.size = len(data)
    rec.sha256 = hashlib.sha256(data).hexdigest()
    try:
        w, h = validate(data, max_pixels=max_pixels)
    except BadImage as e:
        rec.reason = str(e)
        if str(e).startswith("too large"):
            w, h = rec.width, rec.height = _header_size(data)
            if w and h:
                rec.reason = f"too large: {w}x{h} = {w * h:,} pixels > limit {max_pixels:,}"
        return rec
    rec.width, rec.height, rec.status = w, h, "ok"
    return rec


def _load_cache(path: Path | None) -> dict[str, FileRecord]:
    """The hash cache at ``path`` by relpath ({} when missing, unreadable or of another version).

    A malformed entry is dropped, so that file is simply validated again.
    """
    if path is None or not path.exists():
        return {}
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("version") == _CACHE_VERSION and isinstance(d.get("files"), dict):
            cache: dict[str, FileRecord] = {}
            for relpath, value in d["files"].items():
                try:
                    cache[relpath] = FileRecord.from_json(value)
                except (TypeError, ValueError):
                    continue
            return cache
    except (OSError, ValueError, AttributeError):
        pass
    return {}


def _save_cache(path: Path, records: dict[str, FileRecord]) -> None:
    atomic_write_text(path, json.dumps({"version": _CACHE_VERSION,
                                        "files": {k: r.to_json() for k, r in records.items()}},
                                       separators=(",", ":")))


def _merged(cache: dict[str, FileRecord], records: dict[str, FileRecord], walked: Iterable[str]
            ) -> dict[str, FileRecord]:
    """The hash cache after a scan of the classes ``walked``: their records, and other classes' as they were."""
    walked = set(walked)
    keep = {k: v for k, v in cache.items() if k.split("/", 1)[0] not in walked}
    keep.update(records)
    return keep


def scan_dataset(root: str | os.PathLike, *, include: Iterable[str] | None = None,
                 exclude: Iterable[str] | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
                 hash_cache_path: str | os.PathLike | None = None, progress: bool = True,
                 workers: int | None = None, update_hash_cache: bool = True,
                 config_field: str = "dataset") -> Manifest:
    """Scan an image-folder dataset into a :class:`Manifest`.

    ``config_field`` is the config section whose ``include``/``exclude`` chose the classes: the messages
    that ask for a class to be left out name it (``"dataset"``, or a table's).

    New or changed files are hashed and fully decoded once (in ``workers``
    threads); results are cached at ``hash_cache_path`` keyed by
    ``(relpath, size, mtime_ns, inode)``, which a read-only scan
    (``update_hash_cache=False``) reads but does not write.  Raises :class:`UserError` for a
    missing root, unknown include/exclude names, or a class with no usable images.
    """
    root_s = os.fspath(root)
    if not os.path.isdir(root_s):
        what = "is not a folder" if os.path.exists(root_s) else "does not exist"
        raise UserError(f"dataset folder {display_name(root_s)} {what}")
    root_s = os.path.abspath(root_s)
    try:
        with os.scandir(root_s) as it:
            listed = sorted(it, key=lambda d: d.name)
    except OSError as e:
        raise UserError(f"cannot read dataset folder {display_name(root_s)}: {e.strerror}") from None
    top, top_skips = [], []
    for d in listed:
        try:
            is_dir = d.is_dir()
        except OSError as e:                # a symlink loop, an entry deleted while scanning: that entry only
            top_skips.append(Skip(d.name, "", "symlink loop" if e.errno == errno.ELOOP else f"unreadable: {e.strerror}"))
            continue
        if _is_hidden_or_junk(d.name):
            # a hidden folder is no class, but one holding images is said so, never dropped unseen
            if (is_dir and d.name not in TOOL_FOLDERS and d.name.lower() not in JUNK_NAMES
                    and _holds_an_image(d.path)):
                top_skips.append(Skip(d.name + "/", "", "hidden folder: a name starting with '.' is not a class"))
            continue
        top.append((d, is_dir))
    all_classes = [d.name for d, is_dir in top if is_dir]
    # images beside the class folders belong to no class: reported, so that none goes missing unseen
    loose = [d.name for d, is_dir in top if not is_dir and os.path.splitext(d.name)[1].lower() in IMAGE_EXTS]
    if not all_classes:
        raise UserError(f"dataset folder {display_name(root_s)} has no class subfolders")
    classes = _select_classes(all_classes, include, exclude, config_field, root_s)
    if not classes:
        raise UserError(f"{config_field}.include/exclude leave no classes to use")
    _check_class_folders(root_s, classes, config_field)

    found: list[_Found] = []
    for c in classes:
        _walk_class(root_s, c, found)

    cache_path = Path(hash_cache_path) if hash_cache_path is not None else None
    cache = _load_cache(cache_path)
    records: dict[str, FileRecord] = {}
    todo: list[_Found] = []
    for f in found:
        if f.st is None:
            continue
        rec = cache.get(f.relpath)
        if rec is not None and rec.matches(f.st):
            too_large = rec.status == "skip" and rec.reason.startswith("too large")
            if too_large and 0 < rec.width * rec.height <= max_pixels:
                todo.append(f)  # the limit was raised: decode it now
                continue
            records[f.relpath] = rec
        else:
            todo.append(f)
    save = cache_path is not None and update_hash_cache
    if todo:
        n_workers = workers or min(8, os.cpu_count() or 1)
        try:
            with ThreadPoolExecutor(n_workers) as pool, \
                    bar(total=len(todo), desc="scanning", enabled=progress) as pbar:
                for f, rec in zip(todo, pool.map(lambda f: _validate_file(f, max_pixels), todo), strict=True):
                    records[f.relpath] = rec
                    pbar.update(1)
        except BaseException:               # Ctrl-C: the files hashed so far are not hashed again
            if save:
                _save_cache(cache_path, _merged(cache, records, classes))
            raise

    entries: list[Entry] = []
    skipped: list[Skip] = []
    per_class_files: Counter[str] = Counter()
    per_class_skips: dict[str, Counter[str]] = {c: Counter() for c in classes}
    for f in found:
        if f.st is None:
            skipped.append(Skip(f.relpath, f.label, f.skip or "unreadable"))
            per_class_files[f.label] += 1
            per_class_skips[f.label][skipped[-1].kind] += 1
            continue
        rec = records[f.relpath]
        status, reason = rec.status, rec.reason
        if status == "ignore":
            continue
        per_class_files[f.label] += 1
        w, h = rec.width, rec.height
        if status == "ok" and w * h > max_pixels:
            status, reason = "skip", f"too large: {w}x{h} = {w * h:,} pixels > limit {max_pixels:,}"
        if status == "ok":
            entries.append(Entry(f.relpath, f.label, int(rec.size), rec.sha256))
        else:
            skipped.append(Skip(f.relpath, f.label, reason))
            per_class_skips[f.label][skipped[-1].kind] += 1

    if save and (todo or set(cache) != set(records)):
        _save_cache(cache_path, _merged(cache, records, classes))

    entries, copies = _without_copies(entries)
    skipped += copies
    for s in copies:
        per_class_skips[s.label][s.kind] += 1

    have = Counter(e.label for e in entries)
    empty = [c for c in classes if have[c] == 0]
    if empty:
        msgs = []
        for c in empty:
            n, sk = per_class_files[c], per_class_skips[c]
            detail = f"{n} file{'s' if n != 1 else ''}"
            if sk:
                detail += f", {sum(sk.values())} skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(sk.items()))
            msgs.append(f"class '{display_name(c)}' has no usable images ({detail})")
        raise EmptyClasses("; ".join(msgs) + "; leave " + ("it" if len(empty) == 1 else "them")
                           + f" out with {config_field}.exclude, or remove the folder" + ("" if len(empty) == 1 else "s"),
                           classes=empty, without_files=[c for c in empty if per_class_files[c] == 0],
                           skips={c: ", ".join(f"{n} {k}" for k, n in sorted(per_class_skips[c].items()))
                                  for c in empty if per_class_skips[c]})

    skipped += [Skip(name, "", "not in a class folder: images go in a folder named after their class")
                for name in loose] + top_skips
    order = {c: i for i, c in enumerate(classes)}
    entries.sort(key=lambda e: (order[e.label], e.relpath))
    skipped.sort(key=lambda s: s.relpath)
    return Manifest(root=root_s, classes=classes, entries=entries, skipped=skipped)
