"""Safe extraction: good archives come out whole, malicious ones leave nothing behind."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import pytest

from tlreport.artifacts.archive import extract_member, safe_extract
from tlreport.errors import UserError

CAP = 10 << 20


@pytest.fixture(autouse=True, params=["stdlib data filter", "no data filter (Python 3.11.0-3.11.3)"])
def tar_filter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test twice: with ``tarfile.data_filter`` and without it, as on Python 3.11.0-3.11.3."""
    if request.param.startswith("no"):
        monkeypatch.delattr(tarfile, "data_filter")


def _add_file(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    ti.mode = 0o644
    tf.addfile(ti, io.BytesIO(data))


def _add_special(tf: tarfile.TarFile, name: str, type_: bytes, linkname: str = "") -> None:
    ti = tarfile.TarInfo(name)
    ti.type = type_
    ti.linkname = linkname
    ti.mode = 0o644
    tf.addfile(ti)


def _tar(path: Path, build, mode: str = "w") -> Path:
    with tarfile.open(path, mode, format=tarfile.GNU_FORMAT) as tf:
        build(tf)
    return path


def _assert_clean_failure(workdir: Path, target: Path, match: str, archive: Path, cap: int = CAP) -> None:
    """safe_extract raises naming the member; no target, no temp folder, nothing outside."""
    before = sorted(p.name for p in workdir.iterdir())
    with pytest.raises(UserError, match=match):
        safe_extract(archive, target, max_total_bytes=cap)
    assert not os.path.lexists(target)
    assert sorted(p.name for p in workdir.iterdir()) == before  # no .partial left over


@pytest.fixture
def work(tmp_path: Path) -> tuple[Path, Path]:
    """(folder the archive and target live in, the target path); 'outside' is a sibling of target."""
    out = tmp_path / "out"
    out.mkdir()
    return out, out / "target"


def test_good_tar_tgz_zip(tmp_path: Path) -> None:
    payload = {"a/b.txt": b"hello", "a/c/d.bin": os.urandom(3000), "top.txt": b"x"}
    tgz = _tar(tmp_path / "x.tar.gz", lambda tf: [_add_file(tf, k, v) for k, v in payload.items()], "w:gz")
    tar = _tar(tmp_path / "x.tar", lambda tf: [_add_file(tf, k, v) for k, v in payload.items()])
    zpath = tmp_path / "x.zip"
    with zipfile.ZipFile(zpath, "w", zipfile.ZIP_DEFLATED) as zf:
        for k, v in payload.items():
            zf.writestr(k, v)
    for i, arc in enumerate([tgz, tar, zpath]):
        target = tmp_path / f"t{i}"
        assert safe_extract(arc, target, max_total_bytes=CAP) == target
        for k, v in payload.items():
            assert (target / k).read_bytes() == v
        assert not [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        umask = os.umask(0)
        os.umask(umask)
        assert target.stat().st_mode & 0o777 == 0o777 & ~umask   # as any folder: others may read a shared root


def test_internal_symlink_is_kept(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        _add_file(tf, "d/real.txt", b"data")
        _add_special(tf, "d/link.txt", tarfile.SYMTYPE, "real.txt")
    target = tmp_path / "t"
    safe_extract(_tar(tmp_path / "s.tar", build), target, max_total_bytes=CAP)
    assert os.path.islink(target / "d/link.txt")
    assert (target / "d/link.txt").read_bytes() == b"data"


def test_target_that_exists_is_refused(tmp_path: Path) -> None:
    arc = _tar(tmp_path / "x.tar", lambda tf: _add_file(tf, "f", b"1"))
    (tmp_path / "t").mkdir()
    with pytest.raises(UserError, match="already exists"):
        safe_extract(arc, tmp_path / "t", max_total_bytes=CAP)


def test_tar_dotdot(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = _tar(out.parent / "evil.tar", lambda tf: (_add_file(tf, "ok.txt", b"1"), _add_file(tf, "../x", b"pwn")))
    _assert_clean_failure(out, target, r"'\.\./x'", arc)
    assert not (out / "x").exists() and not (out.parent / "x").exists()


def test_tar_absolute(work: tuple[Path, Path], tmp_path: Path) -> None:
    out, target = work
    victim = tmp_path / "abs_victim.txt"
    arc = _tar(out.parent / "evil.tar", lambda tf: _add_file(tf, str(victim), b"pwn"))
    _assert_clean_failure(out, target, "absolute", arc)
    assert not victim.exists()


def test_tar_symlink_escape(work: tuple[Path, Path]) -> None:
    out, target = work

    def build(tf: tarfile.TarFile) -> None:
        _add_special(tf, "esc", tarfile.SYMTYPE, "../../")
        _add_file(tf, "esc/pwned.txt", b"pwn")
    _assert_clean_failure(out, target, "'esc'", _tar(out.parent / "evil.tar", build))
    assert not (out.parent.parent / "pwned.txt").exists()


def test_tar_symlink_absolute_target(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = _tar(out.parent / "evil.tar", lambda tf: _add_special(tf, "etc", tarfile.SYMTYPE, "/etc"))
    _assert_clean_failure(out, target, "'etc'", arc)


def test_tar_hardlink_escape(work: tuple[Path, Path], tmp_path: Path) -> None:
    out, target = work
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"secret")

    def build(tf: tarfile.TarFile) -> None:
        _add_special(tf, "leak", tarfile.LNKTYPE, "../../secret.txt")
    _assert_clean_failure(out, target, "'leak'", _tar(out.parent / "evil.tar", build))
    assert secret.read_bytes() == b"secret"


def test_tar_hardlink_inside_becomes_copy(tmp_path: Path) -> None:
    def build(tf: tarfile.TarFile) -> None:
        _add_file(tf, "a.txt", b"abc")
        _add_special(tf, "b.txt", tarfile.LNKTYPE, "a.txt")
    target = tmp_path / "t"
    safe_extract(_tar(tmp_path / "h.tar", build), target, max_total_bytes=CAP)
    assert (target / "b.txt").read_bytes() == b"abc"


@pytest.mark.parametrize("type_, word", [(tarfile.CHRTYPE, "device"), (tarfile.BLKTYPE, "device"),
                                         (tarfile.FIFOTYPE, "fifo|special")])
def test_tar_device_and_fifo(work: tuple[Path, Path], type_: bytes, word: str) -> None:
    out, target = work

    def build(tf: tarfile.TarFile) -> None:
        _add_file(tf, "ok.txt", b"1")
        ti = tarfile.TarInfo("dev/null0")
        ti.type = type_
        ti.devmajor, ti.devminor = 1, 3
        tf.addfile(ti)
    _assert_clean_failure(out, target, rf"'dev/null0'.*({word})", _tar(out.parent / "evil.tar", build))


def test_tar_over_cap(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = _tar(out.parent / "big.tar.gz", lambda tf: _add_file(tf, "zeros.bin", bytes((1 << 20) + 1)), "w:gz")
    assert arc.stat().st_size < 20_000  # tiny on disk, over the cap when unpacked
    _assert_clean_failure(out, target, "'zeros.bin'.*cap", arc, cap=1 << 20)


def test_too_many_members(tmp_path: Path) -> None:
    arc = _tar(tmp_path / "many.tar", lambda tf: [_add_file(tf, f"f{i}", b"") for i in range(20)])
    with pytest.raises(UserError, match="more than 10 members"):
        safe_extract(arc, tmp_path / "t", max_total_bytes=CAP, max_members=10)
    assert not (tmp_path / "t").exists()


def test_zip_slip(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = out.parent / "slip.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zf.writestr("fine.txt", b"1")
        zf.writestr("../../slipped.txt", b"pwn")
    _assert_clean_failure(out, target, "slipped.txt", arc)
    assert not (out.parent.parent / "slipped.txt").exists()


def test_zip_absolute(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = out.parent / "abs.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zi = zipfile.ZipInfo("placeholder")
        zi.filename = "/tmp/abs_zip_pwn.txt"  # bypass ZipInfo's own name sanitising
        zf.writestr(zi, b"pwn")
    _assert_clean_failure(out, target, "absolute", arc)


def test_zip_symlink_escape(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = out.parent / "link.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        zi = zipfile.ZipInfo("up")
        zi.create_system = 3
        zi.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(zi, "../../..")
    _assert_clean_failure(out, target, "'up'", arc)


def test_zip_symlinks_that_escape_through_each_other(work: tuple[Path, Path]) -> None:
    """Each target reads as inside (``d/..`` is the top), but on disk ``d -> .`` is followed first, so
    ``d/..`` is the target's parent: a chain of such links ends outside."""
    out, target = work
    arc = out.parent / "chain.zip"
    with zipfile.ZipFile(arc, "w") as zf:
        for name, link in (("d", "."), ("up", "d/.."), ("up2", "up/..")):
            zi = zipfile.ZipInfo(name)
            zi.create_system = 3
            zi.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(zi, link)
    _assert_clean_failure(out, target, "resolves outside the target", arc)
    # the same chain in a tar: the stdlib's data filter refuses it where there is one, the check on disk anyway
    tar = _tar(out.parent / "chain.tar", lambda tf: [_add_special(tf, name, tarfile.SYMTYPE, link) for name, link
                                                     in (("d", "."), ("up", "d/.."), ("up2", "up/.."))])
    _assert_clean_failure(out, target, "resolves outside the target|rejected", tar)


def test_zip_bomb_over_cap(work: tuple[Path, Path]) -> None:
    out, target = work
    arc = out.parent / "bomb.zip"
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        zf.writestr("small.txt", b"1")
        zf.writestr("bomb.bin", bytes(4 << 20))
    assert arc.stat().st_size < 40_000  # ~4 KiB on disk, 4 MiB unpacked, cap 1 MiB
    _assert_clean_failure(out, target, "'bomb.bin'.*cap", arc, cap=1 << 20)


def test_zip_lying_header_is_refused(work: tuple[Path, Path]) -> None:
    """A member whose header under-declares its size never lands on disk."""
    out, target = work
    arc = out.parent / "liar.zip"
    real = bytes(300_000)
    with zipfile.ZipFile(arc, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("liar.bin", real)
    raw = arc.read_bytes()
    size_le = len(real).to_bytes(4, "little")
    assert raw.count(size_le) >= 2  # local header + central directory
    arc.write_bytes(raw.replace(size_le, (100).to_bytes(4, "little")))
    _assert_clean_failure(out, target, "liar.bin", arc)


def test_writer_counts_bytes_actually_written(tmp_path: Path) -> None:
    """The byte budget is enforced on data read, not only on declared sizes."""
    from tlreport.artifacts.archive import _Writer

    root = tmp_path / "root"
    root.mkdir()
    w = _Writer(tmp_path / "a.zip", root, max_total_bytes=1000, max_members=10)
    w.count("a", 10)
    with pytest.raises(UserError, match="'a' holds more data than it declares"):
        w.write("a", PurePosixPath("a"), io.BytesIO(bytes(50)), declared=10)
    w2 = _Writer(tmp_path / "b.zip", root, max_total_bytes=1000, max_members=10)
    w2.write("b1", PurePosixPath("b1"), io.BytesIO(bytes(900)), declared=900)
    with pytest.raises(UserError, match="'b2' takes the extracted total over"):
        w2.write("b2", PurePosixPath("b2"), io.BytesIO(bytes(900)), declared=900)


def test_damaged_archive(tmp_path: Path) -> None:
    arc = tmp_path / "broken.tar.gz"
    arc.write_bytes(b"\x1f\x8b" + os.urandom(200))
    with pytest.raises(UserError, match="broken.tar.gz"):
        safe_extract(arc, tmp_path / "t", max_total_bytes=CAP)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.tar.gz"]


def test_nested_caltech_shaped_archive(tmp_path: Path) -> None:
    from PIL import Image

    inner = tmp_path / "101_ObjectCategories.tar.gz"
    with tarfile.open(inner, "w:gz") as tf:
        for cls in ("accordion", "airplanes", "anchor"):
            for i in range(2):
                buf = io.BytesIO()
                Image.new("RGB", (8, 6), (40 * i, 80, 120)).save(buf, "JPEG")
                _add_file(tf, f"101_ObjectCategories/{cls}/image_{i + 1:04d}.jpg", buf.getvalue())
    outer = tmp_path / "caltech-101.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.write(inner, "caltech-101/101_ObjectCategories.tar.gz")
        zf.writestr("caltech-101/show_annotation.m", b"% matlab")

    got = extract_member(outer, "caltech-101/101_ObjectCategories.tar.gz", tmp_path / "inner.tar.gz",
                         max_bytes=CAP)
    assert got.read_bytes() == inner.read_bytes()
    tree = safe_extract(got, tmp_path / "tree", max_total_bytes=CAP)
    root = tree / "101_ObjectCategories"
    assert sorted(p.name for p in root.iterdir()) == ["accordion", "airplanes", "anchor"]
    for cls in root.iterdir():
        jpgs = sorted(cls.glob("*.jpg"))
        assert len(jpgs) == 2
        with Image.open(jpgs[0]) as im:
            assert im.size == (8, 6)

    with pytest.raises(UserError, match="no member"):
        extract_member(outer, "caltech-101/missing.tar.gz", tmp_path / "nope", max_bytes=CAP)
    assert not (tmp_path / "nope").exists()
    with pytest.raises(UserError, match="over the cap"):
        extract_member(outer, "caltech-101/101_ObjectCategories.tar.gz", tmp_path / "small", max_bytes=10)
    assert not (tmp_path / "small").exists() and not (tmp_path / "small.partial").exists()


def test_a_partial_file_left_by_a_killed_fetch_is_replaced(tmp_path: Path) -> None:
    outer = tmp_path / "outer.zip"
    with zipfile.ZipFile(outer, "w") as zf:
        zf.writestr("inner.tar.gz", b"inner bytes")
    dest = tmp_path / "inner.tar.gz"
    (tmp_path / "inner.tar.gz.partial").write_bytes(b"half of an earlier try")     # SIGKILL left it
    assert extract_member(outer, "inner.tar.gz", dest, max_bytes=CAP).read_bytes() == b"inner bytes"
    assert not (tmp_path / "inner.tar.gz.partial").exists()
