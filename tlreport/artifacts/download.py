"""Resumable, retried HTTP downloads into a .part file."""

from __future__ import annotations

import email.utils
import http.client
import re
import shutil
import socket
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

import tlreport
from tlreport.errors import UserError
from tlreport.util.files import disk_error
from tlreport.util.progress import bar
from tlreport.util.text import first_line

_CHUNK = 1 << 20


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL: attempts without progress, backoff and socket timeout."""

    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 60.0
    max_retry_after_s: float = 300.0    # a server's Retry-After is honoured up to this long


RETRY = RetryPolicy()  # tests replace this with tiny delays


# --------------------------------------------------------------------------- hashing & records


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bar(progress: bool, **kw) -> tqdm:
    """A byte-count progress bar (the shared :func:`tlreport.util.progress.bar`)."""
    return bar(unit="B", unit_scale=True, unit_divisor=1024, enabled=progress, **kw)


# --------------------------------------------------------------------------- download


class _Transient(Exception):
    """Worth retrying: timeouts, refused/dropped connections, 5xx, 429."""

    def __init__(self, msg: str, retry_after: float | None = None):
        super().__init__(msg)
        self.retry_after = retry_after      # seconds the server asked us to wait, if it said


def _retry_after(value: str | None) -> float | None:
    """A ``Retry-After`` header (seconds, or an HTTP date) as seconds from now; None if absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Permanent(Exception):
    """Not worth retrying this URL: 404, 403, DNS failure."""


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, socket.gaierror):
        return "cannot resolve host name (offline?)"
    if isinstance(exc, TimeoutError | socket.timeout):
        return "timed out"
    return str(exc) or type(exc).__name__


def _fetch_once(url: str, part: Path, size: int | None, progress: bool, desc: str, timeout: float) -> None:
    """One HTTP request that appends to (or restarts) ``part``; returns when it is complete."""
    have = part.stat().st_size if part.exists() else 0
    if size is not None and have > size:
        part.unlink()
        have = 0
    if size is not None and have == size and have > 0:
        return
    headers = {"User-Agent": f"tlreport/{tlreport.__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            m = re.match(r"bytes \*/(\d+)", exc.headers.get("Content-Range", "") if exc.headers else "")
            if m and int(m.group(1)) == have:
                return  # we already hold the whole file
            part.unlink()
            raise _Transient("server refused the resume range; restarting") from None
        if exc.code in (408, 425, 429) or exc.code >= 500:
            wait = _retry_after(exc.headers.get("Retry-After") if exc.headers else None)
            raise _Transient(f"HTTP {exc.code} {first_line(exc.reason)}", retry_after=wait) from None
        raise _Permanent(f"HTTP {exc.code} {first_line(exc.reason)}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(reason, socket.gaierror):
            raise _Permanent(_reason(reason)) from None
        raise _Transient(_reason(reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(_reason(exc)) from None

    with resp:
        encoding = (resp.headers.get("Content-Encoding") or "identity").strip().lower()
        if encoding != "identity":      # we asked for identity; hashing a compressed body would fail later
            raise _Permanent(f"server sent Content-Encoding {encoding} although identity was asked for; "
                             "the pinned hashes are of the raw file")
        mode = "wb"
        if resp.status == 206:
            m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Transient("server sent the wrong byte range; restarting")
            mode = "ab"
        elif resp.status == 200:
            if have:
                _say(f"{desc}: server ignored the resume request; restarting from zero")
            have = 0
        else:
            raise _Permanent(f"unexpected HTTP {resp.status}")
        clen = resp.headers.get("Content-Length")
        length = int(clen) if clen and clen.isdigit() else None
        total = have + length if length is not None else size
        if size is not None and total is not None and total != size:
            raise _Permanent(f"server offers {total:,} bytes, the registry expects {size:,}")
        got = 0
        try:
            out = open(part, mode)
        except OSError as e:
            raise disk_error(part, e) from None
        with out, _bar(progress, total=total, initial=have, desc=desc) as bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as exc:   # the network: worth a retry
                    raise _Transient(f"connection dropped after {have + got:,} bytes ({_reason(exc)})") from None
                if not chunk:
                    break
                try:
                    out.write(chunk)
                except OSError as e:                                   # the disk: retrying will not help
                    raise disk_error(part, e) from None
                got += len(chunk)
                bar.update(len(chunk))
        expected = have + length if length is not None else size
        if expected is not None and have + got < expected:
            raise _Transient(f"connection closed after {have + got:,} of {expected:,} bytes")


def download(
    urls: tuple[str, ...] | list[str],
    part: Path,
    *,
    size: int | None = None,
    progress: bool = True,
    desc: str = "",
    policy: RetryPolicy | None = None,
) -> str:
    """Download to ``part`` from the first URL that works; returns that URL.

    Transient failures are retried with exponential backoff (attempts that made
    progress do not count); a partial ``part`` is resumed with HTTP Range.
    Raises ``_DownloadFailed`` listing every URL and why it failed.
    """
    pol = policy or RETRY
    part.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for url in urls:
        failures_here = 0
        last = ""
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                _fetch_once(url, part, size, progress, desc or part.name, pol.timeout_s)
                return url
            except _Permanent as exc:
                last = str(exc)
                break
            except _Transient as exc:
                last = str(exc)
                after = part.stat().st_size if part.exists() else 0
                failures_here = 0 if after > before else failures_here + 1
                if failures_here >= pol.attempts:
                    break
                delay = min(pol.backoff_s * 2 ** max(failures_here - 1, 0), pol.max_backoff_s)
                if exc.retry_after is not None:
                    delay = min(max(delay, exc.retry_after), pol.max_retry_after_s)
                    _say(f"{desc or part.name}: {last}; the server asks to wait {delay:g}s"
                         + (f" (capped from {exc.retry_after:g}s)" if exc.retry_after > delay else ""))
                else:
                    _say(f"{desc or part.name}: {last}; retrying in {delay:g}s")
                time.sleep(delay)
        failures.append(f"{url} ({last})")
    raise _DownloadFailed(failures)


class _DownloadFailed(Exception):
    def __init__(self, failures: list[str]):
        self.failures = failures
        super().__init__("; ".join(failures))


def _check_space(where: Path, need: int) -> None:
    where.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(where).free
    if need > 0 and free < need + (64 << 20):
        raise UserError(f"not enough disk space in {where}: need {need / 2**20:,.0f} MiB, {free / 2**20:,.0f} MiB free")
