"""Inception v4: slim checkpoint mapping and an independent forward pass.

The expected checkpoint (names, shapes) and the reference forward pass come
from a table of TF-slim's ``nets/inception_v4.py`` written here, evaluated with
raw ``tf.nn`` ops and hand-written pooling — not from the Keras model.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from tlreport.backbones import get_spec  # noqa: E402
from tlreport.backbones import inception_v4 as iv4  # noqa: E402
from tlreport.errors import UserError  # noqa: E402

EPS = 1e-3
NUM_CLASSES = 1001

# ---- slim's blocks as data.  A branch is a list of steps:
#   (scope, out_channels, kh, kw, stride, padding)   slim.conv2d + batch_norm + relu
#   ("avg",) 3x3/1 SAME avg pool; ("max",) 3x3/2 VALID max pool
#   ("split", step_a, step_b)                         both convs on the same input, concatenated
C = tuple[str, int, int, int, int, str]


def c(scope: str, out: int, kh: int, kw: int, stride: int = 1, padding: str = "SAME") -> C:
    return (scope, out, kh, kw, stride, padding)


MIXED_3A = [[("max",)], [c("Conv2d_0a_3x3", 96, 3, 3, 2, "VALID")]]
MIXED_4A = [
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_1a_3x3", 96, 3, 3, 1, "VALID")],
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_0b_1x7", 64, 1, 7), c("Conv2d_0c_7x1", 64, 7, 1),
     c("Conv2d_1a_3x3", 96, 3, 3, 1, "VALID")],
]
MIXED_5A = [[c("Conv2d_1a_3x3", 192, 3, 3, 2, "VALID")], [("max",)]]
INCEPTION_A = [
    [c("Conv2d_0a_1x1", 96, 1, 1)],
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_0b_3x3", 96, 3, 3)],
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_0b_3x3", 96, 3, 3), c("Conv2d_0c_3x3", 96, 3, 3)],
    [("avg",), c("Conv2d_0b_1x1", 96, 1, 1)],
]
REDUCTION_A = [
    [c("Conv2d_1a_3x3", 384, 3, 3, 2, "VALID")],
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_0b_3x3", 224, 3, 3), c("Conv2d_1a_3x3", 256, 3, 3, 2, "VALID")],
    [("max",)],
]
INCEPTION_B = [
    [c("Conv2d_0a_1x1", 384, 1, 1)],
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_0b_1x7", 224, 1, 7), c("Conv2d_0c_7x1", 256, 7, 1)],
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_0b_7x1", 192, 7, 1), c("Conv2d_0c_1x7", 224, 1, 7),
     c("Conv2d_0d_7x1", 224, 7, 1), c("Conv2d_0e_1x7", 256, 1, 7)],
    [("avg",), c("Conv2d_0b_1x1", 128, 1, 1)],
]
REDUCTION_B = [
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_1a_3x3", 192, 3, 3, 2, "VALID")],
    [c("Conv2d_0a_1x1", 256, 1, 1), c("Conv2d_0b_1x7", 256, 1, 7), c("Conv2d_0c_7x1", 320, 7, 1),
     c("Conv2d_1a_3x3", 320, 3, 3, 2, "VALID")],
    [("max",)],
]
INCEPTION_C = [
    [c("Conv2d_0a_1x1", 256, 1, 1)],
    [c("Conv2d_0a_1x1", 384, 1, 1), ("split", c("Conv2d_0b_1x3", 256, 1, 3), c("Conv2d_0c_3x1", 256, 3, 1))],
    [c("Conv2d_0a_1x1", 384, 1, 1), c("Conv2d_0b_3x1", 448, 3, 1), c("Conv2d_0c_1x3", 512, 1, 3),
     ("split", c("Conv2d_0d_1x3", 256, 1, 3), c("Conv2d_0e_3x1", 256, 3, 1))],
    [("avg",), c("Conv2d_0b_1x1", 256, 1, 1)],
]
STEM = [c("Conv2d_1a_3x3", 32, 3, 3, 2, "VALID"), c("Conv2d_2a_3x3", 32, 3, 3, 1, "VALID"),
        c("Conv2d_2b_3x3", 64, 3, 3)]
BLOCKS = ([("Mixed_3a", MIXED_3A), ("Mixed_4a", MIXED_4A), ("Mixed_5a", MIXED_5A)]
          + [(f"Mixed_5{x}", INCEPTION_A) for x in "bcde"] + [("Mixed_6a", REDUCTION_A)]
          + [(f"Mixed_6{x}", INCEPTION_B) for x in "bcdefgh"] + [("Mixed_7a", REDUCTION_B)]
          + [(f"Mixed_7{x}", INCEPTION_C) for x in "bcd"])
# slim names the branches by position, except the Mixed_3a/5a pools which carry their own scope
POOL_SCOPES = {"max": "MaxPool", "avg": "AvgPool"}


class SlimReference:
    """Walks the table: ``init`` draws the checkpoint values, ``__call__`` runs raw TF ops on them."""

    def __init__(self, rng: np.random.Generator | None = None):
        self.rng = rng
        self.values: dict[str, np.ndarray] = {}

    def _conv(self, x, scope: str, step: C):
        _, out, kh, kw, stride, padding = step
        name = f"InceptionV4/{scope}"
        cin = int(x.shape[-1])
        if self.rng is not None and f"{name}/weights" not in self.values:
            r = self.rng
            self.values[f"{name}/weights"] = (r.standard_normal((kh, kw, cin, out)) *
                                             np.sqrt(2.0 / (kh * kw * cin))).astype(np.float32)
            self.values[f"{name}/BatchNorm/beta"] = (0.1 * r.standard_normal(out)).astype(np.float32)
            self.values[f"{name}/BatchNorm/moving_mean"] = (0.1 * r.standard_normal(out)).astype(np.float32)
            self.values[f"{name}/BatchNorm/moving_variance"] = r.uniform(0.5, 2.0, out).astype(np.float32)
        w = self.values[f"{name}/weights"]
        assert w.shape == (kh, kw, cin, out), name
        y = tf.nn.conv2d(x, w, strides=stride, padding=padding)
        mean = self.values[f"{name}/BatchNorm/moving_mean"]
        var = self.values[f"{name}/BatchNorm/moving_variance"]
        beta = self.values[f"{name}/BatchNorm/beta"]
        return tf.nn.relu((y - mean) / np.sqrt(var + EPS) + beta)

    @staticmethod
    def _avg_pool_same(x):
        """3x3 stride 1 SAME average, padded cells excluded (TF semantics), by explicit shifts."""
        h, w = int(x.shape[1]), int(x.shape[2])
        xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        ones = tf.pad(tf.ones_like(x[..., :1]), [[0, 0], [1, 1], [1, 1], [0, 0]])
        total = sum(xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
        count = sum(ones[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
        return total / count

    @staticmethod
    def _max_pool_valid(x):
        ho, wo = (int(x.shape[1]) - 3) // 2 + 1, (int(x.shape[2]) - 3) // 2 + 1
        parts = [x[:, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2] for i in range(3) for j in range(3)]
        return tf.reduce_max(tf.stack(parts), axis=0)

    def block(self, x, name: str, table):
        outs = []
        for b, branch in enumerate(table):
            y = x
            for step in branch:
                if step[0] == "max":
                    y = self._max_pool_valid(y)
                elif step[0] == "avg":
                    y = self._avg_pool_same(y)
                elif step[0] == "split":
                    y = tf.concat([self._conv(y, f"{name}/Branch_{b}/{s[0]}", s) for s in step[1:]], -1)
                else:
                    y = self._conv(y, f"{name}/Branch_{b}/{step[0]}", step)
            outs.append(y)
        return tf.concat(outs, -1)

    def __call__(self, images: np.ndarray, until: str | None = None) -> dict[str, np.ndarray]:
        x = tf.constant((images - 127.5) / 127.5, tf.float32)
        for step in STEM:
            x = self._conv(x, step[0], step)
        for name, table in BLOCKS:
            x = self.block(x, name, table)
            if name == until:
                return {"net": x.numpy()}
        feats = tf.reduce_mean(x, axis=[1, 2]).numpy()
        if self.rng is not None and "InceptionV4/Logits/Logits/weights" not in self.values:
            self.values["InceptionV4/Logits/Logits/weights"] = (
                0.01 * self.rng.standard_normal((1536, NUM_CLASSES))).astype(np.float32)
            self.values["InceptionV4/Logits/Logits/biases"] = (
                0.1 * self.rng.standard_normal(NUM_CLASSES)).astype(np.float32)
        logits = feats.astype(np.float64) @ self.values["InceptionV4/Logits/Logits/weights"] \
            + self.values["InceptionV4/Logits/Logits/biases"]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return {"features": feats, "probs": e / e.sum(1, keepdims=True)}


def aux_values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """slim's AuxLogits head at 299: 17x17x1024 -> avgpool 5/3 -> 1x1x128 -> 5x5x768 VALID -> FC."""
    out = {}
    for scope, shape in (("Conv2d_1b_1x1", (1, 1, 1024, 128)), ("Conv2d_2a", (5, 5, 128, 768))):
        out[f"InceptionV4/AuxLogits/{scope}/weights"] = rng.standard_normal(shape).astype(np.float32)
        for leaf in ("beta", "moving_mean", "moving_variance"):
            out[f"InceptionV4/AuxLogits/{scope}/BatchNorm/{leaf}"] = rng.random(shape[-1]).astype(np.float32)
    out["InceptionV4/AuxLogits/Aux_logits/weights"] = rng.standard_normal((768, NUM_CLASSES)).astype(np.float32)
    out["InceptionV4/AuxLogits/Aux_logits/biases"] = rng.standard_normal(NUM_CLASSES).astype(np.float32)
    return out


def write_v1(path: Path, values: dict[str, np.ndarray]) -> str:
    """A V1 (single-file) checkpoint, the format of inception_v4_2016_09_09.tar.gz."""
    names = sorted(values)
    tf.raw_ops.Save(filename=str(path), tensor_names=names, data=[tf.constant(values[n]) for n in names])
    return str(path)


def write_v2(prefix: Path, values: dict[str, np.ndarray]) -> str:
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
    return str(prefix)


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
    fake = types.ModuleType("tlreport.fetch")

    def ensure(name, root, *, allow_download=True, from_path=None, progress=True):
        calls.append((name, root, allow_download))
        return Path(ckpt).parent

    def builder(num_classes, **kwargs):
        built.append((num_classes, kwargs))
        return model

    fake.ensure = ensure
    fake.data_root = lambda root=None: Path(root) if root else tmp_path / "data"
    import tlreport
    monkeypatch.setitem(sys.modules, "tlreport.fetch", fake)
    monkeypatch.setattr(tlreport, "fetch", fake, raising=False)
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
