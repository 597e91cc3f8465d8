"""The OpenVINO extraction engine: its features against TensorFlow's, its cache, its telemetry, its errors."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from tlreport.backbones import get_spec, load_model
from tlreport.errors import UserError
from tlreport.features import engines
from tlreport.features.cache import backbone_key
from tlreport.features.extract import batch_function

# not importorskip: importing openvino before tlreport blocks its telemetry would start the telemetry
pytestmark = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                reason="the [test] extra installs OpenVINO")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """tiny_random's Keras model, and its OpenVINO conversion in a fresh cache (HOME moved to a temp dir)."""
    home = tmp_path_factory.mktemp("home")
    old = os.environ.get("HOME")
    os.environ["HOME"] = str(home)
    try:
        spec = get_spec("tiny_random")
        cache = tmp_path_factory.mktemp("cache")
        net = load_model(spec, cache_dir=cache)
        key = backbone_key(spec.with_engine("openvino"))
        ov_net = engines.openvino_backbone(spec.with_engine("openvino"), build_keras=lambda: net, cache_dir=cache,
                                           key=key)
        yield spec, net, ov_net, cache, key, home
    finally:
        if old is None:
            os.environ.pop("HOME", None)
        else:
            os.environ["HOME"] = old


def _images(spec, n=24, seed=0):
    s = spec.input_size
    return np.random.default_rng(seed).integers(0, 256, (n, s, s, 3), dtype=np.uint8)


def test_openvino_features_match_tensorflow(tiny):
    spec, net, ov_net, *_ = tiny
    x = _images(spec)
    ref = batch_function(net, spec)(x)
    got = batch_function(ov_net, spec)(x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    assert float(np.abs(got - ref).max()) <= 1e-4
    assert not np.array_equal(batch_function(ov_net, spec)(_images(spec, seed=1)), got)   # it reads its input


def test_an_image_s_features_do_not_depend_on_its_batch(tiny):
    """Each image is its own request on the streams: the same bits alone, in a batch of 24, or of 5."""
    spec, _, ov_net, *_ = tiny
    x = _images(spec).astype(np.float32)
    whole = ov_net(x)["features"]
    np.testing.assert_array_equal(ov_net(x[3:8])["features"], whole[3:8])
    np.testing.assert_array_equal(ov_net(x[10:11])["features"], whole[10:11])
    assert str(ov_net.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"


def test_the_conversion_is_cached_and_reused(tiny, monkeypatch):
    spec, net, ov_net, cache, key, _ = tiny
    assert ov_net.xml == engines.converted_path(cache, key) and ov_net.xml.is_file()
    assert ov_net.xml.with_suffix(".bin").is_file()
    monkeypatch.setattr(engines, "_convert", lambda *a: pytest.fail("converted again"))
    # a cached conversion needs no Keras model: building the three EfficientNet-Lites took 11 s
    again = engines.openvino_backbone(spec.with_engine("openvino"), cache_dir=cache, key=key,
                                      build_keras=lambda: pytest.fail("built the Keras model for a cached conversion"))
    x = _images(spec, 4)
    np.testing.assert_array_equal(again(x.astype(np.float32))["features"], ov_net(x.astype(np.float32))["features"])
    assert not list(cache.rglob(".convert-*"))                 # no half-written conversion left behind


def test_the_engine_is_part_of_the_feature_key_and_tensorflow_keys_are_unchanged():
    spec = get_spec("tiny_random")
    assert backbone_key(spec.with_engine("openvino")) != backbone_key(spec)
    assert spec.with_engine("tensorflow").fingerprint() == spec.fingerprint()
    # a new way of running an engine (a new revision) gets new keys: its bits differ
    from tlreport.backbones import spec as spec_module

    before = backbone_key(spec.with_engine("openvino"))
    spec_module.ENGINE_REVISIONS["openvino"] += 1
    try:
        assert backbone_key(spec.with_engine("openvino")) != before
    finally:
        spec_module.ENGINE_REVISIONS["openvino"] -= 1
    # TensorFlow's key is what it was before engines existed: the fingerprint has no "engine" entry
    import dataclasses
    import hashlib
    import json

    d = dataclasses.asdict(spec)
    for k in ("licence", "paper", "gflops", "hflip", "engine"):
        d.pop(k)
    assert spec.fingerprint() == hashlib.sha256(json.dumps(d, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def test_openvino_bf16_converts_the_float32_network_and_has_keys_of_its_own(tmp_path, monkeypatch):
    """OpenVINO's bf16 comes from its precision hint on the float32 network: Keras' mixed-bfloat16 network,
    converted, kept its bf16 casts and ran 1.5x slower.  Its features are new bits, so new keys."""
    from tlreport.backbones import spec as spec_module

    ov_bf16 = get_spec("efficientnet_lite0").with_engine("openvino").with_precision("bfloat16")
    net = engines.load_keras_model(ov_bf16, cache_dir=tmp_path, data_root=None)
    assert {layer.compute_dtype for layer in net.layers} == {"float32"}
    tf_bf16 = engines.load_keras_model(ov_bf16.with_engine("tensorflow"), cache_dir=tmp_path, data_root=None)
    assert "bfloat16" in {layer.compute_dtype for layer in tf_bf16.layers}      # TensorFlow's own bf16 is Keras'
    new_bf16, fp32 = backbone_key(ov_bf16), backbone_key(ov_bf16.with_precision("float32"))
    with monkeypatch.context() as m:
        m.delitem(spec_module.PRECISION_REVISIONS, ("openvino", "bfloat16"))
        assert backbone_key(ov_bf16) != new_bf16                                # the old way's entries stay apart
        assert backbone_key(ov_bf16.with_precision("float32")) == fp32          # float32's entries are untouched
    monkeypatch.setitem(spec_module.ENGINE_REVISIONS, "openvino", spec_module.ENGINE_REVISIONS["openvino"] + 1)
    assert backbone_key(ov_bf16) != new_bf16                                    # an engine bump reaches bf16 too


def test_no_telemetry_is_sent_or_written(tiny):
    *_, home = tiny
    import openvino.tools.ovc.telemetry_utils as tu

    assert tu.tm.__name__ == "openvino.tools.ovc.telemetry_stub"   # the converter's no-op stand-in
    assert sys.modules.get("openvino_telemetry") is None
    assert not (home / "intel").exists()                             # no consent file either


def test_without_openvino_the_engine_is_a_one_line_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(UserError, match=r"pip install -e '\.\[openvino\]'"):
        engines.openvino_version()


def test_auto_engine_is_openvino_where_installed_and_measured_faster_else_tensorflow(monkeypatch):
    assert engines.auto_engine({"avx2", "avx512f"}, gpu=False) == "openvino"   # the [test] extra installs it
    assert engines.auto_engine({"avx2"}, gpu=False) == "openvino"              # measured faster on AVX2 too
    assert engines.auto_engine({"sse4_2"}, gpu=False) == "tensorflow"          # not measured: the reference
    assert engines.auto_engine({"avx2", "avx512f"}, gpu=True) == "tensorflow"  # TensorFlow on the GPU
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "openvino" else real_find_spec(name, *a))
    assert engines.auto_engine({"avx2", "avx512f"}, gpu=False) == "tensorflow"  # not installed: the reference


def test_a_gpu_is_seen_only_with_tensorflow_s_cuda_build_and_a_driver(monkeypatch, tmp_path):
    from importlib import metadata

    def installed(*names):
        def distribution(name):
            if name in names:
                return object()
            raise metadata.PackageNotFoundError(name)
        return distribution

    monkeypatch.setattr(metadata, "distribution", installed("tensorflow-cpu"))
    assert engines.cuda_tensorflow() is False                      # the default install: CPU only
    monkeypatch.setattr(metadata, "distribution", installed("tensorflow"))
    assert engines.cuda_tensorflow() is Path("/dev/nvidiactl").exists()


def test_the_config_takes_engine_auto_and_the_build_resolves_it_to_a_named_engine():
    from tlreport.config import validate
    from tlreport.pipeline import feature_sets
    from tlreport.util import cpu

    cfg = validate({"features": {"engine": "auto"}})
    assert cfg.features.engine == "auto"
    expected = engines.auto_engine(cpu.cpu_flags())

    class Ctx:
        config = cfg

    assert feature_sets.resolved_spec(Ctx(), "tiny_random").engine == expected


def test_the_conversion_folder_is_one_flat_name_per_openvino_build(tmp_path, monkeypatch):
    """OpenVINO's version string holds slashes (``...-releases/2026/4``): they must not nest folders."""
    monkeypatch.setattr(engines, "openvino_version", lambda: "2026.4.1-22982-e213a147257-releases/2026/4")
    xml = engines.converted_path(tmp_path, "ab" * 32)
    assert xml.relative_to(tmp_path).parts == (
        "engines", "openvino-2026.4.1-22982-e213a147257-releases_2026_4", "ab" * 12, "model.xml")
    monkeypatch.setattr(engines, "openvino_version", lambda: "2025.0.0-1..\\x y")
    assert engines.converted_path(tmp_path, "cd" * 32).parent.parent.name == "openvino-2025.0.0-1.._x_y"
