"""`tlreport fetch`: downloads against a loopback server, resume, retries, integrity, install."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import tarfile
import zipfile
from pathlib import Path

import pytest
from helpers.httpserver import LoopbackServer, closed_port

from tlreport.artifacts import download as download_module
from tlreport.artifacts import install as install_module
from tlreport.artifacts.download import RetryPolicy
from tlreport.artifacts.install import artifact_state, ensure, resolve_dataset
from tlreport.artifacts.registry import data_root, load_registry
from tlreport.cli import add_fetch_parser
from tlreport.errors import IntegrityError, UserError
from tlreport.util.paths import shipped_path

PAYLOAD = os.urandom(300_000)


def sha256(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def md5(b: bytes) -> str:
    return hashlib.md5(b).hexdigest()


def _toml_value(v: object) -> str:
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return str(v)


def write_registry(path: Path, arts: dict[str, dict]) -> Path:
    """A TOML registry of test artifacts (real hashes computed from the test bytes)."""
    lines = []
    for name, d in arts.items():
        lines.append(f"[{name}]")
        for k, v in d.items():
            if not isinstance(v, dict):
                lines.append(f"{k} = {_toml_value(v)}")
        for k, v in d.items():
            if isinstance(v, dict):
                lines.append(f"[{name}.{k}]")
                lines += [f"{kk} = {_toml_value(vv)}" for kk, vv in v.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_module, "RETRY", RetryPolicy(attempts=3, backoff_s=0.01, timeout_s=5))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.delenv("TLREPORT_DATA", raising=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "data"


def use(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, arts: dict[str, dict]) -> None:
    monkeypatch.setenv("TLREPORT_ARTIFACTS", str(write_registry(tmp_path / "artifacts.toml", arts)))


def blob(urls: list[str], data: bytes = PAYLOAD, **kw: object) -> dict:
    return {"kind": "model", "urls": urls, "filename": "blob.bin", "size": len(data),
            "sha256": sha256(data), "licence": "test", **kw}


def _leftovers(adir: Path) -> list[str]:
    return sorted(p.name for p in adir.iterdir() if p.name != ".lock") if adir.exists() else []


# --------------------------------------------------------------------------- downloads


def test_good_download(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        assert artifact_state("blob", root) == "missing"
        path = ensure("blob", root, progress=False)
    assert path == root / "blob" / "blob.bin"
    assert path.read_bytes() == PAYLOAD
    assert _leftovers(root / "blob") == [".verified.json", "blob.bin"]
    rec = json.loads((root / "blob" / ".verified.json").read_text())
    assert rec["sha256"] == sha256(PAYLOAD) and rec["md5"] == md5(PAYLOAD) and rec["pinned"] is True
    assert artifact_state("blob", root) == "present-verified"
    assert [r.range for r in srv.requests] == [None]


def test_interrupted_download_resumes_with_range(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", drop_after=120_000)
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        path = ensure("blob", root, progress=False)
    assert path.read_bytes() == PAYLOAD
    first, second = srv.requests
    assert first.range is None and first.sent == 120_000
    assert second.range == "bytes=120000-" and second.status == 206
    assert second.sent == len(PAYLOAD) - 120_000  # only the remainder was sent


def test_resume_across_runs(tmp_path, monkeypatch, root) -> None:
    """A .part left by an earlier, killed run is resumed, not restarted."""
    part = root / "blob" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD[:50_000])
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        ensure("blob", root, progress=False)
    assert [(r.range, r.sent) for r in srv.requests] == [("bytes=50000-", len(PAYLOAD) - 50_000)]


def test_complete_part_of_unknown_size_is_not_refetched(tmp_path, monkeypatch, root) -> None:
    """Range past the end gets 416 with the full size: the .part is already whole."""
    part = root / "blob" / "blob.bin.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(PAYLOAD)
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        art = blob([srv.url("/blob.bin")])
        del art["size"]
        use(tmp_path, monkeypatch, {"blob": art})
        assert ensure("blob", root, progress=False).read_bytes() == PAYLOAD
    assert [(r.range, r.status, r.sent) for r in srv.requests] == [(f"bytes={len(PAYLOAD)}-", 416, 0)]


def test_server_without_range_restarts_cleanly(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", ranges=False, drop_after=100_000)
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        path = ensure("blob", root, progress=False)
    assert path.read_bytes() == PAYLOAD  # not the first 100 kB twice
    first, second = srv.requests
    assert second.range == "bytes=100000-" and second.status == 200 and second.sent == len(PAYLOAD)


def test_5xx_then_ok(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", fail_first=2, fail_status=503)
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        assert ensure("blob", root, progress=False).read_bytes() == PAYLOAD
    assert [r.status for r in srv.requests] == [503, 503, 200]


def test_5xx_forever_gives_up(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", status=500)
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        with pytest.raises(UserError, match="HTTP 500"):
            ensure("blob", root, progress=False)
    assert len(srv.requests) == download_module.RETRY.attempts


@pytest.mark.parametrize("header, wait", [("2", 2.0), ("100000", 300.0)])
def test_retry_after_is_honoured_and_capped(tmp_path, monkeypatch, root, capsys, header, wait) -> None:
    slept: list[float] = []
    monkeypatch.setattr(download_module.time, "sleep", slept.append)
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", fail_first=1, fail_status=429, retry_after=header)
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        ensure("blob", root, progress=False)
    assert slept == [wait]                      # not the policy's 0.01 s backoff
    assert f"the server asks to wait {wait:g}s" in capsys.readouterr().err


def test_retry_after_as_an_http_date(tmp_path, monkeypatch, root) -> None:
    import email.utils

    slept: list[float] = []
    monkeypatch.setattr(download_module.time, "sleep", slept.append)
    soon = email.utils.formatdate(download_module.time.time() + 30, usegmt=True)
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", fail_first=1, fail_status=503, retry_after=soon)
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        ensure("blob", root, progress=False)
    assert len(slept) == 1 and 25 <= slept[0] <= 31


def test_a_compressed_response_is_refused(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        srv.behave("/blob.bin", content_encoding="gzip")
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        with pytest.raises(UserError, match="Content-Encoding gzip"):
            ensure("blob", root, progress=False)
    assert len(srv.requests) == 1                                     # refused, not retried
    assert _leftovers(root / "blob") == []


def test_every_shipped_artifact_lists_https_first() -> None:
    reg = load_registry(shipped_path("data", "artifacts.toml"))
    assert {name: a.urls[0] for name, a in reg.items() if not a.urls[0].startswith("https://")} == {}
    assert reg["inception_2015"].size == 88_931_400           # published size: a truncated body is caught


def test_404_is_clear_and_not_retried(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({}) as srv:
        url = srv.url("/gone.bin")
        use(tmp_path, monkeypatch, {"blob": blob([url])})
        with pytest.raises(UserError) as ei:
            ensure("blob", root, progress=False)
    msg = str(ei.value)
    assert "HTTP 404" in msg and url in msg and "--from PATH" in msg
    assert len(srv.requests) == 1
    assert not (root / "blob" / "blob.bin").exists()


def test_mirror_used_after_404(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/mirror/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/gone.bin"), srv.url("/mirror/blob.bin")])})
        assert ensure("blob", root, progress=False).read_bytes() == PAYLOAD
    assert [(r.path, r.status) for r in srv.requests] == [("/gone.bin", 404), ("/mirror/blob.bin", 200)]
    assert json.loads((root / "blob" / ".verified.json").read_text())["source"].endswith("/mirror/blob.bin")


def test_connection_refused_one_line(tmp_path, monkeypatch, root) -> None:
    url = f"http://127.0.0.1:{closed_port()}/blob.bin"
    use(tmp_path, monkeypatch, {"blob": blob([url])})
    with pytest.raises(UserError) as ei:
        ensure("blob", root, progress=False)
    msg = str(ei.value)
    assert "\n" not in msg
    assert url in msg and "connection refused" in msg
    assert "tlreport fetch blob --from PATH" in msg and str(root / "blob" / "blob.bin") in msg


def test_hash_mismatch_leaves_nothing(tmp_path, monkeypatch, root) -> None:
    wrong = sha256(b"something else")
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")], sha256=wrong)})
        with pytest.raises(IntegrityError) as ei:
            ensure("blob", root, progress=False)
    assert wrong in str(ei.value) and sha256(PAYLOAD) in str(ei.value)
    assert _leftovers(root / "blob") == []
    assert artifact_state("blob", root) == "missing"


def test_server_size_differs_from_registry(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")], size=len(PAYLOAD) + 1)})
        with pytest.raises(UserError, match="registry expects"):
            ensure("blob", root, progress=False)
    assert not (root / "blob" / "blob.bin").exists()


# --------------------------------------------------------------------------- idempotence, --from, states


def test_second_ensure_does_no_network(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        first = ensure("blob", root, progress=False)
    dead = f"http://127.0.0.1:{closed_port()}/blob.bin"
    use(tmp_path, monkeypatch, {"blob": blob([dead])})
    calls: list[object] = []
    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(install_module, "hash_file", lambda *a, **k: calls.append(a))  # and no re-hashing
    assert ensure("blob", root, progress=False) == first
    assert artifact_state("blob", root) == "present-verified"
    assert calls == []


def test_corrupted_file_is_detected_and_replaced(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        path = ensure("blob", root, progress=False)
        # recorded with its mtime set back, so a same-size rewrite within the clock's granularity still shows
        import time

        assert path.stat().st_mtime_ns <= time.time_ns() - install_module.RACY_NS
        path.write_bytes(b"x" + PAYLOAD[1:])
        assert artifact_state("blob", root) == "present-corrupt"
        with pytest.raises(UserError, match="not installed"):
            ensure("blob", root, allow_download=False, progress=False)
        assert not path.exists()  # the corrupt file was removed
        assert ensure("blob", root, progress=False).read_bytes() == PAYLOAD
    assert len(srv.requests) == 2


def test_from_path_installs_after_verification(tmp_path, monkeypatch, root) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/blob.bin"
    use(tmp_path, monkeypatch, {"blob": blob([dead])})
    good = tmp_path / "downloaded.bin"
    good.write_bytes(PAYLOAD)
    bad = tmp_path / "bad.bin"
    bad.write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 0xFF]))
    with pytest.raises(IntegrityError, match=sha256(PAYLOAD)):
        ensure("blob", root, from_path=bad, progress=False)
    assert _leftovers(root / "blob") == []
    path = ensure("blob", root, from_path=good, progress=False)
    assert path.read_bytes() == PAYLOAD and good.exists()
    assert artifact_state("blob", root) == "present-verified"


def test_file_placed_by_hand_is_verified_and_used(tmp_path, monkeypatch, root) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/blob.bin"
    use(tmp_path, monkeypatch, {"blob": blob([dead])})
    (root / "blob").mkdir(parents=True)
    (root / "blob" / "blob.bin").write_bytes(PAYLOAD)
    assert artifact_state("blob", root) == "present-verified"
    assert ensure("blob", root, allow_download=False, progress=False).read_bytes() == PAYLOAD


def test_md5_only_records_sha256(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        art = blob([srv.url("/blob.bin")])
        del art["sha256"]
        art["md5"] = md5(PAYLOAD)
        use(tmp_path, monkeypatch, {"blob": art})
        path = ensure("blob", root, progress=False)
    rec = json.loads((root / "blob" / ".verified.json").read_text())
    assert rec["sha256"] == sha256(PAYLOAD)
    # a same-size change is caught by the recorded sha256 as well as the md5
    path.write_bytes(PAYLOAD[:-1] + bytes([PAYLOAD[-1] ^ 1]))
    assert artifact_state("blob", root) == "present-corrupt"


def test_unpinned_is_trust_on_first_use(tmp_path, monkeypatch, root, capsys) -> None:
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        art = blob([srv.url("/blob.bin")])
        del art["sha256"], art["size"]
        use(tmp_path, monkeypatch, {"blob": art})
        path = ensure("blob", root, progress=False)
    assert "no published checksum" in capsys.readouterr().err
    assert json.loads((root / "blob" / ".verified.json").read_text())["sha256"] == sha256(PAYLOAD)
    assert artifact_state("blob", root) == "present-verified"
    path.write_bytes(b"tampered")
    assert artifact_state("blob", root) == "present-corrupt"


def test_keras_weights_go_to_keras_cache(tmp_path, monkeypatch, root) -> None:
    with LoopbackServer({"/w.h5": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"w": {"kind": "keras-weights", "urls": [srv.url("/w.h5")],
                                          "filename": "w_tf_kernels.h5", "md5": md5(PAYLOAD)}})
        path = ensure("w", root, progress=False)
    assert path == tmp_path / "keras" / "models" / "w_tf_kernels.h5"
    assert path.read_bytes() == PAYLOAD
    assert artifact_state("w", root) == "present-verified"


# --------------------------------------------------------------------------- datasets & archives


def _jpeg(i: int) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (10, 8), (20 * i % 255, 90, 160)).save(buf, "JPEG")
    return buf.getvalue()


def caltech_shaped() -> tuple[bytes, bytes]:
    """(outer zip bytes, inner tar.gz bytes) shaped like caltech-101.zip."""
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        for c, cls in enumerate(("accordion", "airplanes", "anchor")):
            for i in range(3):
                data = _jpeg(c * 3 + i)
                ti = tarfile.TarInfo(f"101_ObjectCategories/{cls}/image_{i + 1:04d}.jpg")
                ti.size = len(data)
                tf.addfile(ti, io.BytesIO(data))
    inner = tbuf.getvalue()
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w") as zf:
        zf.writestr("caltech-101/101_ObjectCategories.tar.gz", inner)
        zf.writestr("caltech-101/Annotations.tar", b"not needed")
        zf.writestr("__MACOSX/._junk", b"")
    return zbuf.getvalue(), inner


def caltech_artifact(urls: list[str], outer: bytes, inner: bytes, **kw: object) -> dict:
    return {"kind": "dataset", "urls": urls, "filename": "caltech-101.zip", "size": len(outer),
            "sha256": sha256(outer), "root": "101_ObjectCategories", "licence": "test",
            "inner": {"path": "caltech-101/101_ObjectCategories.tar.gz", "md5": md5(inner),
                      "sha256": sha256(inner), "size": len(inner)}, **kw}


def test_caltech_shaped_dataset_installs(tmp_path, monkeypatch, root) -> None:
    outer, inner = caltech_shaped()
    with LoopbackServer({"/caltech-101.zip": outer}) as srv:
        use(tmp_path, monkeypatch, {"cal": caltech_artifact([srv.url("/caltech-101.zip")], outer, inner)})
        assert resolve_dataset("cal", root) is None
        ds = ensure("cal", root, progress=False)
    assert ds == root / "cal" / "files" / "101_ObjectCategories"
    assert sorted(p.name for p in ds.iterdir()) == ["accordion", "airplanes", "anchor"]
    assert all(len(list(d.glob("*.jpg"))) == 3 for d in ds.iterdir())
    assert resolve_dataset("cal", root) == ds
    assert artifact_state("cal", root) == "present-verified"
    assert not (root / "cal" / "101_ObjectCategories.tar.gz").exists()  # nested archive cleaned up
    # idempotent with the archive gone and the network dead
    (root / "cal" / "caltech-101.zip").unlink()
    dead = f"http://127.0.0.1:{closed_port()}/x.zip"
    use(tmp_path, monkeypatch, {"cal": caltech_artifact([dead], outer, inner)})
    assert ensure("cal", root, progress=False) == ds


def test_inner_member_differing_from_the_standalone_pins_is_a_warning_when_the_zip_verified(
        tmp_path, monkeypatch, root, capsys) -> None:
    outer, inner = caltech_shaped()
    art = caltech_artifact([], outer, inner)
    art["inner"]["sha256"] = sha256(b"the standalone tarball, not byte-identical to the zip's copy")
    use(tmp_path, monkeypatch, {"cal": art})
    src = tmp_path / "caltech-101.zip"
    src.write_bytes(outer)
    ds = ensure("cal", root, from_path=src, progress=False)
    assert sorted(p.name for p in ds.iterdir()) == ["accordion", "airplanes", "anchor"]
    err = capsys.readouterr().err
    assert "warning:" in err and "sha256 mismatch" in err and sha256(inner) in err
    rec = json.loads((root / "cal" / ".verified.json").read_text())
    assert rec["inner_sha256"] == sha256(inner)


def test_nested_archive_hash_is_strict_when_the_outer_archive_is_unpinned(tmp_path, monkeypatch, root) -> None:
    outer, inner = caltech_shaped()
    art = caltech_artifact([], outer, inner)
    del art["sha256"]
    art["inner"]["sha256"] = sha256(b"another inner archive")
    use(tmp_path, monkeypatch, {"cal": art})
    src = tmp_path / "caltech-101.zip"
    src.write_bytes(outer)
    with pytest.raises(IntegrityError, match="101_ObjectCategories.tar.gz"):
        ensure("cal", root, from_path=src, progress=False)
    assert not (root / "cal" / "files").exists()
    assert resolve_dataset("cal", root) is None


def test_the_inner_archive_given_by_hand_must_match_its_pins(tmp_path, monkeypatch, root) -> None:
    outer, inner = caltech_shaped()
    use(tmp_path, monkeypatch, {"cal": caltech_artifact([], outer, inner)})
    src = tmp_path / "101_ObjectCategories.tar.gz"
    src.write_bytes(inner[:-10] + b"0123456789")            # a damaged copy of the standalone tarball
    with pytest.raises(IntegrityError):
        ensure("cal", root, from_path=src, progress=False)
    assert resolve_dataset("cal", root) is None


def test_from_path_accepts_the_inner_archive(tmp_path, monkeypatch, root) -> None:
    """torchvision users already hold 101_ObjectCategories.tar.gz: --from takes it."""
    outer, inner = caltech_shaped()
    use(tmp_path, monkeypatch, {"cal": caltech_artifact([], outer, inner)})
    src = tmp_path / "101_ObjectCategories.tar.gz"
    src.write_bytes(inner)
    ds = ensure("cal", root, from_path=src, progress=False)
    assert sorted(p.name for p in ds.iterdir()) == ["accordion", "airplanes", "anchor"]


def test_malicious_dataset_archive_is_rejected(tmp_path, monkeypatch, root) -> None:
    tbuf = io.BytesIO()
    with tarfile.open(fileobj=tbuf, mode="w:gz") as tf:
        ti = tarfile.TarInfo("../../escaped.txt")
        ti.size = 3
        tf.addfile(ti, io.BytesIO(b"pwn"))
    evil = tbuf.getvalue()
    with LoopbackServer({"/evil.tar.gz": evil}) as srv:
        use(tmp_path, monkeypatch, {"evil": {"kind": "dataset", "urls": [srv.url("/evil.tar.gz")],
                                             "filename": "evil.tar.gz", "sha256": sha256(evil), "root": "x"}})
        with pytest.raises(UserError, match="escaped.txt"):
            ensure("evil", root, progress=False)
    assert not (root / "evil" / "files").exists()
    assert not (tmp_path / "escaped.txt").exists() and not (root / "escaped.txt").exists()
    assert artifact_state("evil", root) == "refused"      # verified, kept, but not installed: --list says so


# --------------------------------------------------------------------------- registry, paths, CLI


def test_data_root_precedence(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert data_root() == tmp_path / "xdg" / "tlreport"
    monkeypatch.setenv("TLREPORT_DATA", str(tmp_path / "env"))
    assert data_root() == tmp_path / "env"
    assert data_root(str(tmp_path / "flag")) == tmp_path / "flag"


def test_bad_registry_entries_are_user_errors(tmp_path, monkeypatch) -> None:
    for bad, match in [({"kind": "weird", "filename": "f"}, "kind"),
                       ({"kind": "model", "filename": "../f"}, "filename"),
                       ({"kind": "model", "filename": "f", "sha256": "abc"}, "64 hex"),
                       ({"kind": "dataset", "filename": "f.bin"}, "archive")]:
        use(tmp_path, monkeypatch, {"x": bad})
        with pytest.raises(UserError, match=match):
            load_registry()
    for bad, match in [({"kind": "model", "filename": "f", "size": "116"}, r"\[x\]\.size: must be a whole number"),
                       ({"kind": "model", "filename": "f", "size": -5}, "size: must be a whole number"),
                       ({"kind": "model", "filename": "f", "urls": 5}, "urls: must be a list"),
                       ({"kind": "model", "filename": "f", "urls": ["not a url"]}, "http:// or https://"),
                       ({"kind": "model", "filename": "f", "urls": ["file:///etc/passwd"]}, "http:// or https://"),
                       ({"kind": "model", "filename": 3}, "filename: must be a string"),
                       ({"kind": "model", "filename": "f", "sha256": 5}, "sha256: must be a string"),
                       ({"kind": "model", "filename": "f", "root": 3}, "root: must be a string"),
                       ({"kind": "model", "filename": "f", "max_extracted_bytes": "big"}, "max_extracted_bytes"),
                       ({"kind": "model", "filename": "f", "inner": "a"}, "inner: must be a table")]:
        use(tmp_path, monkeypatch, {"x": bad})
        with pytest.raises(UserError, match=match):
            load_registry()
    use(tmp_path, monkeypatch, {"x": {"kind": "model", "filename": "f", "urls": []}})
    with pytest.raises(UserError, match="unknown artifact 'nope'"):
        ensure("nope", tmp_path)


@pytest.mark.parametrize("name", ["..", ".", "/tmp/abs", "a/b", "-x", ".hidden"])
def test_an_artifact_name_must_be_one_folder_of_the_data_root(tmp_path, monkeypatch, name) -> None:
    """The name becomes <data root>/<name>: '..' or an absolute name would install outside it."""
    registry = tmp_path / "artifacts.toml"
    registry.write_text(f'[{json.dumps(name)}]\nkind = "model"\nfilename = "f.bin"\nurls = []\n')
    monkeypatch.setenv("TLREPORT_ARTIFACTS", str(registry))
    with pytest.raises(UserError, match="an artifact's name is a folder of the data root"):
        load_registry()


def test_an_installed_artifact_is_served_without_writing_to_the_data_root(tmp_path, monkeypatch, root) -> None:
    """A shared, read-only data root: an installed, recorded artifact needs no lock file and no write."""
    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        first = ensure("blob", root, progress=False)
    lock = root / "blob" / ".lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()                                  # any attempt to take the lock would now fail
    assert ensure("blob", root, progress=False) == first


def test_shipped_registry_matches_backbones() -> None:
    from tlreport.backbones import REGISTRY

    reg = load_registry(shipped_path("data", "artifacts.toml"))
    assert {"caltech101", "caltech256", "inception_2015", "inception_v4",
            "inception_v3", "inception_resnet_v2"} <= set(reg)
    assert reg["caltech101"].root == "101_ObjectCategories" and reg["caltech101"].inner is not None
    assert reg["caltech256"].root == "256_ObjectCategories"
    for art in reg.values():
        assert art.urls and all(u.startswith(("http://", "https://")) for u in art.urls)
        assert art.licence
    for spec in REGISTRY.values():
        w = spec.weights
        if w.kind in ("keras", "artifact"):
            art = reg[w.artifact]
            if w.kind == "keras":
                assert art.kind == "keras-weights"
                assert (art.filename, art.md5, art.urls[0]) == (w.filename, w.md5, w.url)


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tlreport")
    add_fetch_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_list_and_from(tmp_path, monkeypatch, root, capsys) -> None:
    dead = f"http://127.0.0.1:{closed_port()}/blob.bin"
    use(tmp_path, monkeypatch, {"blob": blob([dead], licence="CC0-test")})
    assert _run(["fetch", "--list", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "blob" in out and "missing" in out and "CC0-test" in out and "293.0 KiB" in out
    # --list NAME lists that one and downloads nothing (its only URL is dead: a download would fail)
    assert _run(["fetch", "--list", "blob", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "blob" in out and "missing" in out and not (root / "blob").exists()
    with pytest.raises(UserError, match="--list only lists"):
        _run(["fetch", "--list", "blob", "--from", str(tmp_path / "x.bin"), "--data-root", str(root)])
    src = tmp_path / "blob.bin"
    src.write_bytes(PAYLOAD)
    assert _run(["fetch", "blob", "--from", str(src), "--data-root", str(root), "--no-progress"]) == 0
    assert str(root / "blob" / "blob.bin") in capsys.readouterr().out
    assert _run(["fetch", "--list", "--data-root", str(root)]) == 0
    assert "present-verified" in capsys.readouterr().out
    with pytest.raises(UserError, match="exactly one"):
        _run(["fetch", "blob", "blob", "--from", str(src), "--data-root", str(root)])
    with pytest.raises(UserError, match="exactly one"):       # the name forgotten: not a silent listing
        _run(["fetch", "--from", str(src), "--data-root", str(root)])
    # a bare fetch lists, and says it fetched nothing and how to; --list does not add that line
    assert _run(["fetch", "--data-root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "blob" in out and out.endswith("nothing fetched: name what to install, as in tlreport fetch caltech101\n")
    assert _run(["fetch", "--list", "--data-root", str(root)]) == 0
    assert "nothing fetched" not in capsys.readouterr().out
    with pytest.raises(UserError, match="unknown artifact"):
        _run(["fetch", "nope", "--data-root", str(root)])


def test_a_full_disk_during_a_download_is_one_line_and_not_retried(tmp_path, monkeypatch, root) -> None:
    import builtins
    import errno

    real_open = builtins.open

    class FullDisk:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def fake_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        return FullDisk(f) if str(path).endswith(".part") and "b" in mode and ("w" in mode or "a" in mode) else f

    with LoopbackServer({"/blob.bin": PAYLOAD}) as srv:
        use(tmp_path, monkeypatch, {"blob": blob([srv.url("/blob.bin")])})
        monkeypatch.setattr(builtins, "open", fake_open)
        with pytest.raises(UserError, match="disk full while writing"):
            ensure("blob", root, progress=False)
    assert len(srv.requests) == 1


def test_an_unpinned_archive_that_cannot_be_extracted_is_not_kept_as_verified(tmp_path, monkeypatch, root) -> None:
    """With no published checksum only its first use vouches for a file: junk that fails to extract must
    not stay behind as 'present-verified', or every later fetch would fail on it without fetching again."""
    junk = os.urandom(1000)
    with LoopbackServer({"/ds.tar.gz": junk}) as srv:
        use(tmp_path, monkeypatch, {"ds": {"kind": "dataset", "urls": [srv.url("/ds.tar.gz")], "filename": "ds.tar.gz",
                                           "root": "ds", "licence": "test"}})
        with pytest.raises(UserError) as ei:                          # downloaded, then extraction fails
            ensure("ds", root, progress=False)
        assert "\n" not in str(ei.value) and "extraction failed" in str(ei.value)
        assert artifact_state("ds", root) == "missing" and _leftovers(root / "ds") == []
        src = tmp_path / "ds.tar.gz"
        src.write_bytes(junk)
        with pytest.raises(UserError, match="extraction failed"):    # the same with --from
            ensure("ds", root, from_path=src, progress=False)
        assert artifact_state("ds", root) == "missing" and _leftovers(root / "ds") == []
        (root / "ds" / "ds.tar.gz").write_bytes(junk)                 # placed by hand: kept, but not vouched for
        with pytest.raises(UserError, match="extraction failed"):
            ensure("ds", root, progress=False)
        assert artifact_state("ds", root) == "missing" and _leftovers(root / "ds") == ["ds.tar.gz"]
