"""Feature extraction and the content-addressed feature cache (offline, fake models)."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from helpers.features import SPEC
from helpers.images import jpeg_bytes, make_dataset, make_zoo, noise_image, save

from tlreport.datasets.images import load_rgb, prepare
from tlreport.datasets.scan import scan_dataset
from tlreport.errors import UserError
from tlreport.features.cache import FeatureStore, backbone_key
from tlreport.features.extract import (
    Extraction,
    batch_function,
    extract_features,
    extract_features_many,
    extract_shard,
)

REPO = Path(__file__).resolve().parents[2]


def fake_model(x: np.ndarray) -> dict[str, np.ndarray]:
    """Deterministic features of the pixels: per-channel means and the overall std."""
    assert x.dtype == np.float32 and x.shape[1:] == (16, 16, 3)
    return {"features": np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2, 3))[:, None]], axis=1)}


class Counter:
    def __init__(self) -> None:
        self.n = 0

    def __call__(self, k: int) -> None:
        self.n += k


def run(data: Path, store: FeatureStore, spec=SPEC, **kw) -> tuple[np.ndarray, int]:
    m = scan_dataset(data, progress=False)
    c = Counter()
    kw.setdefault("batch_size", 4)
    kw.setdefault("shard_size", 8)
    feats = extract_features(m, spec, store, model=fake_model, progress=False, on_batch=c, **kw)
    return feats, c.n


def expected(data: Path, spec=SPEC) -> np.ndarray:
    m = scan_dataset(data, progress=False)
    imgs = np.stack([prepare(load_rgb(p), spec) for p in m.paths()]).astype(np.float32)
    return fake_model(imgs)["features"]


def test_features_match_the_spec_preprocessing_and_loaders_agree(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 5, "b": 4})
    make_zoo(data)
    store = FeatureStore(tmp_path / "store")
    feats, n = run(data, store)
    assert n == 22 - 1  # the zoo's symlink duplicates pic.bmp: computed once
    np.testing.assert_allclose(feats, expected(data), rtol=1e-6)
    m = scan_dataset(data, progress=False)
    for loader in ("threads", "tfdata"):
        np.testing.assert_allclose(extract_shard(m.entries, m.root, SPEC, fake_model, batch_size=5, loader=loader),
                                   feats, rtol=1e-6)


def test_several_backbones_in_one_pass_decode_each_image_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              ) -> None:
    """extract_features_many: the features each job gets alone, each image decoded once for all jobs, and a
    job whose store entry already has some images runs its model on the others only."""
    from tlreport.datasets import images

    data = make_dataset(tmp_path / "data", {"a": 5, "b": 4})
    m = scan_dataset(data, progress=False)
    flip = SPEC.with_flip()

    def left_half(x: np.ndarray) -> dict[str, np.ndarray]:       # not mirror-invariant, unlike fake_model
        return {"features": np.concatenate([x[:, :, :8].mean(axis=(1, 2)), x.std(axis=(1, 2, 3))[:, None]], 1)}

    models = {"plain": fake_model, "mirror": left_half}
    alone = [extract_features(m, spec, FeatureStore(tmp_path / f"alone-{i}"), model=model, batch_size=4,
                              progress=False) for i, (spec, model) in enumerate(zip((SPEC, flip), models.values(), strict=True))]
    store = FeatureStore(tmp_path / "store")
    half = scan_dataset(data, progress=False, include=["a"])
    extract_features(half, flip, store, model=left_half, progress=False)       # the mirror has class a already
    decodes, seen = [], {"plain": 0, "mirror": 0}
    real = images.load_rgb
    monkeypatch.setattr(images, "load_rgb", lambda *a, **k: decodes.append(1) or real(*a, **k))

    def counting(name: str):
        def model(x: np.ndarray) -> dict[str, np.ndarray]:
            seen[name] += len(x)
            return models[name](x)
        return model

    counted = Counter()
    jobs = [Extraction(SPEC, counting("plain"), on_batch=counted), Extraction(flip, counting("mirror"))]
    together = extract_features_many(m, jobs, store, batch_size=4, shard_size=3, progress=False)
    assert len(decodes) == 9 and seen == {"plain": 9, "mirror": 4} and counted.n == 9
    for got, want in zip(together, alone, strict=True):
        np.testing.assert_array_equal(got, want)
    assert not np.array_equal(together[0], together[1])
    threads = extract_features_many(m, jobs, FeatureStore(tmp_path / "threads"), batch_size=3, loader="threads",
                                    progress=False)
    assert all(np.array_equal(a, b) for a, b in zip(threads, together, strict=True))      # the loaders agree
    decodes.clear()
    again = extract_features_many(m, jobs, store, progress=False)              # all cached: nothing decoded
    assert not decodes and all(np.array_equal(a, b) for a, b in zip(again, together, strict=True))


def test_a_failure_in_one_backbone_keeps_what_the_others_computed(tmp_path: Path) -> None:
    """In the one-pass extraction, rows a job computed are written even when a later job fails on the same batch."""
    data = make_dataset(tmp_path / "data", {"a": 5, "b": 4})
    m = scan_dataset(data, progress=False)

    def broken(x: np.ndarray) -> dict[str, np.ndarray]:
        raise RuntimeError("the second backbone fails")

    store = FeatureStore(tmp_path / "store")
    jobs = [Extraction(SPEC, fake_model), Extraction(SPEC.with_flip(), broken)]
    with pytest.raises(RuntimeError, match="second backbone"):
        extract_features_many(m, jobs, store, batch_size=4, progress=False)
    found, _ = store.lookup(backbone_key(SPEC), [e.sha256 for e in m.entries])
    assert found.sum() == 4                                   # the first batch's features of the first backbone


def test_cache_hits_when_files_are_added_renamed_and_removed(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 6, "b": 5})
    store = FeatureStore(tmp_path / "store")
    first, n = run(data, store)
    assert n == 11
    again, n = run(data, store)
    assert n == 0 and np.array_equal(again, first)
    for i in range(3):  # add 3 -> exactly 3
        save(noise_image(500 + i), data / "b" / f"new_{i}.jpg")
    _, n = run(data, store)
    assert n == 3
    (data / "a" / "img_002.jpg").rename(data / "b" / "moved.jpg")  # rename/move -> nothing
    (data / "a" / "img_003.jpg").rename(data / "a" / "renamed.jpg")
    feats, n = run(data, store)
    assert n == 0
    np.testing.assert_allclose(feats, expected(data), rtol=1e-6)
    for p in list((data / "b").glob("img_*.jpg"))[:2]:  # delete -> the rest stays valid
        p.unlink()
    feats, n = run(data, store)
    assert n == 0 and feats.shape == (12, 4)
    np.testing.assert_allclose(feats, expected(data), rtol=1e-6)
    (info,) = store.info()
    assert info.key == backbone_key(SPEC) and info.images == 14 and info.bytes > 0
    assert store.meta(info.key)["name"] == "fake"


def test_backbone_key_covers_precision_weights_and_dtype() -> None:
    keys = {backbone_key(SPEC), backbone_key(SPEC.with_precision("bfloat16")),
            backbone_key(SPEC, weights_sha256="random-seed-1"),
            backbone_key(dataclasses.replace(SPEC, extra={"feature_dtype": "float16"}))}
    assert len(keys) == 4
    assert backbone_key(SPEC) == backbone_key(dataclasses.replace(SPEC, licence="other", gflops=9.0))


def test_float16_storage(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 3})
    spec = dataclasses.replace(SPEC, extra={"feature_dtype": "float16"})
    store = FeatureStore(tmp_path / "store")
    first, n = run(data, store, spec)
    assert first.dtype == np.float32 and n == 3
    (npy,) = (tmp_path / "store" / backbone_key(spec)).glob("*.npy")
    assert np.load(npy, allow_pickle=False).dtype == np.float16
    again, n = run(data, store, spec)
    assert n == 0 and np.array_equal(first, again)  # a hit returns exactly what the miss returned
    np.testing.assert_allclose(first, expected(data, spec), rtol=2e-3)


@pytest.mark.parametrize("damage", ["flip", "truncate", "drop_npy", "index_without_sha256", "index_without_dim",
                                    "index_a_list"])
def test_corrupt_shard_is_reported_and_recomputed(tmp_path: Path, damage: str) -> None:
    data = make_dataset(tmp_path / "data", {"a": 10})
    store = FeatureStore(tmp_path / "store", report=lambda msg: None)
    first, n = run(data, store)
    assert n == 10
    shards = sorted((tmp_path / "store" / backbone_key(SPEC)).glob("*.npy"))
    assert len(shards) == 2  # shard_size 8, batch 4: rows 8 + 2
    victim = shards[0]
    raw = bytearray(victim.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0x40
        victim.write_bytes(bytes(raw))
    elif damage == "truncate":
        victim.write_bytes(bytes(raw[: len(raw) // 2]))
    elif damage == "drop_npy":
        victim.unlink()
    else:                                  # an index that parses but lacks what a lookup reads
        index = victim.with_suffix(".json")
        idx = json.loads(index.read_text())
        idx.pop("sha256" if damage == "index_without_sha256" else "dim")
        index.write_text(json.dumps([idx] if damage == "index_a_list" else idx))
    fresh = FeatureStore(tmp_path / "store", report=lambda msg: None)
    feats, n = run(data, fresh)
    assert n == 8
    assert len(fresh.problems) == 1 and victim.name[:-4] in fresh.problems[0]
    assert "recomputed" in fresh.problems[0]
    np.testing.assert_allclose(feats, first, rtol=1e-6)
    _, n = run(data, FeatureStore(tmp_path / "store"))
    assert n == 0


def test_corrupt_shard_warning_goes_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = make_dataset(tmp_path / "data", {"a": 3})
    run(data, FeatureStore(tmp_path / "store"))
    (npy,) = (tmp_path / "store" / backbone_key(SPEC)).glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-1] + b"\x00")
    _, n = run(data, FeatureStore(tmp_path / "store"))
    assert n == 3
    assert "warning: feature shard" in capsys.readouterr().err


def test_file_changed_after_scan_is_a_user_error_and_done_rows_are_kept(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 9})
    m = scan_dataset(data, progress=False)
    (data / "a" / "img_006.jpg").write_bytes(jpeg_bytes(4242))
    store = FeatureStore(tmp_path / "store")
    with pytest.raises(UserError, match="img_006.jpg: content changed since the dataset was scanned"):
        extract_features(m, SPEC, store, model=fake_model, batch_size=3, shard_size=100, progress=False)
    found, _ = store.lookup(backbone_key(SPEC), [e.sha256 for e in m.entries])
    assert found.tolist() == [True] * 6 + [False] * 3  # the two finished batches were flushed


def test_lookup_and_prune(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path)
    rows = np.arange(6, dtype=np.float32).reshape(3, 2)
    store.add_shard("k1", ["s1", "s2", "s3"], rows)
    store.add_shard("k2", ["s1"], rows[:1])
    found, got = store.lookup("k1", ["s3", "nope", "s1"])
    assert found.tolist() == [True, False, True]
    assert got[0].tolist() == [4, 5] and np.isnan(got[1]).all() and got[2].tolist() == [0, 1]
    found, got = store.lookup("missing", ["s1"])
    assert found.tolist() == [False] and got.shape == (1, 0)
    with pytest.raises(ValueError):
        store.add_shard("k1", ["a"], rows)
    (tmp_path / "k1" / ".x.npy.dead.tmp").write_bytes(b"junk")  # a killed writer's leftover
    assert store.prune(["k1"]) > 0
    assert [i.key for i in store.info()] == ["k1"]
    assert not list((tmp_path / "k1").glob(".*.tmp"))


def test_keras_model_is_wrapped_in_a_tf_function(tmp_path: Path) -> None:
    keras = pytest.importorskip("keras")
    inp = keras.Input((16, 16, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Rescaling(1 / 255.0)(inp))
    feats = keras.layers.Dense(4, name="feat")(pooled)
    model = keras.Model(inp, {"features": feats, "probs": keras.layers.Softmax()(feats)})
    data = make_dataset(tmp_path / "data", {"a": 5})
    m = scan_dataset(data, progress=False)
    got = extract_features(m, SPEC, FeatureStore(tmp_path / "store"), model=model, batch_size=2, progress=False)
    imgs = np.stack([prepare(load_rgb(p), SPEC) for p in m.paths()]).astype(np.float32)
    np.testing.assert_allclose(got, model.predict(imgs, verbose=0)["features"], rtol=1e-5, atol=1e-6)
    assert batch_function(model, SPEC) is batch_function(model, SPEC)  # traced once, reused


KILL_SCRIPT = """
import sys, time
import numpy as np
from tlreport.datasets.scan import scan_dataset
from tlreport.features.extract import extract_features
from tlreport.features.cache import FeatureStore

def slow_model(x):
    time.sleep(0.4)
    return {"features": np.concatenate([x.mean(axis=(1, 2)), x.std(axis=(1, 2, 3))[:, None]], axis=1)}

from helpers.features import SPEC
m = scan_dataset(sys.argv[1], progress=False)
extract_features(m, SPEC, FeatureStore(sys.argv[2]), model=slow_model, batch_size=4, shard_size=8,
                 progress=False)
print("finished")
"""


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 20, "b": 20})
    store_dir = tmp_path / "store"
    script = tmp_path / "extract_slowly.py"
    script.write_text(textwrap.dedent(KILL_SCRIPT))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO / "tests"), str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(script), str(data), str(store_dir)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    key_dir = store_dir / backbone_key(SPEC)
    deadline = time.monotonic() + 180
    try:
        while not [p for p in key_dir.glob("*.json") if p.name != "backbone.json"]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "no shard flushed in time"
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL and b"finished" not in out
    m = scan_dataset(data, progress=False)
    store = FeatureStore(store_dir)
    found, _ = store.lookup(backbone_key(SPEC), [e.sha256 for e in m.entries])
    done = int(found.sum())
    assert 8 <= done < 40 and done % 8 == 0, done
    feats, n = run(data, store)
    assert n == 40 - done  # only the remainder is computed
    np.testing.assert_allclose(feats, expected(data), rtol=1e-6)
    assert not store.problems


def test_store_files_hold_no_pickles(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 2})
    run(data, FeatureStore(tmp_path / "store"))
    for npy in (tmp_path / "store").rglob("*.npy"):
        arr = np.load(npy, allow_pickle=False)
        assert arr.dtype.kind == "f"
    shutil.rmtree(tmp_path / "store")


def test_a_read_only_store_reports_a_bad_shard_but_keeps_it(tmp_path: Path) -> None:
    data = make_dataset(tmp_path / "data", {"a": 3})
    run(data, FeatureStore(tmp_path / "store"))
    (npy,) = (tmp_path / "store" / backbone_key(SPEC)).glob("*.npy")
    npy.write_bytes(npy.read_bytes()[:-1] + b"\x00")
    m = scan_dataset(data, progress=False)
    looker = FeatureStore(tmp_path / "store", read_only=True, report=lambda msg: None)
    found, _ = looker.lookup(backbone_key(SPEC), [e.sha256 for e in m.entries])
    assert not found.any() and len(looker.problems) == 1
    assert npy.exists() and npy.with_suffix(".json").exists()      # a dry run or `cache info` deletes nothing


# features.precision = "auto" (no OpenVINO needed: these check the decision, not the engine)

def test_auto_precision_is_float32_on_every_cpu_kind_where_bf16_has_not_held_the_tables(monkeypatch):
    from tlreport.features import engines

    amx_xeon = frozenset({"avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile"})
    avx512_bf16_only = frozenset({"avx2", "avx512f", "avx512_bf16"})
    assert engines.auto_precision("openvino", amx_xeon) == "float32"           # two rows moved 0.16-0.17
    assert engines.auto_precision("openvino", avx512_bf16_only) == "float32"   # not checked
    # a kind that passes gets bf16 with OpenVINO, only where the CPU has all of its flags
    monkeypatch.setattr(engines, "BF16_TABLES_HELD", (frozenset({"avx512_bf16", "amx_bf16"}),))
    assert engines.auto_precision("openvino", amx_xeon) == "bfloat16"
    assert engines.auto_precision("openvino", avx512_bf16_only) == "float32"
    assert engines.auto_precision("tensorflow", amx_xeon) == "float32"         # Keras' bf16 was slower


def test_the_build_resolves_precision_auto_from_the_cpus_flags(monkeypatch):
    from tlreport.config import validate
    from tlreport.features import engines
    from tlreport.pipeline import feature_sets

    class Ctx:
        config = validate({"features": {"engine": "openvino", "precision": "auto"}})

    monkeypatch.setattr(feature_sets, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16", "amx_bf16"}))
    assert feature_sets.resolved_spec(Ctx(), "tiny_random").precision == "float32"
    monkeypatch.setattr(engines, "BF16_TABLES_HELD", (frozenset({"amx_bf16"}),))
    assert feature_sets.resolved_spec(Ctx(), "tiny_random").precision == "bfloat16"
    monkeypatch.setattr(feature_sets, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert feature_sets.resolved_spec(Ctx(), "tiny_random").precision == "float32"
