"""Atomic files, content hashes and the stage store.

Every file tlreport writes goes to a temporary name in the same folder and is
moved into place with :func:`os.replace`, so a killed build never leaves a
half-written file under a name a later build trusts.  A stage's output folder
is built under a temporary name and renamed into place only after its
``_complete.json`` (listing every file with its sha256) is written; an entry
without it, or whose files do not match it, is reported and recomputed.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tlreport.util.faults import fault_point
from tlreport.util.files import atomic_write_json, disk_error, read_json
from tlreport.util.hashing import sha256_file
from tlreport.util.locks import FileLock

COMPLETE = "_complete.json"


def _listing(folder: Path) -> dict[str, str]:
    out = {}
    for p in sorted(folder.rglob("*")):
        if p.is_file() and p.name != COMPLETE:
            out[p.relative_to(folder).as_posix()] = sha256_file(p)
    return out


class StageStore:
    """``root/<stage>/<key>/``: one complete, verified folder per stage output."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, stage: str, key: str) -> Path:
        return self.root / stage / key[:24]

    def partial(self, stage: str, key: str) -> Path:
        """Where a running stage may keep the finished pieces of its work (the grid's fits), so that the
        next run of an interrupted build resumes from them; removed once the entry for ``key`` is committed.
        Keyed as the entry is: the same inputs and code, the same pieces."""
        return self.root / stage / f".partial-{key[:24]}"

    def get(self, stage: str, key: str, *, repair: bool = True) -> Path | None:
        """The output folder if complete and intact; a damaged one is removed (unless ``repair=False``).

        "Intact": the marker's key, and every listed file present with its recorded
        size and sha256, checked whenever an entry is reused.  A file altered in
        place (same size) would otherwise be read, and published, as the stage's
        result; hashing the entries of the Caltech-101 build (about 60 MB, the
        exported classifier most of it) takes about 0.1 s.
        """
        p = self.path(stage, key)
        marker = p / COMPLETE
        if not marker.is_file():
            if p.exists() and repair:
                shutil.rmtree(p, ignore_errors=True)
            return None
        try:
            meta = read_json(marker)
            ok = meta.get("key") == key and all(
                (p / rel).is_file() and (p / rel).stat().st_size == size and sha256_file(p / rel) == meta["files"][rel]
                for rel, size in meta["sizes"].items())
        except (OSError, ValueError, KeyError, AttributeError):
            ok = False
        if not ok:
            if repair:
                print(f"warning: cache entry {p} is damaged; recomputing it")
                shutil.rmtree(p, ignore_errors=True)
            return None
        return p

    @contextlib.contextmanager
    def put(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a fresh temporary folder; on success it becomes the entry for ``key``."""
        final = self.path(stage, key)
        try:
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{key[:12]}-"))
        except OSError as e:
            raise disk_error(final.parent, e) from None
        try:
            yield tmp
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):   # the disk, not the stage's code
                raise disk_error(final, e) from None
            raise                                                      # a bug keeps its traceback
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            fault_point(f"{stage}:before-commit")
            files = _listing(tmp)
            sizes = {rel: (tmp / rel).stat().st_size for rel in files}
            atomic_write_json(tmp / COMPLETE, {"key": key, "stage": stage, "files": files, "sizes": sizes})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
            shutil.rmtree(self.partial(stage, key), ignore_errors=True)     # the entry holds it all now
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise disk_error(final, e) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def unfinished(self, keep: set[tuple[str, str]] = frozenset()) -> list[Path]:
        """The temporary folders of stage runs that never finished (a killed build leaves its ``.tmp-*``),
        and the :meth:`partial` folders of stage entries other than ``keep`` (``(stage, entry name)``)."""
        if not self.root.is_dir():
            return []
        out = []
        for stage_dir in sorted(p for p in self.root.iterdir() if p.is_dir()):
            out += [e for e in sorted(stage_dir.glob(".tmp-*")) if e.is_dir()]
            out += [e for e in sorted(stage_dir.glob(".partial-*"))
                    if e.is_dir() and (stage_dir.name, e.name.removeprefix(".partial-")) not in keep]
        return out

    def entries(self) -> list[tuple[str, str, int]]:
        out = []
        if not self.root.is_dir():
            return out
        for stage_dir in sorted(self.root.iterdir()):
            if not stage_dir.is_dir():
                continue
            for e in sorted(stage_dir.iterdir()):
                if (e / COMPLETE).is_file():
                    size = sum(f.stat().st_size for f in e.rglob("*") if f.is_file())
                    out.append((stage_dir.name, e.name, size))
        return out


def cache_lock(cache_dir: Path) -> FileLock:
    """The lock one build holds on its cache: a second build on the same cache stops at once."""
    return FileLock(Path(cache_dir) / "build.lock",
                    busy=f"another tlreport build (pid {{pid}}) is using the cache {cache_dir}; wait for it to finish")
