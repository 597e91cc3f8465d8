"""Extraction on a real local Ray cluster (``features.runner = "ray"``): same features and tables as a
local build, a worker killed mid-run, an interrupted run resumed, and Ray absent."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
import zlib
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import run_cli
from helpers.drawn import draw
from PIL import Image

from tlreport.backbones import get_spec
from tlreport.backbones.identity import weights_identity
from tlreport.config import load_config
from tlreport.datasets.scan import scan_dataset
from tlreport.errors import UserError
from tlreport.features.cache import FeatureStore, backbone_key
from tlreport.features.engines import load_extractor
from tlreport.features.extract import extract_features

pytestmark = pytest.mark.slow

CONFIG = """
seed = 7
[post]
title = "Ray test"
slug = "ray"
[classify]
enabled = false
[dataset]
path = "data"
[features]
batch_size = 4
{runner}
[train]
backbone = "tiny_random"
epochs = 10
patience = 5
batch_size = 16
grid_size = 2
[experiments]
backbones = ["tiny_random"]
heads = ["softmax_sgd", "logreg"]
n_splits = 2
[[experiments.tables]]
dataset = "data"
name = "Colours"
settings = [3, 5]
test_cap = 4
"""


@pytest.fixture(scope="module")
def cluster():
    """A real Ray cluster on this machine: a head and two one-CPU worker slots."""
    ray = pytest.importorskip("ray", reason="the [test] extra installs Ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


# close colours under heavy noise: classes overlap, so the tables are not all 100 % and can disagree
NEAR_CLASSES = {"grey": (120, 120, 120), "warm": (132, 120, 112), "cool": (112, 122, 134), "green": (116, 132, 116)}


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ray-data")
    for c, rgb in NEAR_CLASSES.items():
        for i in range(10):
            p = draw(root / "data", c, rgb, i)
            a = np.asarray(Image.open(p)).astype(np.int16)
            noise = np.random.default_rng(zlib.crc32(p.name.encode() + c.encode())).normal(0, 40, a.shape)
            Image.fromarray(np.clip(a + noise, 0, 255).astype(np.uint8)).save(p)
    return root


def _descends_from_us(pid: int) -> bool:
    """Whether ``pid`` is a descendant of this test process (its Ray cluster's workers are), not of
    another Ray cluster on the machine."""
    me = os.getpid()
    while pid > 1:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])   # the parent: the field after the state
        if pid == me:
            return True
    return False


def _worker_pids(busy: bool = False) -> list[int]:
    """This cluster's FeatureWorker actors; ``busy``: those running a batch now (Ray titles a worker
    ``ray::FeatureWorker`` when idle, ``ray::FeatureWorker.run`` while it runs one)."""
    title = b"ray::FeatureWorker.run" if busy else b"ray::FeatureWorker"
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if (d / "cmdline").read_bytes().startswith(title) and _descends_from_us(int(d.name)):
                    pids.append(int(d.name))
            except OSError:
                pass
    return sorted(pids)


def _ray_batches(manifest, spec, store_dir: Path, **kw):
    from tlreport.features.ray_runner import ray_feature_batches

    return partial(ray_feature_batches, root=manifest.root, spec=spec, address="", workers=2, batch_size=4,
                   max_pixels=40_000_000, cache_dir=store_dir, data_root=None,
                   weights_sha256=weights_identity(spec), key=backbone_key(spec), **kw)


def _local_features(manifest, spec, tmp_path: Path) -> np.ndarray:
    model = load_extractor(spec, cache_dir=tmp_path / "cache", data_root=None, key=backbone_key(spec))
    return extract_features(manifest, spec, FeatureStore(tmp_path / "local"), model=model, batch_size=4,
                            progress=False)


def test_a_killed_worker_costs_its_batch_and_the_run_finishes_with_the_local_features(cluster, images, tmp_path,
                                                                                      monkeypatch):
    if not Path("/proc/self/stat").exists():
        pytest.skip("finds Ray's worker processes through /proc")
    from tlreport.features import ray_runner

    class SlowWorker(ray_runner.FeatureWorker):
        """A worker whose batches last long enough to be caught running one: tiny_random's take
        milliseconds, and on a loaded machine the workers could finish every queued batch before the
        first scan of /proc below.  Defined here, so Ray ships it to the workers by value."""

        def run(self, blobs):
            time.sleep(0.5)
            return super().run(blobs)

    SlowWorker.__name__ = SlowWorker.__qualname__ = "FeatureWorker"   # Ray titles its processes by it
    monkeypatch.setattr(ray_runner, "FeatureWorker", SlowWorker)
    spec = get_spec("tiny_random")
    m = scan_dataset(images / "data")
    done: list[int] = []
    killed: list[int] = []
    seen: set[int] = set()

    def on_batch(n: int) -> None:
        done.append(n)
        seen.update(_worker_pids())
        if not killed:                              # kill a worker while it runs a batch
            deadline = time.monotonic() + 10
            while not killed and time.monotonic() < deadline:
                busy = _worker_pids(busy=True)
                if busy:
                    os.kill(busy[0], signal.SIGKILL)
                    killed.append(busy[0])
            assert killed, "no worker was running a batch"

    store = FeatureStore(tmp_path / "ray")
    x = extract_features(m, spec, store, model=None, progress=False, on_batch=on_batch,
                         batches=_ray_batches(m, spec, tmp_path / "cache"))
    # Ray started a new process for the killed actor, and the batches it held came back from it
    assert killed[0] not in _worker_pids() and len(seen - set(killed)) >= 2, (killed, seen)
    assert sum(done) == 40
    np.testing.assert_allclose(x, _local_features(m, spec, tmp_path), atol=1e-5)
    found, _ = store.lookup(backbone_key(spec), [e.sha256 for e in m.entries])
    assert found.all()


def test_an_interrupted_run_keeps_what_came_back_and_the_rerun_sends_only_the_rest(cluster, images, tmp_path):
    spec = get_spec("tiny_random")
    m = scan_dataset(images / "data")
    store = FeatureStore(tmp_path / "ray")
    done: list[int] = []

    def stop_after_three(n: int) -> None:
        done.append(n)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        extract_features(m, spec, store, model=None, progress=False, on_batch=stop_after_three,
                         batches=_ray_batches(m, spec, tmp_path / "cache"), shard_size=4)
    found, _ = store.lookup(backbone_key(spec), [e.sha256 for e in m.entries])
    assert found.sum() == 12
    deadline = time.monotonic() + 30                # the interrupted run takes its workers down
    while _worker_pids() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _worker_pids()

    again: list[int] = []
    x = extract_features(m, spec, store, model=None, progress=False, on_batch=again.append,
                         batches=_ray_batches(m, spec, tmp_path / "cache"))
    assert sum(again) == 28
    np.testing.assert_allclose(x, _local_features(m, spec, tmp_path), atol=1e-5)


def test_a_worker_with_other_weights_is_one_line_naming_both_hashes(cluster, images, tmp_path):
    spec = get_spec("tiny_random")
    m = scan_dataset(images / "data")
    batches = _ray_batches(m, spec, tmp_path / "cache")
    batches = partial(batches, weights_sha256="0" * 64)
    with pytest.raises(UserError, match=r"tiny_random: this worker's weights have sha256 \S+, the build's "
                                        r"000000000000"):
        extract_features(m, spec, FeatureStore(tmp_path / "ray"), model=None, progress=False, batches=batches)


def _post_tables(root: Path) -> list[str]:
    """This build's table rows (the seed's quoted, not-run tables follow them in the post)."""
    post = next((root / "site" / "_posts").glob("*-ray.md")).read_text()
    return [line for line in post.splitlines() if line.startswith("| tiny random network") and "±" in line]


def test_a_build_on_the_cluster_gives_the_local_build_s_tables(cluster, images, tmp_path):
    from tlreport.pipeline import build

    roots = {}
    for runner in ("local", "ray"):
        root = tmp_path / runner
        shutil.copytree(images / "data", root / "data")
        (root / "tlreport.toml").write_text(CONFIG.format(runner=f'runner = "{runner}"'))
        r = build(load_config(root / "tlreport.toml"), quiet=True)
        assert r.counters["features.extracted.tiny_random"] == 40
        roots[runner] = root
    tables = _post_tables(roots["local"])
    assert len(tables) == 2 and not all("100.0 ± 0.0" in t for t in tables), tables
    assert _post_tables(roots["ray"]) == tables
    post = {k: next((r / "site" / "_posts").glob("*-ray.md")).read_text() for k, r in roots.items()}
    assert "in float32 on a Ray cluster (2 workers of 1 CPU, 2 CPUs in all)." in post["ray"]
    assert "Features computed by TensorFlow in float32.\n" in post["local"]   # the machine line names the CPU


def test_the_ray_runner_without_ray_is_one_line_naming_the_install(images, tmp_path, monkeypatch):
    root = tmp_path / "p"
    shutil.copytree(images / "data", root / "data")
    (root / "tlreport.toml").write_text(CONFIG.format(runner=""))
    code = ("import sys; sys.modules['ray'] = None; from tlreport.cli import main; "
            "sys.exit(main(['build', '--ray', '127.0.0.1:6379']))")
    import subprocess

    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("tlreport: features.runner = 'ray' needs Ray: "
                                                 "pip install -e '.[ray]' (or pip install 'ray>=2.9')")
    assert "Traceback" not in r.stderr
    # nothing was missing on the second try once a local build has cached the features: no Ray needed
    assert run_cli("build", cwd=root).returncode == 0
    r = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr


def test_the_grid_as_ray_tasks_gives_the_rows_of_a_local_run(cluster):
    from tlreport.heads.grid import run_grid

    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), 12)
    feats = {"f": (rng.normal(0, 1, (60, 16)) + labels[:, None] * 0.35).astype(np.float32)}
    kw = dict(settings=[3, 6], test_cap=5, n_splits=2, seed=11, heads=("softmax_sgd", "logreg"))
    local = run_grid(feats, labels, [f"c{i}" for i in range(5)], **kw).drop(columns="seconds")
    on_ray = run_grid(feats, labels, [f"c{i}" for i in range(5)], ray_address="", **kw).drop(columns="seconds")
    assert 0.3 < local["mean_per_class_accuracy"].mean() < 0.99     # not a trivial table
    assert len(local) == 8
    pd.testing.assert_frame_equal(on_ray, local)


def test_more_workers_asked_for_than_the_cluster_has_cpus_still_finishes(cluster, images, tmp_path):
    """ray_workers = 8 on 2 CPUs: the pool is capped at 2 (an actor Ray cannot place would hold its
    batches forever)."""
    spec = get_spec("tiny_random")
    m = scan_dataset(images / "data")
    lines: list[str] = []
    batches = partial(_ray_batches(m, spec, tmp_path / "cache"), workers=8, log=lines.append)
    x = extract_features(m, spec, FeatureStore(tmp_path / "ray"), model=None, progress=False, batches=batches)
    assert lines == ["features: tiny_random on a Ray cluster (2 workers of 1 CPU, 2 CPUs in all)"]
    np.testing.assert_allclose(x, _local_features(m, spec, tmp_path), atol=1e-5)


def test_a_worker_keeps_its_model_alive_between_batches(images, tmp_path):
    """batch_function holds a Keras model weakly; the worker must hold it (a real build on Ray once
    failed with 'NoneType' object is not callable after the model was collected)."""
    import gc

    from tlreport.features.ray_runner import FeatureWorker

    spec = get_spec("tiny_random")
    worker = FeatureWorker(spec, cache_dir=str(tmp_path / "cache"), data_root=None,
                           weights_sha256=weights_identity(spec), key=backbone_key(spec),
                           max_pixels=40_000_000, threads=1)
    gc.collect()
    blobs = [p.read_bytes() for p in sorted((images / "data" / "grey").iterdir())[:3]]
    feats, status = worker.run(blobs)
    assert feats.shape == (3, spec.feature_dim) and status.tolist() == [0, 0, 0]
