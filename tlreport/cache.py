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
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tlreport.errors import UserError

COMPLETE = "_complete.json"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def stable_json(obj: Any) -> str:
    """JSON with sorted keys and fixed separators: the same object, the same bytes."""
    return json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False, default=str) + "\n"


def hash_obj(obj: Any) -> str:
    return sha256_bytes(json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str).encode())


def fault_point(name: str) -> None:
    """Fault injection for the reliability tests (``TLREPORT_FAULT=<name>``).

    ``kill:<point>`` SIGKILLs this process at that point, ``int:<point>`` sends
    it SIGINT (as Ctrl-C does); ``enospc:<point>`` raises the OSError a full
    disk raises.  Unset (always, outside tests), it does nothing.
    """
    want = os.environ.get("TLREPORT_FAULT")
    if not want or want.split(":", 1)[-1] != name:
        return
    if want.startswith(("kill:", "int:")):
        import signal
        import time

        os.kill(os.getpid(), signal.SIGKILL if want.startswith("kill:") else signal.SIGINT)
        time.sleep(1)   # let the signal handler run here, at this point
    if want.startswith("enospc:"):
        raise OSError(errno.ENOSPC, "No space left on device (injected)")


def _disk_error(path: Path, e: OSError) -> UserError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"disk full while writing {path}; nothing half-written was kept")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return UserError(f"cannot write {path}: {e.strerror}")
    return UserError(f"cannot write {path}: {e}")


def check_writable(path: str | Path, what: str) -> None:
    """Fail now, in one line, if ``path`` (a folder, created later if missing) cannot be written.

    Tries what the build will do: create a file in ``path``, or in its nearest
    existing ancestor when ``path`` does not exist yet.  ``os.access`` alone
    would pass for root on a read-only mount.
    """
    path = Path(path)
    probe = path
    try:
        while not probe.exists() and probe != probe.parent:
            probe = probe.parent
        if not probe.is_dir():
            raise UserError(f"{what} {path} cannot be created: {probe} is not a folder")
        with tempfile.TemporaryFile(dir=probe, prefix=".tlreport-probe-"):
            pass
    except OSError as e:
        raise UserError(f"{what} {path} is not writable ({e.strerror or e}); fix its permissions or point "
                        f"{what} in the config somewhere else") from None


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise _disk_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _disk_error(path, e) from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_text(path, stable_json(obj))


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


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

    def get(self, stage: str, key: str, *, verify: bool = True) -> Path | None:
        """The output folder if complete and intact; a damaged one is removed.

        "Intact" is checked cheaply on every build: the marker's key and every
        listed file present with its recorded size (a truncated or missing file).
        :meth:`verify_deep` compares the recorded sha256s too.
        """
        p = self.path(stage, key)
        marker = p / COMPLETE
        if not marker.is_file():
            if p.exists():
                shutil.rmtree(p, ignore_errors=True)
            return None
        if not verify:
            return p
        try:
            meta = read_json(marker)
            ok = meta.get("key") == key and all(
                (p / rel).is_file() and (p / rel).stat().st_size == size
                for rel, size in meta["sizes"].items())
        except (OSError, ValueError, KeyError, AttributeError):
            ok = False
        if not ok:
            print(f"warning: cache entry {p} is damaged; recomputing it")
            shutil.rmtree(p, ignore_errors=True)
            return None
        return p

    def verify_deep(self, stage: str, key: str) -> bool:
        p = self.path(stage, key)
        try:
            meta = read_json(p / COMPLETE)
            return _listing(p) == meta["files"]
        except (OSError, ValueError, KeyError):
            return False

    @contextlib.contextmanager
    def put(self, stage: str, key: str) -> Iterator[Path]:
        """Yield a fresh temporary folder; on success it becomes the entry for ``key``."""
        final = self.path(stage, key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".tmp-{key[:12]}-"))
        try:
            yield tmp
            fault_point(f"{stage}:before-commit")
            files = _listing(tmp)
            sizes = {rel: (tmp / rel).stat().st_size for rel in files}
            atomic_write_json(tmp / COMPLETE, {"key": key, "stage": stage, "files": files, "sizes": sizes})
            if final.exists():
                shutil.rmtree(final)
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise _disk_error(final, e) from None
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

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


class BuildLock:
    """An exclusive, non-blocking lock on a cache folder (``fcntl.flock``).

    Two builds on the same cache would race on the same entries; the second one
    stops at once with a clear message instead.  The kernel drops the lock when
    the process dies, so a killed build never leaves a stale lock behind.
    """

    def __init__(self, cache_dir: Path):
        self.path = Path(cache_dir) / "build.lock"
        self._fd: int | None = None

    def __enter__(self) -> BuildLock:
        import fcntl

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise _disk_error(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                other = os.read(fd, 64).decode(errors="replace").strip() or "?"
            finally:
                os.close(fd)
            raise UserError(f"another tlreport build (pid {other}) is using the cache {self.path.parent}; "
                            "wait for it to finish") from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
