"""Inception v4: slim checkpoint mapping and an independent forward pass.

The expected checkpoint (names, shapes) and the reference forward pass come
from a table of TF-slim's ``nets/inception_v4.py`` written here, evaluated with
raw ``tf.nn`` ops and hand-written pooling — not from the Keras model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from helpers.slim_reference import NUM_CLASSES, SlimReference, aux_values, write_v1, write_v2  # noqa: E402

from tlreport.backbones import get_spec  # noqa: E402
from tlreport.backbones import inception_v4 as iv4  # noqa: E402
from tlreport.errors import UserError  # noqa: E402

# building Inception v4's graph takes seconds a test: the module is in the slow tier
pytestmark = pytest.mark.slow

@pytest.fixture(scope="module")
def slim(tmp_path_factory):
    """(reference, checkpoint values incl. aux + global_step, V1 checkpoint path, test images)."""
    rng = np.random.default_rng(0)
    ref = SlimReference(rng)
    images = rng.uniform(0, 255, (2, 107, 107, 3)).astype(np.float32)
    expected = ref(images)                       # draws every main-path variable
    values = dict(ref.values) | aux_values(rng) | {"global_step": np.array(123456, np.int64)}
    d = tmp_path_factory.mktemp("slim")
    ckpt = write_v1(d / "inception_v4.ckpt", values)
    return ref, values, ckpt, images, expected


@pytest.fixture(scope="module")
def model():
    return iv4.build_inception_v4(NUM_CLASSES, input_size=None)


def test_name_encoding_roundtrip():
    scope = "InceptionV4/Mixed_6b/Branch_2/Conv2d_0e_1x7/BatchNorm"
    assert iv4.keras_name(scope) == "InceptionV4.Mixed_6b.Branch_2.Conv2d_0e_1x7.BatchNorm"
    assert iv4.slim_scope(iv4.keras_name(scope)) == scope
    with pytest.raises(ValueError):
        iv4.keras_name("a.b")


def test_model_expects_exactly_slims_variables(slim, model):
    ref, values, *_ = slim
    wanted = {n: tuple(v.shape) for n, v in iv4.slim_variables(model).items()}
    ref_shapes = {n: v.shape for n, v in ref.values.items()}
    assert wanted == ref_shapes
    assert len(wanted) == 149 * 4 + 2          # 149 conv+BN units, Logits weights + biases
    assert wanted["InceptionV4/Logits/Logits/weights"] == (1536, NUM_CLASSES)
    # every checkpoint variable the model does not use is in the explicit ignore set, with its shape
    ignored = iv4.ignored_variables(NUM_CLASSES)
    assert {n: values[n].shape for n in values if n not in wanted} == ignored
    assert all(n == "global_step" or n.startswith("InceptionV4/AuxLogits/") for n in ignored)


def test_load_assigns_every_weight_and_matches_reference(slim, model):
    ref, values, ckpt, images, expected = slim
    report = iv4.load_slim_checkpoint(model, ckpt)
    assert set(report.assigned) == set(ref.values)
    assert set(report.ignored) == set(iv4.ignored_variables(NUM_CLASSES))
    for name, var in iv4.slim_variables(model).items():
        np.testing.assert_array_equal(var.numpy(), values[name], err_msg=name)

    # stem through Mixed_5a, then the whole network
    stem = keras.Model(model.input, model.get_layer("InceptionV4.Mixed_5a.concat").output)
    got = np.asarray(stem(images))
    want = ref(images, until="Mixed_5a")["net"]
    assert got.shape == want.shape == (2, 11, 11, 384)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())

    out = model(images)
    feats, probs = np.asarray(out["features"]), np.asarray(out["probs"])
    assert feats.shape == (2, 1536) and probs.shape == (2, NUM_CLASSES)
    assert np.abs(expected["features"]).max() > 0
    np.testing.assert_allclose(feats, expected["features"], rtol=1e-3, atol=1e-4 * np.abs(feats).max())
    np.testing.assert_allclose(probs, expected["probs"], rtol=1e-3, atol=1e-6)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)


def _weights_snapshot(model) -> dict[str, np.ndarray]:
    return {n: v.numpy() for n, v in iv4.slim_variables(model).items()}


def test_unknown_variables_fail_loudly(slim, model, tmp_path):
    _, values, *_ = slim
    extra = {"InceptionV4/Mixed_8a/Branch_0/Conv2d_0a_1x1/weights": np.zeros((1, 1, 4, 4), np.float32),
             "InceptionV4/AuxLogits/Conv2d_9z/weights": np.zeros((3,), np.float32)}
    ckpt = write_v2(tmp_path / "extra.ckpt", values | extra)
    before = _weights_snapshot(model)
    with pytest.raises(UserError) as e:
        iv4.load_slim_checkpoint(model, ckpt)
    msg = str(e.value)
    assert "2 unused" in msg and "0 missing" in msg
    for name in extra:
        assert name in msg
    after = _weights_snapshot(model)
    assert all(np.array_equal(before[n], after[n]) for n in before)


def test_missing_and_misshapen_variables_fail_loudly(slim, model, tmp_path):
    _, values, *_ = slim
    broken = dict(values)
    del broken["InceptionV4/Mixed_6e/Branch_2/Conv2d_0d_7x1/BatchNorm/moving_variance"]
    del broken["InceptionV4/Logits/Logits/biases"]
    broken["InceptionV4/Mixed_7c/Branch_1/Conv2d_0b_1x3/weights"] = np.zeros((3, 1, 384, 256), np.float32)
    broken["InceptionV4/AuxLogits/Aux_logits/weights"] = np.zeros((768, 1000), np.float32)
    ckpt = write_v2(tmp_path / "broken.ckpt", broken)
    with pytest.raises(UserError) as e:
        iv4.load_slim_checkpoint(model, ckpt)
    msg = str(e.value)
    assert "2 missing" in msg and "2 shape mismatch" in msg and "0 unused" in msg
    for name in ("Mixed_6e/Branch_2/Conv2d_0d_7x1/BatchNorm/moving_variance", "Logits/Logits/biases",
                 "Mixed_7c/Branch_1/Conv2d_0b_1x3/weights", "AuxLogits/Aux_logits/weights"):
        assert f"InceptionV4/{name}" in msg


def test_unreadable_checkpoint_is_a_user_error(tmp_path, model):
    (tmp_path / "inception_v4.ckpt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError):
        iv4.load_slim_checkpoint(model, tmp_path / "inception_v4.ckpt")
    with pytest.raises(UserError):
        iv4.find_checkpoint(tmp_path / "nowhere")


def test_find_checkpoint_v1_and_v2(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "inception_v4.ckpt").write_bytes(b"x")
    assert iv4.find_checkpoint(tmp_path / "a") == str(tmp_path / "a" / "inception_v4.ckpt")
    (tmp_path / "b" / "sub").mkdir(parents=True)
    (tmp_path / "b" / "sub" / "inception_v4.ckpt.index").write_bytes(b"x")
    assert iv4.find_checkpoint(tmp_path / "b") == str(tmp_path / "b" / "sub" / "inception_v4.ckpt")


def test_weights_cache_roundtrip(slim, model, tmp_path, monkeypatch):
    _, values, ckpt, images, expected = slim
    cached = iv4.load_weights(model, ckpt, tmp_path)
    assert cached is not None and cached.is_file()
    assert cached.parent == tmp_path / "weights"
    assert cached.name == f"inception_v4-{iv4.checkpoint_digest(ckpt)[:16]}.weights.h5"
    assert [p.name for p in cached.parent.iterdir()] == [cached.name]      # no temp file left
    for v in iv4.slim_variables(model).values():                          # scramble, then reload
        v.assign(np.zeros(v.shape, np.float32))

    def no_conversion(*a, **k):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(iv4, "load_slim_checkpoint", no_conversion)
    assert iv4.load_weights(model, ckpt, tmp_path) == cached
    for name, var in iv4.slim_variables(model).items():
        np.testing.assert_array_equal(var.numpy(), values[name], err_msg=name)


def test_build_from_fetched_checkpoint(slim, model, tmp_path, monkeypatch):
    """The load_model hook: fetch.ensure -> inception_v4.ckpt -> model with those weights.

    The network itself is the shared module model (building another costs ~10 s);
    the builder's arguments are checked instead.
    """
    _, values, ckpt, *_ = slim
    calls, built = [], []

    def ensure(name, root, *, allow_download=True, from_path=None, progress=True):
        calls.append((name, root, allow_download))
        return Path(ckpt).parent

    def builder(num_classes, **kwargs):
        built.append((num_classes, kwargs))
        return model

    from tlreport.artifacts import install, registry

    monkeypatch.setattr(install, "ensure", ensure)
    monkeypatch.setattr(registry, "data_root", lambda root=None: Path(root) if root else tmp_path / "data")
    monkeypatch.setattr(iv4, "build_inception_v4", builder)

    def load_weights(m, prefix, cache_dir):            # the cache itself: test_weights_cache_roundtrip
        loaded.append((prefix, cache_dir))
        iv4.load_slim_checkpoint(m, prefix)

    loaded: list = []
    monkeypatch.setattr(iv4, "load_weights", load_weights)
    for v in iv4.slim_variables(model).values():
        v.assign(np.zeros(v.shape, np.float32))

    spec = get_spec("inception_v4")
    assert iv4.build(spec, cache_dir=tmp_path / "cache") is model
    assert calls == [("inception_v4", tmp_path / "data", True)]
    assert iv4.build(spec, cache_dir=tmp_path / "cache", data_root=str(tmp_path / "mine")) is model
    assert calls[-1] == ("inception_v4", tmp_path / "mine", True)          # the config's data_root
    calls.pop(), loaded.pop(), built.pop()
    assert built == [(1001, {"input_size": 299, "mean": spec.mean, "std": spec.std, "precision": "float32"})]
    assert loaded == [(ckpt, tmp_path / "cache")]
    for name, var in iv4.slim_variables(model).items():
        np.testing.assert_array_equal(var.numpy(), values[name], err_msg=name)

    out = model(np.random.default_rng(1).uniform(0, 255, (1, 299, 299, 3)).astype(np.float32))
    assert out["features"].shape == (1, spec.feature_dim) == (1, 1536)
    assert out["probs"].shape == (1, spec.num_classes) == (1, 1001)
    np.testing.assert_allclose(out["probs"].numpy().sum(), 1.0, atol=1e-5)

    # random_weights: no fetch, no loading
    calls.clear()
    assert iv4.build(spec, cache_dir=tmp_path / "cache2", random_weights=True) is model
    assert calls == [] and not (tmp_path / "cache2").exists()


def test_real_builder_input_and_precision():
    """The 299x299 functional graph's input, and the bfloat16 policy (outputs stay float32)."""
    small = iv4.build_inception_v4(10, input_size=299, precision="bfloat16")
    assert small.input.shape[1:] == (299, 299, 3)
    assert small.get_layer("InceptionV4.Conv2d_1a_3x3").compute_dtype == "bfloat16"
    assert small.get_layer("InceptionV4.Conv2d_1a_3x3").kernel.dtype == "float32"
    assert small.output["features"].dtype == "float32" and small.output["probs"].dtype == "float32"
    assert small.output["probs"].shape[1:] == (10,)
    with pytest.raises(ValueError):
        iv4.build_inception_v4(precision="float16")
