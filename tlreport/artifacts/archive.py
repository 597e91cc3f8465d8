"""Safe extraction of .tar, .tar.gz/.tgz and .zip archives.

Every archive is extracted into a temporary folder next to the target and
renamed into place only when the whole archive came out cleanly, so a
half-extracted tree is never visible under its final name.  Members are
rejected (with :class:`~tlreport.errors.UserError` naming the member) when
they are absolute, contain ``..``, are links that point outside the tree,
are device/fifo/special files, or when the total size goes over a cap.  The
cap is checked against the sizes the archive declares *and* against the bytes
actually written, so a zip bomb with lying headers is stopped too.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import IO

from tlreport.errors import UserError
from tlreport.util.paths import is_within
from tlreport.util.text import first_line

DEFAULT_MAX_MEMBERS = 200_000
_CHUNK = 1 << 20
_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")


def archive_kind(path: Path) -> str:
    """``"zip"`` or ``"tar"`` from the file name, falling back to the content."""
    name = Path(path).name.lower()
    if name.endswith(".zip"):
        return "zip"
    if name.endswith(_TAR_SUFFIXES):
        return "tar"
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise UserError(f"{path}: not a .tar, .tar.gz/.tgz or .zip archive")


def is_archive_name(name: str) -> bool:
    """Whether ``name`` looks like an archive this module can extract."""
    low = name.lower()
    return low.endswith(".zip") or low.endswith(_TAR_SUFFIXES)


def _clean_name(archive: Path, raw: str) -> PurePosixPath:
    """The member name as a safe relative path, or UserError."""
    if "\x00" in raw:
        raise UserError(f"{archive.name}: member {raw!r} has a NUL byte in its name")
    if raw.startswith(("/", "\\")) or (len(raw) > 1 and raw[1] == ":"):
        raise UserError(f"{archive.name}: member {raw!r} has an absolute path")
    parts = [p for p in raw.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise UserError(f"{archive.name}: member {raw!r} escapes the target ('..' in path)")
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


def _link_target_inside(archive: Path, member: str, rel: PurePosixPath, link: str) -> PurePosixPath:
    """Resolve a symlink target relative to the member; reject it if it leaves the tree."""
    if link.startswith(("/", "\\")) or (len(link) > 1 and link[1] == ":"):
        raise UserError(f"{archive.name}: member {member!r} is a link to an absolute path ({link!r})")
    parts: list[str] = list(rel.parent.parts) if str(rel.parent) != "." else []
    for p in link.replace("\\", "/").split("/"):
        if p in ("", "."):
            continue
        if p == "..":
            if not parts:
                raise UserError(f"{archive.name}: member {member!r} is a link pointing outside the target ({link!r})")
            parts.pop()
        else:
            parts.append(p)
    return PurePosixPath(*parts) if parts else PurePosixPath(".")


class _Writer:
    """Writes members under ``root`` with realpath checks and a byte budget."""

    def __init__(self, archive: Path, root: Path, max_total_bytes: int, max_members: int):
        self.archive = archive
        self.root = root
        self.real_root = os.path.realpath(root)
        self.max_total = max_total_bytes
        self.max_members = max_members
        self.declared = 0
        self.written = 0
        self.members = 0
        self.links: list[tuple[str, Path]] = []       # (member name, where) of every symlink written

    def count(self, name: str, declared_size: int) -> None:
        self.members += 1
        if self.members > self.max_members:
            raise UserError(f"{self.archive.name}: more than {self.max_members} members (at {name!r})")
        self.declared += max(declared_size, 0)
        if self.declared > self.max_total:
            raise UserError(
                f"{self.archive.name}: member {name!r} takes the declared total over the "
                f"{self.max_total:,}-byte cap"
            )

    def _dest(self, name: str, rel: PurePosixPath) -> Path:
        dest = self.root.joinpath(*rel.parts)
        parent = os.path.realpath(dest.parent)
        if not is_within(parent, self.real_root):
            raise UserError(f"{self.archive.name}: member {name!r} would be written outside the target")
        if os.path.lexists(dest) and (os.path.islink(dest) or not dest.is_dir()):
            raise UserError(f"{self.archive.name}: member {name!r} would overwrite an earlier member")
        return dest

    def mkdir(self, name: str, rel: PurePosixPath) -> None:
        if str(rel) == ".":
            return
        self._makedirs(name, rel)

    def _makedirs(self, name: str, rel: PurePosixPath) -> None:
        cur = PurePosixPath()
        for part in rel.parts:
            cur = cur / part
            dest = self.root.joinpath(*cur.parts)
            if os.path.islink(dest):
                raise UserError(f"{self.archive.name}: member {name!r} goes through a symlink")
            if not dest.exists():
                self._dest(name, cur)
                dest.mkdir(mode=0o755)
            elif not dest.is_dir():
                raise UserError(f"{self.archive.name}: member {name!r} needs a folder where a file is")

    def write(self, name: str, rel: PurePosixPath, src: IO[bytes], declared: int) -> None:
        if rel.parent.parts:
            self._makedirs(name, rel.parent)
        dest = self._dest(name, rel)
        fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW, 0o644)
        own = 0
        with os.fdopen(fd, "wb") as out:
            while True:
                chunk = src.read(_CHUNK)
                if not chunk:
                    break
                own += len(chunk)
                self.written += len(chunk)
                if own > declared:
                    raise UserError(f"{self.archive.name}: member {name!r} holds more data than it declares")
                if self.written > self.max_total:
                    raise UserError(
                        f"{self.archive.name}: member {name!r} takes the extracted total over the "
                        f"{self.max_total:,}-byte cap"
                    )
                out.write(chunk)

    def symlink(self, name: str, rel: PurePosixPath, link: str) -> None:
        _link_target_inside(self.archive, name, rel, link)
        if rel.parent.parts:
            self._makedirs(name, rel.parent)
        dest = self._dest(name, rel)
        os.symlink(link.replace("\\", "/"), dest)
        self.links.append((name, dest))

    def check_links(self) -> None:
        """Every symlink, resolved on disk once all members are written, stays inside the tree.

        The textual check of each target (:func:`_link_target_inside`) reads ``d/..`` as the tree's top;
        on disk ``..`` applies after ``d`` is followed, so ``d -> .`` makes ``d/..`` the tree's parent."""
        for name, dest in self.links:
            real = os.path.realpath(dest)
            if not is_within(real, self.real_root):
                raise UserError(f"{self.archive.name}: member {name!r} is a link that resolves outside the "
                                f"target through other links")

    def hardlink(self, name: str, rel: PurePosixPath, link_rel: PurePosixPath) -> None:
        """Hard links become copies of an earlier, already extracted regular file."""
        src = self.root.joinpath(*link_rel.parts)
        real = os.path.realpath(src)
        if not real.startswith(self.real_root + os.sep) or not os.path.isfile(real) or os.path.islink(src):
            raise UserError(f"{self.archive.name}: member {name!r} is a hard link outside the target or to a non-file")
        size = os.path.getsize(real)
        with open(real, "rb") as fh:
            self.write(name, rel, fh, size)


def _extract_tar(archive: Path, w: _Writer) -> None:
    # Python 3.11.0-3.11.3 have no ``tarfile.data_filter`` (added in 3.11.4); the checks above
    # (_clean_name, _Writer's link and size checks, the member-type check below) stand alone there.
    data_filter = getattr(tarfile, "data_filter", None)
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            rel = _clean_name(archive, m.name)
            w.count(m.name, m.size if m.isreg() else 0)
            if not (m.isdir() or m.isreg() or m.issym() or m.islnk()):
                kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
                        tarfile.FIFOTYPE: "fifo"}.get(m.type, f"special file (type {m.type!r})")
                raise UserError(f"{archive.name}: member {m.name!r} is a {kind}")
            if data_filter is not None:   # the stdlib "data" filter as a second opinion on every member
                try:
                    data_filter(m, str(w.root))
                except tarfile.FilterError as exc:
                    raise UserError(f"{archive.name}: member {m.name!r} rejected: {exc}") from None
            if m.isdir():
                w.mkdir(m.name, rel)
            elif m.isreg():
                src = tf.extractfile(m)
                assert src is not None
                with src:
                    w.write(m.name, rel, src, m.size)
            elif m.issym():
                w.symlink(m.name, rel, m.linkname)
            elif m.islnk():
                try:
                    link_rel = _clean_name(archive, m.linkname)
                except UserError:
                    raise UserError(f"{archive.name}: member {m.name!r} is a hard link outside the target "
                                    f"({m.linkname!r})") from None
                w.hardlink(m.name, rel, link_rel)
            else:  # pragma: no cover - refused above
                raise UserError(f"{archive.name}: member {m.name!r} is a special file")


def _zip_mode(info: zipfile.ZipInfo) -> int:
    return (info.external_attr >> 16) & 0xFFFF if info.create_system == 3 else 0


def _extract_zip(archive: Path, w: _Writer) -> None:
    with zipfile.ZipFile(archive) as zf:
        infos = zf.infolist()
        for info in infos:  # declared sizes first: a bomb is refused before anything is written
            _clean_name(archive, info.filename)
            w.count(info.filename, info.file_size)
        for info in infos:
            rel = _clean_name(archive, info.filename)
            mode = _zip_mode(info)
            ftype = stat.S_IFMT(mode)
            if info.is_dir() or ftype == stat.S_IFDIR:
                w.mkdir(info.filename, rel)
            elif ftype == stat.S_IFLNK:
                if info.file_size > 4096:
                    raise UserError(f"{archive.name}: member {info.filename!r} is an oversized symlink")
                link = zf.read(info).decode("utf-8", "surrogateescape")
                w.symlink(info.filename, rel, link)
            elif ftype in (0, stat.S_IFREG):
                with zf.open(info) as src:
                    w.write(info.filename, rel, src, info.file_size)
            else:
                raise UserError(f"{archive.name}: member {info.filename!r} is a special file (mode {oct(mode)})")


def safe_extract(
    archive: Path,
    target: Path,
    *,
    max_total_bytes: int,
    max_members: int = DEFAULT_MAX_MEMBERS,
) -> Path:
    """Extract ``archive`` into the new folder ``target`` (atomically) and return it.

    ``target`` must not exist yet.  On any error the temporary folder is removed
    and nothing is left under ``target``'s parent.
    """
    archive, target = Path(archive), Path(target)
    if os.path.lexists(target):
        raise UserError(f"{target} already exists; remove it before extracting {archive.name} again")
    kind = archive_kind(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        w = _Writer(archive, tmp, max_total_bytes, max_members)
        try:
            (_extract_zip if kind == "zip" else _extract_tar)(archive, w)
            w.check_links()
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, OSError) as exc:
            why = first_line(exc).rstrip(":")          # tarfile's "...: " before its list of codecs
            raise UserError(f"{archive.name}: extraction failed ({type(exc).__name__}: {why})") from None
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)        # mkdtemp's 0700 would hide a shared data root from its other users
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _iter_tar_member(archive: Path, member: str) -> Iterator[tuple[IO[bytes], int]]:
    with tarfile.open(archive, "r:*") as tf:
        for m in tf:
            if str(_clean_name(archive, m.name)) == member and m.isreg():
                src = tf.extractfile(m)
                assert src is not None
                with src:
                    yield src, m.size
                return


def _iter_zip_member(archive: Path, member: str) -> Iterator[tuple[IO[bytes], int]]:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            if str(_clean_name(archive, info.filename)) == member and not info.is_dir():
                if stat.S_IFMT(_zip_mode(info)) not in (0, stat.S_IFREG):
                    raise UserError(f"{archive.name}: member {member!r} is not a regular file")
                with zf.open(info) as src:
                    yield src, info.file_size
                return


def extract_member(archive: Path, member: str, dest: Path, *, max_bytes: int) -> Path:
    """Copy the single regular file ``member`` out of ``archive`` to ``dest``.

    Used for nested archives (Caltech 101's zip holds a .tar.gz): the inner file
    is written to ``dest`` (which must not exist), capped at ``max_bytes``.
    """
    archive, dest = Path(archive), Path(dest)
    want = str(_clean_name(archive, member))
    if os.path.lexists(dest):
        raise UserError(f"{dest} already exists")
    it = (_iter_zip_member if archive_kind(archive) == "zip" else _iter_tar_member)(archive, want)
    tmp = dest.with_name(dest.name + ".partial")
    try:
        try:
            found = next(it, None)
            if found is None:
                raise UserError(f"{archive.name}: has no member {member!r}")
            src, size = found
            if size > max_bytes:
                raise UserError(f"{archive.name}: member {member!r} declares {size:,} bytes, over the cap")
            written = 0
            tmp.unlink(missing_ok=True)    # left by a fetch that was killed; the fetch lock keeps out live ones
            with open(tmp, "xb") as out:
                while chunk := src.read(_CHUNK):
                    written += len(chunk)
                    if written > min(size, max_bytes):
                        raise UserError(f"{archive.name}: member {member!r} holds more data than it declares")
                    out.write(chunk)
            it.close()
        except (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
            why = first_line(exc).rstrip(":")
            raise UserError(f"{archive.name}: damaged archive ({type(exc).__name__}: {why})") from None
        except OSError as exc:            # reading the archive, or writing beside it (a full disk)
            raise UserError(f"{archive.name}: cannot extract {member!r} to {dest.parent} "
                            f"({exc.strerror or exc})") from None
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
