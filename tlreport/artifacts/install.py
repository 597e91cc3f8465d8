"""``tlreport fetch``: verified, resumable, safe downloads of datasets and weights.

Artifacts are listed in ``data/artifacts.toml``.  A download streams to
``<file>.part`` (resuming with an HTTP Range request where the server allows),
retries transient failures with exponential backoff, tries mirrors in order,
and is hashed before anything else reads it.  Archives are then unpacked with
:func:`tlreport.artifacts.archive.safe_extract`.  What was verified is recorded in
``<data_root>/<name>/.verified.json`` so later runs do no network I/O and no
re-hashing unless the file changed.

Only the standard library (urllib) and tqdm are used.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import time
from pathlib import Path

import tlreport
from tlreport.artifacts.archive import extract_member, safe_extract
from tlreport.artifacts.download import _CHUNK, _bar, _check_space, _DownloadFailed, _say, download
from tlreport.artifacts.registry import (
    RECORD,
    TREE,
    Artifact,
    data_root,
    get_artifact,
    keras_models_dir,
    load_registry,
)
from tlreport.errors import IntegrityError, UserError
from tlreport.util.files import atomic_write_json
from tlreport.util.humanize import human_size
from tlreport.util.locks import FileLock
from tlreport.util.text import first_line


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
    atomic_write_json(adir / RECORD, rec)


def _pins_for(art: Artifact, f: Path, adir: Path, rec: dict) -> dict[str, str]:
    """The hashes ``f`` must have: published pins, else the sha256 recorded on first fetch."""
    if art.inner and f == _inner_file(art, adir):
        return {"sha256": art.inner.sha256, "md5": art.inner.md5}
    pins = {"sha256": art.sha256, "md5": art.md5}
    if not art.sha256 and rec.get("file") == str(f) and rec.get("sha256"):
        pins["sha256"] = rec["sha256"]  # md5-only or unpinned: the sha256 recorded at first fetch
    return pins


#: a verified file's mtime is set at least this far back when recorded (:func:`_record_for`)
RACY_NS = 2_000_000_000


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
    now = time.time_ns()
    if st.st_mtime_ns > now - RACY_NS:
        # a file rewritten within the clock's granularity keeps its mtime (git's "racily clean" files): the
        # record would vouch for the new bytes.  Its mtime is set back, so any later write shows
        with contextlib.suppress(OSError):      # a file not ours to touch keeps its mtime (and the race)
            os.utime(f, ns=(st.st_atime_ns, now - RACY_NS))
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
    """``missing``, ``present-verified``, ``present-corrupt`` (hashes only if a file changed) or
    ``refused`` (a verified archive whose contents were refused: an unsafe member, too large, no root)."""
    art = get_artifact(name)
    adir = _adir(art, data_root(root))
    rec = _read_record(adir)
    if _tree_recorded(art, adir, rec):
        return "present-verified"
    if art.extract and rec.get("refused") and Path(str(rec.get("file", ""))).is_file():
        return "refused"                  # verified, but its contents were not installed (fetch says why)
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


def recorded_sha256(name: str, root: str | os.PathLike[str] | None = None) -> str | None:
    """The sha256 an installed artifact was verified with: its pin, or the one recorded on first use.

    None when it is not installed (or no longer verifies).
    """
    if artifact_state(name, root) != "present-verified":
        return None
    art = get_artifact(name)
    return _read_record(_adir(art, data_root(root))).get("sha256") or art.sha256 or None


def download_note(name: str) -> str:
    """What fetching ``name`` costs, for a plan: ``inception_v3 (92 MB download)``."""
    art = get_artifact(name)
    return f"{name} ({human_size(art.size) + ' download' if art.size else 'download, size not published'})"


def resolve_dataset(name: str, root: str | os.PathLike[str] | None = None) -> Path | None:
    """The installed dataset root folder, or None when it is not installed (no I/O beyond stat)."""
    art = get_artifact(name)
    if art.kind != "dataset":
        raise UserError(f"{name} is a {art.kind}, not a dataset")
    adir = _adir(art, data_root(root))
    return _installed_path(art, adir) if _tree_recorded(art, adir, _read_record(adir)) else None


# --------------------------------------------------------------------------- install


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
        if bad and not (art.pinned and rec.get("pinned")):
            inner.unlink()
            raise IntegrityError(bad)
        if bad:
            # The outer archive matched its own pins, and the inner pins are those published for the
            # standalone tarball, which no public source shows to be byte-identical to the copy inside
            # the zip: warn, keep what was found, and install.
            _say(f"warning: {bad}; {archive.name} itself verified, so its copy is used "
                 f"(recorded as inner_sha256 {sha})")
            rec = {**rec, "inner_sha256": sha, "inner_md5": md5}
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


def _finish_or_forget(art: Artifact, adir: Path, archive: Path, rec: dict, progress: bool, *,
                      ours: bool) -> Path:
    """:func:`_finish`; if that fails for an artifact with no published checksum, its record (which only
    its own first use vouched for) is dropped, and so is the file when tlreport wrote it (``ours``: a
    download or a ``--from`` copy), so that the next fetch starts again instead of reporting the
    unusable file as verified."""
    try:
        return _finish(art, adir, archive, {k: v for k, v in rec.items() if k != "refused"}, progress)
    except Exception as e:
        if not rec.get("pinned"):
            (adir / RECORD).unlink(missing_ok=True)
            if ours:
                archive.unlink(missing_ok=True)
        elif isinstance(e, UserError):    # a verified archive that cannot be installed: `fetch --list` says so
            with contextlib.suppress(OSError):
                _write_record(adir, {**rec, "refused": first_line(e)})
        raise


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
    return _finish_or_forget(art, adir, dest, rec, progress, ours=True)


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
    if from_path is None:                # installed and vouched for: nothing to write, so no lock to take
        rec = _read_record(adir)         # (a shared, read-only data root serves what it holds)
        if _tree_recorded(art, adir, rec):
            return _installed_path(art, adir)
        if not art.extract and _fast_ok(art, _file_path(art, adir), adir, rec):
            return _file_path(art, adir)
    with FileLock(adir / ".lock", on_wait=lambda: _say(f"waiting for another tlreport fetch of {adir.name} to finish ...")):
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
                return _finish_or_forget(art, adir, f, rec, progress, ours=False)
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
    return _finish_or_forget(art, adir, dest, rec, progress, ours=True)


# --------------------------------------------------------------------------- CLI


def run_fetch(args: argparse.Namespace) -> int:
    root = data_root(getattr(args, "data_root", None))
    names: list[str] = list(getattr(args, "names", []) or [])
    from_path = getattr(args, "from_path", None)
    listing = bool(getattr(args, "list", False))
    if listing and from_path is not None:
        raise UserError("fetch: --list only lists; install a file with tlreport fetch NAME --from PATH")
    if from_path is not None and len(names) != 1:
        raise UserError("--from PATH installs exactly one artifact: tlreport fetch NAME --from PATH")
    if listing or not names:
        # --list NAME...: those artifacts' states only; a list never downloads
        reg = load_registry()
        shown = {name: get_artifact(name, reg) for name in names} if listing and names else reg
        print(f"data root: {root}")
        print(f"{'NAME':<22}{'KIND':<15}{'STATE':<18}{'SIZE':>11}  LICENCE")
        for name, art in shown.items():
            state = artifact_state(name, root)
            print(f"{name:<22}{art.kind:<15}{state:<18}{human_size(art.size):>11}  {art.licence}")
        if shown is reg:
            print("shipped with tlreport (no fetch needed): data/caltech101-subset, 13 classes of Caltech-101, "
                  "515 images, CC BY 4.0 (Fei-Fei, Fergus, Perona 2004; CaltechDATA mzrjq-6wc02)")
        if not listing:           # a bare `tlreport fetch`: say why nothing downloaded, and how to
            print("nothing fetched: name what to install, as in tlreport fetch caltech101")
        return 0
    reg = load_registry()
    for name in names:
        get_artifact(name, reg)  # unknown names fail before any download
    progress = not getattr(args, "no_progress", False)
    for name in names:
        path = ensure(name, root, from_path=from_path, progress=progress)
        print(f"{name}: {path}")
    return 0
