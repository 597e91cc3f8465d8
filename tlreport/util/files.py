"""Atomic files: written whole under a temporary name, then renamed into place.

Every file tlreport writes goes to a temporary name in the same folder and is
moved into place with :func:`os.replace`, so a killed build never leaves a
half-written file under a name a later build trusts.  A full disk or a folder
that cannot be written is one :class:`~tlreport.errors.UserError` line.
(Stage output folders get the same treatment in :mod:`tlreport.engine.store`.)
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import secrets
import tempfile
from pathlib import Path
from typing import Any

from tlreport.errors import UserError
from tlreport.util.hashing import stable_json


def disk_error(path: Path, e: OSError) -> UserError:
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


def _create_temp_beside(path: Path) -> tuple[int, str]:
    """A new, exclusive temporary file next to ``path`` with the mode a plain ``open(path, "w")`` would give.

    Not ``tempfile.mkstemp``: its files are 0600, and a published post, figure or
    preview renamed from one stays private to its owner (a web server running as
    another user would get 403). Mode 0o666 here is narrowed by the umask, as usual.
    """
    while True:
        tmp = path.parent / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666), str(tmp)
        except FileExistsError:     # pragma: no cover - 48 random bits
            continue


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp_beside(path)
    except OSError as e:
        raise disk_error(path, e) from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise disk_error(path, e) from None
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
