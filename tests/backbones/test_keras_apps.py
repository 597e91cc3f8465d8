"""keras.applications backbones: output contract, scaling and the weights lookup (all offline)."""

from __future__ import annotations

import dataclasses
import hashlib
import socket
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from tlreport.backbones import get_spec, keras_apps, load_model
from tlreport.errors import UserError


def _offline_urlretrieve(url, *args, **kwargs):
    """What urllib raises when DNS is unreachable."""
    raise urllib.error.URLError(socket.gaierror(-3, "Temporary failure in name resolution"))


@dataclasses.dataclass
class Offline:
    home: Path                                  # the empty KERAS_HOME
    calls: list[str] = dataclasses.field(default_factory=list)   # URLs Keras tried


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Offline:
    """An empty KERAS_HOME and a urlretrieve that fails at once, as it does with no network."""
    from keras.src.utils import file_utils

    state = Offline(home=tmp_path / "keras_home")

    def fake(url, *args, **kwargs):
        state.calls.append(url)
        _offline_urlretrieve(url)

    monkeypatch.setattr(file_utils, "urlretrieve", fake)
    monkeypatch.setenv("KERAS_HOME", str(state.home))
    return state


def _run(model, x: np.ndarray) -> dict[str, np.ndarray]:
    out = model(x, training=False)
    return {k: np.asarray(v) for k, v in out.items()}


def _check_contract(name: str) -> None:
    spec = get_spec(name)
    model = load_model(spec, cache_dir=Path("unused"), random_weights=True)
    s = spec.input_size
    x = np.random.default_rng(0).uniform(0, 255, size=(2, s, s, 3)).astype(np.float32)
    out = _run(model, x)
    assert set(out) == {"features", "probs"}
    assert out["features"].shape == (2, spec.feature_dim)
    assert out["probs"].shape == (2, spec.num_classes)
    np.testing.assert_allclose(out["probs"].sum(axis=1), 1.0, rtol=1e-5)
    assert (out["probs"] >= 0).all()

    # the model scales [0, 255] itself: the inner network sees (x - mean) / std
    heads = model.get_layer(f"{spec.name}_heads")
    scaled = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    inner_features, inner_probs = (np.asarray(t) for t in heads(scaled, training=False))
    np.testing.assert_allclose(out["features"], inner_features, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(out["probs"], inner_probs, rtol=1e-4, atol=1e-7)
    # and the features are the avg_pool layer of that network
    assert heads.outputs[0] is heads.get_layer("avg_pool").output


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
def test_inception_v3_random_weights_contract() -> None:
    _check_contract("inception_v3")


@pytest.mark.slow
def test_inception_resnet_v2_random_weights_contract() -> None:
    _check_contract("inception_resnet_v2")


def test_offline_download_is_one_line_user_error(offline: Offline) -> None:
    spec = get_spec("inception_v3")
    with pytest.raises(UserError) as info:
        keras_apps.build(spec, cache_dir=Path("unused"), random_weights=False)
    msg = str(info.value)
    assert "\n" not in msg
    assert spec.weights.url in msg
    assert str(offline.home / "models" / spec.weights.filename) in msg
    assert "tlreport fetch inception_v3" in msg
    assert "name resolution" in msg
    assert offline.calls == [spec.weights.url]
    assert not (offline.home / "models" / spec.weights.filename).exists()


def test_cached_file_with_wrong_md5_is_not_used(offline: Offline) -> None:
    spec = get_spec("inception_resnet_v2")
    target = offline.home / "models" / spec.weights.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(b"truncated download")
    with pytest.raises(UserError, match="tlreport fetch inception_resnet_v2"):
        keras_apps.resolve_weights(spec)
    assert offline.calls == [spec.weights.url]


def test_cached_file_with_right_md5_needs_no_network(offline: Offline) -> None:
    payload = b"pretend weights"
    base = get_spec("inception_v3")
    spec = dataclasses.replace(
        base, weights=dataclasses.replace(base.weights, md5=hashlib.md5(payload).hexdigest())
    )
    target = offline.home / "models" / spec.weights.filename
    target.parent.mkdir(parents=True)
    target.write_bytes(payload)
    assert keras_apps.resolve_weights(spec) == target
    assert offline.calls == []


def test_weights_file_from_spec_extra(offline: Offline, tmp_path: Path) -> None:
    spec = get_spec("inception_v3")
    missing = dataclasses.replace(spec, extra={"weights_file": str(tmp_path / "nope.h5")})
    with pytest.raises(UserError, match="nope.h5.*does not exist"):
        keras_apps.resolve_weights(missing)
    present = tmp_path / "mine.h5"
    present.write_bytes(b"x")
    assert keras_apps.resolve_weights(dataclasses.replace(spec, extra={"weights_file": str(present)})) == present
    assert offline.calls == []


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
def test_unloadable_weights_file_is_a_user_error(offline: Offline, tmp_path: Path) -> None:
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"this is not HDF5")
    spec = dataclasses.replace(get_spec("inception_v3"), extra={"weights_file": str(bad)})
    with pytest.raises(UserError, match="cannot load weights"):
        keras_apps.build(spec, cache_dir=tmp_path, random_weights=False)


@pytest.mark.slow
def test_weights_file_round_trip(tmp_path: Path) -> None:
    """Weights saved from one model load into a fresh build through ``extra['weights_file']``."""
    spec = get_spec("inception_v3")
    first = keras_apps.build(spec, cache_dir=tmp_path, random_weights=True)
    path = tmp_path / "iv3.weights.h5"
    first.get_layer(f"{spec.name}_heads").save_weights(path)
    second = keras_apps.build(
        dataclasses.replace(spec, extra={"weights_file": str(path)}), cache_dir=tmp_path
    )
    x = np.random.default_rng(1).uniform(0, 255, size=(1, 299, 299, 3)).astype(np.float32)
    a, b = _run(first, x), _run(second, x)
    np.testing.assert_allclose(a["features"], b["features"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a["probs"], b["probs"], rtol=1e-5, atol=1e-8)


def test_unknown_keras_backbone_is_a_user_error(tmp_path: Path) -> None:
    spec = dataclasses.replace(get_spec("inception_v3"), name="vgg16")
    with pytest.raises(UserError, match="not a keras.applications model"):
        keras_apps.build(spec, cache_dir=tmp_path, random_weights=True)
