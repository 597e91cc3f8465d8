"""One weights identity per backbone: a published hash, or the sha256 recorded on first use; never a name."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import pytest

from tlreport.backbones import get_spec
from tlreport.backbones.identity import RANDOM_INIT, published_hash, weights_identity
from tlreport.errors import NeedsDownload
from tlreport.features.cache import backbone_key


def test_published_hashes() -> None:
    assert published_hash(get_spec("efficientnet_lite0")) == get_spec("efficientnet_lite0").weights.sha256
    assert published_hash(get_spec("inception_v3")) == "9a0d58056eeedaa3f26cb7ebd46da564"   # Keras' md5
    assert published_hash(get_spec("tiny_random")) == RANDOM_INIT
    assert published_hash(get_spec("inception_v4")) is None         # no published hash anywhere


def test_an_unpinned_artifact_without_a_record_is_a_download_not_a_name(tmp_path: Path) -> None:
    with pytest.raises(NeedsDownload, match=r"inception_v4 \("):
        weights_identity(get_spec("inception_v4"), data_root=str(tmp_path), download=False)
    with pytest.raises(ValueError, match="no published weights hash"):
        backbone_key(get_spec("inception_v4"))


def _install(tmp_path: Path, payload: bytes) -> str:
    """Install a stand-in inception_v4 archive with ``tlreport fetch --from``; return its sha256."""
    import io
    import tarfile

    src = tmp_path / "inception_v4_2016_09_09.tar.gz"
    with tarfile.open(src, "w:gz") as tar:
        info = tarfile.TarInfo("inception_v4.ckpt")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    from tlreport.artifacts.install import ensure

    ensure("inception_v4", tmp_path / "root", from_path=src, progress=False)
    return hashlib.sha256(src.read_bytes()).hexdigest()


def test_two_unpinned_checkpoints_under_one_name_have_two_identities(tmp_path: Path) -> None:
    spec = get_spec("inception_v4")
    sha_a = _install(tmp_path, b"checkpoint A")
    id_a = weights_identity(spec, data_root=str(tmp_path / "root"), download=False)
    assert id_a == sha_a
    sha_b = _install(tmp_path, b"checkpoint B, a different file")
    id_b = weights_identity(spec, data_root=str(tmp_path / "root"), download=False)
    assert id_b == sha_b != id_a
    assert backbone_key(spec, weights_sha256=id_a) != backbone_key(spec, weights_sha256=id_b)


def test_the_key_changes_with_the_published_hash() -> None:
    spec = get_spec("efficientnet_lite0")
    other = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, sha256="0" * 64))
    assert backbone_key(spec) != backbone_key(other)
