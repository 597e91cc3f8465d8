"""One kind of file lock: exclusive, advisory (``fcntl.flock``), dropped by the kernel when its holder dies.

A killed build or fetch therefore never leaves a stale lock behind.  Two uses:

* a build's cache (``busy=``): a second build on the same cache would race on
  the same entries, so it stops at once with a one-line message naming the
  other process;
* one artifact's download (``on_wait=``): a second fetch says it is waiting,
  then waits, and finds the artifact installed when it gets the lock.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from tlreport.errors import UserError
from tlreport.util.files import disk_error


class FileLock:
    """Hold an exclusive lock on ``path`` (created if missing) for a ``with`` block.

    ``busy``: do not wait; raise :class:`UserError` with this message (``{pid}``
    is replaced by the holder's pid).  Otherwise call ``on_wait`` (if given) and block.
    """

    def __init__(self, path: str | os.PathLike, *, busy: str | None = None,
                 on_wait: Callable[[], None] | None = None):
        self.path = Path(path)
        self.busy = busy
        self.on_wait = on_wait
        self._fd: int | None = None

    def __enter__(self) -> FileLock:
        try:
            import fcntl
        except ImportError:  # pragma: no cover - Windows: no advisory locks
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise disk_error(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if self.busy is not None:
                try:
                    other = os.read(fd, 64).decode(errors="replace").strip() or "?"
                finally:
                    os.close(fd)
                raise UserError(self.busy.format(pid=other)) from None
            if self.on_wait is not None:
                self.on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.close(self._fd)      # closing the descriptor releases the lock
            self._fd = None
