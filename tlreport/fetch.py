"""``tlreport fetch``: verified, resumable, safe downloads of datasets and weights.

Artifacts are listed in ``data/artifacts.toml``.  A download streams to
``<file>.part`` (resuming with an HTTP Range request where the server allows),
retries transient failures with exponential backoff, tries mirrors in order,
and is hashed before anything else reads it.  Archives are then unpacked with
:func:`tlreport.archive.safe_extract`.  What was verified is recorded in
``<data_root>/<name>/.verified.json`` so later runs do no network I/O and no
re-hashing unless the file changed.

Only the standard library (urllib) and tqdm are used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import http.client
import json
import os
import re
import shutil
import socket
import sys
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

import tlreport
from tlreport.archive import extract_member, is_archive_name, safe_extract
from tlreport.errors import IntegrityError, UserError
from tlreport.paths import shipped_path

KINDS = ("dataset", "model", "keras-weights")
STATES = ("missing", "present-verified", "present-corrupt")
RECORD = ".verified.json"
TREE = "files"  # extracted archives live in <data_root>/<name>/files
_CHUNK = 1 << 20
_HEX = re.compile(r"^[0-9a-f]+$")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one URL: attempts without progress, backoff and socket timeout."""

    attempts: int = 5
    backoff_s: float = 1.0
    max_backoff_s: float = 30.0
    timeout_s: float = 60.0


RETRY = RetryPolicy()  # tests replace this with tiny delays


def data_root(override: str | os.PathLike[str] | None = None) -> Path:
    """``--data-root``, else ``$TLREPORT_DATA``, else ``$XDG_DATA_HOME/tlreport``."""
    if override:
        return Path(override).expanduser().absolute()
    env = os.environ.get("TLREPORT_DATA")
    if env:
        return Path(env).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(xdg).expanduser().absolute() / "tlreport"


def keras_models_dir() -> Path:
    """Where ``keras.utils.get_file`` looks for weights: ``$KERAS_HOME/models`` or ``~/.keras/models``."""
    env = os.environ.get("KERAS_HOME")
    if env:
        return Path(env).expanduser() / "models"
    home = Path.home()
    if not os.access(home, os.W_OK):  # Keras' own fallback for a read-only home
        home = Path("/tmp")
    return home / ".keras" / "models"


# --------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Inner:
    """An archive inside the downloaded archive (Caltech 101's zip holds a .tar.gz)."""

    path: str
    sha256: str = ""
    md5: str = ""
    size: int | None = None


@dataclass(frozen=True)
class Artifact:
    name: str
    kind: str
    urls: tuple[str, ...]
    filename: str
    size: int | None = None
    sha256: str = ""
    md5: str = ""
    licence: str = ""
    citation: str = ""
    homepage: str = ""
    root: str = ""
    inner: Inner | None = None
    max_extracted_bytes: int | None = None

    @property
    def pinned(self) -> bool:
        """Whether a published hash exists (otherwise: trust on first use)."""
        return bool(self.sha256 or self.md5)

    @property
    def extract(self) -> bool:
        return self.kind != "keras-weights" and is_archive_name(self.filename)

    @property
    def extract_cap(self) -> int:
        if self.max_extracted_bytes:
            return self.max_extracted_bytes
        return max(8 * self.size, 1 << 30) if self.size else 32 << 30


def _check_hex(where: str, value: str, length: int) -> str:
    value = value.strip().lower()
    if value and (len(value) != length or not _HEX.match(value)):
        raise UserError(f"{where}: expected {length} hex digits, got {value!r}")
    return value


def _safe_rel(where: str, value: str) -> str:
    parts = value.replace("\\", "/").split("/")
    if value.startswith("/") or ".." in parts:
        raise UserError(f"{where}: {value!r} must be a relative path without '..'")
    return "/".join(p for p in parts if p not in ("", "."))


def _parse_artifact(name: str, d: dict, source: str) -> Artifact:
    where = f"{source} [{name}]"
    kind = d.get("kind")
    if kind not in KINDS:
        raise UserError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    urls = d.get("urls", [])
    if isinstance(urls, str) or not all(isinstance(u, str) for u in urls):
        raise UserError(f"{where}: urls must be a list of strings")
    filename = d.get("filename", "")
    if not filename or "/" in filename or "\\" in filename or filename in (".", ".."):
        raise UserError(f"{where}: filename must be a plain file name, got {filename!r}")
    inner = None
    if isinstance(d.get("inner"), dict):
        i = d["inner"]
        inner = Inner(
            path=_safe_rel(f"{where}.inner.path", i.get("path", "")),
            sha256=_check_hex(f"{where}.inner.sha256", i.get("sha256", ""), 64),
            md5=_check_hex(f"{where}.inner.md5", i.get("md5", ""), 32),
            size=i.get("size"),
        )
        if not inner.path or not (inner.sha256 or inner.md5):
            raise UserError(f"{where}.inner: needs a path and a published sha256 or md5")
    art = Artifact(
        name=name,
        kind=kind,
        urls=tuple(urls),
        filename=filename,
        size=d.get("size"),
        sha256=_check_hex(f"{where}.sha256", d.get("sha256", ""), 64),
        md5=_check_hex(f"{where}.md5", d.get("md5", ""), 32),
        licence=d.get("licence", ""),
        citation=d.get("citation", ""),
        homepage=d.get("homepage", ""),
        root=_safe_rel(f"{where}.root", d.get("root", "")),
        inner=inner,
        max_extracted_bytes=d.get("max_extracted_bytes"),
    )
    if kind == "dataset" and not art.extract:
        raise UserError(f"{where}: a dataset must be an archive (.zip/.tar/.tar.gz/.tgz)")
    return art


def load_registry(path: str | os.PathLike[str] | None = None) -> dict[str, Artifact]:
    """Read the artifact registry: ``path``, ``$TLREPORT_ARTIFACTS`` or the shipped ``artifacts.toml``."""
    p = Path(path or os.environ.get("TLREPORT_ARTIFACTS") or shipped_path("data", "artifacts.toml"))
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"artifact registry not found: {p}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"{p}: {exc}") from None
    return {k: _parse_artifact(k, v, p.name) for k, v in raw.items() if isinstance(v, dict)}


def get_artifact(name: str, registry: dict[str, Artifact] | None = None) -> Artifact:
    reg = load_registry() if registry is None else registry
    try:
        return reg[name]
    except KeyError:
        raise UserError(f"unknown artifact {name!r} (known: {', '.join(sorted(reg))})") from None


# --------------------------------------------------------------------------- hashing & records


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bar(progress: bool, **kw) -> tqdm:
    return tqdm(unit="B", unit_scale=True, unit_divisor=1024, leave=False,
                disable=not (progress and sys.stderr.isatty()), file=sys.stderr, **kw)


def hash_file(path: Path, *, progress: bool = False) -> tuple[str, str]:
    """(sha256, md5) of a file, in one pass."""
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh, _bar(progress, total=os.path.getsize(path), desc=f"verify {path.name}") as bar:
        while chunk := fh.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            bar.update(len(chunk))
    return sha.hexdigest(), md5.hexdigest()


def _mismatch(label: str, pins: dict[str, str], got: dict[str, str]) -> str | None:
    for algo, want in pins.items():
        if want and got[algo] != want:
            return f"{label}: {algo} mismatch: expected {want}, got {got[algo]}"
    return None


def _adir(art: Artifact, root: Path) -> Path:
    return Path(root) / art.name


def _file_path(art: Artifact, adir: Path) -> Path:
    """Where the downloaded file lives (Keras' cache for keras-weights)."""
    return (keras_models_dir() if art.kind == "keras-weights" else adir) / art.filename


def _inner_file(art: Artifact, adir: Path) -> Path | None:
    return adir / Path(art.inner.path).name if art.inner else None


def _installed_path(art: Artifact, adir: Path) -> Path:
    if art.extract:
        return adir / TREE / art.root if art.root else adir / TREE
    return _file_path(art, adir)


def _read_record(adir: Path) -> dict:
    try:
        rec = json.loads((adir / RECORD).read_text(encoding="utf-8"))
        return rec if isinstance(rec, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_record(adir: Path, rec: dict) -> None:
    adir.mkdir(parents=True, exist_ok=True)
    tmp = adir / (RECORD + ".tmp")
    tmp.write_text(json.dumps(rec, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    os.replace(tmp, adir / RECORD)


def _pins_for(art: Artifact, f: Path, adir: Path, rec: dict) -> dict[str, str]:
    """The hashes ``f`` must have: published pins, else the sha256 recorded on first fetch."""
    if art.inner and f == _inner_file(art, adir):
        return {"sha256": art.inner.sha256, "md5": art.inner.md5}
    pins = {"sha256": art.sha256, "md5": art.md5}
    if not art.sha256 and rec.get("file") == str(f) and rec.get("sha256"):
        pins["sha256"] = rec["sha256"]  # md5-only or unpinned: the sha256 recorded at first fetch
    return pins


def _fast_ok(art: Artifact, f: Path, adir: Path, rec: dict) -> bool:
    """True when ``f`` is the file the record vouches for and has not changed since."""
    if rec.get("file") != str(f):
        return False
    try:
        st = f.stat()
    except OSError:
        return False
    if rec.get("size") != st.st_size or rec.get("mtime_ns") != st.st_mtime_ns:
        return False
    pins = _pins_for(art, f, adir, rec)
    got = {"sha256": rec.get("sha256", ""), "md5": rec.get("md5", "")}
    return any(pins.values()) and _mismatch("", pins, got) is None


def _verify_file(art: Artifact, f: Path, adir: Path, rec: dict, progress: bool) -> tuple[bool, str, str]:
    """Hash ``f`` unless the record still vouches for it; (ok, sha256, md5)."""
    if _fast_ok(art, f, adir, rec):
        return True, rec["sha256"], rec.get("md5", "")
    sha, md5 = hash_file(f, progress=progress)
    pins = _pins_for(art, f, adir, rec)
    if not any(pins.values()):
        return False, sha, md5  # unpinned and never recorded: cannot vouch for it
    return _mismatch("", pins, {"sha256": sha, "md5": md5}) is None, sha, md5


def _record_for(f: Path, sha: str, md5: str, source: str, pinned: bool, **extra) -> dict:
    st = f.stat()
    return {
        "file": str(f), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha, "md5": md5,
        "source": source, "pinned": pinned, "tlreport": tlreport.__version__,
        "verified_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), **extra,
    }


# --------------------------------------------------------------------------- state


def _tree_recorded(art: Artifact, adir: Path, rec: dict) -> bool:
    return bool(art.extract and rec.get("extracted") and _installed_path(art, adir).is_dir())


def artifact_state(name: str, root: str | os.PathLike[str] | None = None) -> str:
    """``missing``, ``present-verified`` or ``present-corrupt`` (hashes only if a file changed)."""
    art = get_artifact(name)
    adir = _adir(art, data_root(root))
    rec = _read_record(adir)
    if _tree_recorded(art, adir, rec):
        return "present-verified"
    candidates = [_file_path(art, adir)] + ([_inner_file(art, adir)] if art.inner else [])
    for f in candidates:
        if f is not None and f.is_file():
            ok, _, _ = _verify_file(art, f, adir, rec, progress=False)
            if ok:
                return "present-verified"
            if art.pinned or rec.get("file") == str(f):
                return "present-corrupt"
    if art.extract and (adir / TREE).exists():
        return "present-corrupt"  # a tree nobody vouches for
    return "missing"


def resolve_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The installed dataset root folder, or None when it is not installed (no I/O beyond stat)."""
    art = get_artifact(name)
    if art.kind != "dataset":
        raise UserError(f"{name} is a {art.kind}, not a dataset")
    adir = _adir(art, data_root(root))
    return _installed_path(art, adir) if _tree_recorded(art, adir, _read_record(adir)) else None


# --------------------------------------------------------------------------- download


class _Transient(Exception):
    """Worth retrying: timeouts, refused/dropped connections, 5xx."""


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
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from None
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        reason = exc.reason if isinstance(exc.reason, BaseException) else exc
        if isinstance(reason, socket.gaierror):
            raise _Permanent(_reason(reason)) from None
        raise _Transient(_reason(reason)) from None
    except (OSError, http.client.HTTPException) as exc:
        raise _Transient(_reason(exc)) from None

    with resp:
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
        with open(part, mode) as out, _bar(progress, total=total, initial=have, desc=desc) as bar:
            try:
                while chunk := resp.read(_CHUNK):
                    out.write(chunk)
                    got += len(chunk)
                    bar.update(len(chunk))
            except (OSError, http.client.HTTPException) as exc:
                raise _Transient(f"connection dropped after {have + got:,} bytes ({_reason(exc)})") from None
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


# --------------------------------------------------------------------------- install


@contextlib.contextmanager
def _lock(adir: Path) -> Iterator[None]:
    """One fetch per artifact at a time (POSIX advisory lock; a no-op elsewhere)."""
    adir.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(adir / ".lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _say(f"waiting for another tlreport fetch of {adir.name} to finish ...")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _finish(art: Artifact, adir: Path, archive: Path, rec: dict, progress: bool) -> Path:
    """Extract a verified archive (inner archive first if nested) and return the installed path."""
    if not art.extract:
        return _installed_path(art, adir)
    tree = adir / TREE
    if os.path.lexists(tree):
        shutil.rmtree(tree)  # an unrecorded or stale tree from an earlier run
    inner = _inner_file(art, adir)
    if art.inner and inner is not None and archive != inner:
        inner.unlink(missing_ok=True)
        cap = art.inner.size or art.extract_cap
        extract_member(archive, art.inner.path, inner, max_bytes=cap)
        sha, md5 = hash_file(inner, progress=progress)
        bad = _mismatch(f"{art.name}: {art.inner.path} inside {archive.name}",
                        {"sha256": art.inner.sha256, "md5": art.inner.md5}, {"sha256": sha, "md5": md5})
        if bad:
            inner.unlink()
            raise IntegrityError(bad)
        try:
            safe_extract(inner, tree, max_total_bytes=art.extract_cap)
        finally:
            inner.unlink(missing_ok=True)
    else:
        safe_extract(archive, tree, max_total_bytes=art.extract_cap)
    out = _installed_path(art, adir)
    if not out.is_dir():
        shutil.rmtree(tree, ignore_errors=True)
        raise UserError(f"{art.name}: {archive.name} does not contain {art.root!r}")
    _write_record(adir, {**rec, "extracted": True, "installed": str(out)})
    return out


def _copy_hashing(src: Path, dst: Path, progress: bool) -> tuple[str, str]:
    sha, md5 = hashlib.sha256(), hashlib.md5(usedforsecurity=False)
    with open(src, "rb") as fin, open(dst, "wb") as fout, \
            _bar(progress, total=src.stat().st_size, desc=f"copy {src.name}") as bar:
        while chunk := fin.read(_CHUNK):
            sha.update(chunk)
            md5.update(chunk)
            fout.write(chunk)
            bar.update(len(chunk))
    return sha.hexdigest(), md5.hexdigest()


def _install_from(art: Artifact, adir: Path, src: Path, progress: bool) -> Path:
    """``--from PATH``: copy while hashing, verify, then install like a download."""
    src = Path(src).expanduser()
    if not src.is_file():
        raise UserError(f"--from {src}: not a file (give the downloaded {art.filename})")
    dest = _file_path(art, adir)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _check_space(dest.parent, src.stat().st_size)
    part = dest.with_name(dest.name + ".from.part")
    try:
        sha, md5 = _copy_hashing(src, part, progress)
        got = {"sha256": sha, "md5": md5}
        outer_bad = _mismatch(f"--from {src}", {"sha256": art.sha256, "md5": art.md5}, got)
        inner_ok = bool(art.inner) and _mismatch(
            "", {"sha256": art.inner.sha256, "md5": art.inner.md5}, got) is None  # type: ignore[union-attr]
        if outer_bad and not inner_ok:
            raise IntegrityError(outer_bad + (f" (it is not {art.inner.path} either)" if art.inner else ""))
        if inner_ok:
            dest = _inner_file(art, adir)  # type: ignore[assignment]
        os.replace(part, dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    if not art.pinned and not inner_ok:
        _say(f"warning: {art.name} has no published checksum; recorded sha256 {sha} from {src}")
    rec = _record_for(dest, sha, md5, f"--from {src}", art.pinned or inner_ok)
    _write_record(adir, rec)
    return _finish(art, adir, dest, rec, progress)


def ensure(
    name: str,
    root: str | os.PathLike[str] | None = None,
    *,
    allow_download: bool = True,
    from_path: Path | None = None,
    progress: bool = True,
) -> Path:
    """Install ``name`` if needed and return its path (dataset root, model file/folder, Keras file).

    A present, verified artifact returns at once with no network I/O.
    """
    art = get_artifact(name)
    adir = _adir(art, data_root(root))
    with _lock(adir):
        if from_path is not None:
            return _install_from(art, adir, Path(from_path), progress)
        rec = _read_record(adir)
        if _tree_recorded(art, adir, rec):
            return _installed_path(art, adir)
        dest = _file_path(art, adir)
        for f in [dest] + ([_inner_file(art, adir)] if art.inner else []):
            if f is None or not f.is_file():
                continue
            ok, sha, md5 = _verify_file(art, f, adir, rec, progress)
            trusted = ok or (not art.pinned and f == dest)
            if trusted:
                if not ok:
                    _say(f"warning: {art.name} has no published checksum; trusting {f} (sha256 {sha})")
                if not _fast_ok(art, f, adir, rec):
                    rec = _record_for(f, sha, md5, rec.get("source", "existing file"), art.pinned)
                    _write_record(adir, rec)
                return _finish(art, adir, f, rec, progress)
            _say(f"{art.name}: {f} does not match its checksum; removing it")
            f.unlink()
        if not allow_download:
            raise UserError(f"{art.name} is not installed under {adir.parent}; run `tlreport fetch {art.name}`")
        return _download_and_install(art, adir, dest, progress)


def _download_and_install(art: Artifact, adir: Path, dest: Path, progress: bool) -> Path:
    if not art.urls:
        raise UserError(f"{art.name} has no download URL; run `tlreport fetch {art.name} --from PATH`")
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    if art.size:
        _check_space(dest.parent, art.size - have + (art.size if art.extract else 0))
    try:
        url = download(art.urls, part, size=art.size, progress=progress, desc=art.name)
    except _DownloadFailed as exc:
        pin = f"sha256 {art.sha256}" if art.sha256 else (f"md5 {art.md5}" if art.md5 else "no published hash")
        raise UserError(
            f"cannot download {art.name}: {'; '.join(exc.failures)}. "
            f"Get {art.filename} ({pin}) another way and run `tlreport fetch {art.name} --from PATH`, "
            f"or put it at {dest} and rerun `tlreport fetch {art.name}`"
        ) from None
    sha, md5 = hash_file(part, progress=progress)
    bad = _mismatch(f"{art.name}: {art.filename} from {url}", {"sha256": art.sha256, "md5": art.md5},
                    {"sha256": sha, "md5": md5})
    if bad:
        part.unlink(missing_ok=True)
        raise IntegrityError(bad + "; the download was deleted")
    os.replace(part, dest)
    if not art.pinned:
        _say(f"warning: {art.name} has no published checksum; recorded sha256 {sha} on first fetch")
    rec = _record_for(dest, sha, md5, url, art.pinned)
    _write_record(adir, rec)
    return _finish(art, adir, dest, rec, progress)


# --------------------------------------------------------------------------- CLI


def _human(n: int | None) -> str:
    if not n:
        return "?"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add ``tlreport fetch NAME... [--data-root DIR] [--from PATH] [--list]``."""
    p = subparsers.add_parser(
        "fetch",
        help="download, verify and install datasets and weights",
        description="Download, verify (sha256/md5) and install datasets and pretrained weights. "
                    "Downloads resume; a verified artifact is never fetched twice.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help="artifacts to install (see --list)")
    p.add_argument("--data-root", metavar="DIR",
                   help="where artifacts live (default: $TLREPORT_DATA or $XDG_DATA_HOME/tlreport)")
    p.add_argument("--from", dest="from_path", metavar="PATH", type=Path,
                   help="install from a file you downloaded yourself (verified first)")
    p.add_argument("--list", action="store_true", help="list artifacts, their state, size and licence")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=run_fetch)
    return p


def run_fetch(args: argparse.Namespace) -> int:
    root = data_root(getattr(args, "data_root", None))
    names: list[str] = list(getattr(args, "names", []) or [])
    from_path = getattr(args, "from_path", None)
    if getattr(args, "list", False) or not names:
        reg = load_registry()
        print(f"data root: {root}")
        print(f"{'NAME':<22}{'KIND':<15}{'STATE':<18}{'SIZE':>11}  LICENCE")
        for name, art in reg.items():
            state = artifact_state(name, root)
            print(f"{name:<22}{art.kind:<15}{state:<18}{_human(art.size):>11}  {art.licence}")
        if not names:
            return 0
    if from_path is not None and len(names) != 1:
        raise UserError("--from PATH installs exactly one artifact: tlreport fetch NAME --from PATH")
    reg = load_registry()
    for name in names:
        get_artifact(name, reg)  # unknown names fail before any download
    progress = not getattr(args, "no_progress", False)
    for name in names:
        path = ensure(name, root, from_path=from_path, progress=progress)
        print(f"{name}: {path}")
    return 0
