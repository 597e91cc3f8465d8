"""Interrupted, faulty and hostile builds: real subprocesses, real signals.

Faults are injected with ``TLREPORT_FAULT`` (see ``tlreport.util.faults.fault_point``):
``kill:<point>`` SIGKILLs the build there, ``enospc:<point>`` raises the error a
full disk raises.  After each, a plain rerun must complete, reuse what was
finished and produce exactly what an uninterrupted build produces.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from helpers.drawn import CLASSES, draw

from tlreport.datasets import scan as scan_module

pytestmark = pytest.mark.slow

CONFIG = """
seed = 3
[post]
title = "Reliability"
slug = "reliability"
[classify]
enabled = false
[dataset]
path = "data"
[features]
[train]
backbone = "tiny_random"
epochs = 8
batch_size = 16
grid_size = 2
[experiments]
enabled = false
"""


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    """An uninterrupted build to compare against."""
    root = tmp_path_factory.mktemp("ref")
    for c, rgb in list(CLASSES.items())[:3]:
        for i in range(8):
            draw(root / "data", c, rgb, i)
    (root / "tlreport.toml").write_text(CONFIG)
    r = run_cli("build", cwd=root)
    assert r.returncode == 0, r.stderr
    assert f"features: tiny_random on CPU ({os.cpu_count()} cores)" in r.stdout     # the device, named
    return root


def _fresh(reference: Path, tmp_path: Path) -> Path:
    p = tmp_path / "p"
    p.mkdir()
    shutil.copytree(reference / "data", p / "data")
    (p / "tlreport.toml").write_text(CONFIG)
    return p


def _results(root: Path) -> dict:
    train = json.loads(next((root / ".tlreport" / "stages" / "train").glob("*/train.json")).read_text())
    train.pop("train_seconds")
    return train


def _no_timings(post: str) -> str:
    """The post without wall times (they are provenance, not results)."""
    return re.sub(r"\d+ min \d+ s|\d+(?:\.\d+)? s\b", "<time>", post)


def _last(root: Path) -> dict:
    return json.loads((root / ".tlreport" / "last_build.json").read_text())


@pytest.mark.parametrize("point", ["train:before-commit", "publish:mid"])
def test_sigkill_then_rerun_completes_and_reuses_finished_work(reference, tmp_path, point):
    p = _fresh(reference, tmp_path)
    r = run_cli("build", cwd=p, env={"TLREPORT_FAULT": f"kill:{point}"})
    assert r.returncode == -signal.SIGKILL
    # nothing half-written is visible as a complete cache entry
    for entry in (p / ".tlreport" / "stages").glob("*/*"):
        assert entry.name.startswith(".tmp-") or (entry / "_complete.json").is_file()
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    last = _last(p)
    assert "features" not in last["ran"]                     # the features survived the kill
    if point == "publish:mid":
        assert last["ran"] == []                             # only the publish was redone
    assert _results(p) == _results(reference)
    post = "site/_posts/2026-11-28-reliability.md"
    assert _no_timings((p / post).read_text()) == _no_timings((reference / post).read_text())


def test_ctrl_c_is_one_line_and_the_rerun_reuses_finished_stages(reference, tmp_path):
    p = _fresh(reference, tmp_path)
    r = run_cli("build", cwd=p, env={"TLREPORT_FAULT": "int:train:before-commit"})
    assert r.returncode == 130 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "tlreport: interrupted; completed work is cached and will be reused"
    assert not list((p / ".tlreport" / "stages" / "train").glob(".tmp-*"))   # cleaned up, not trusted
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    assert _last(p)["ran"] == ["train", "figures", "render"]
    assert _results(p) == _results(reference)


def test_sigterm_is_met_as_ctrl_c_is(reference, tmp_path):
    """``timeout``, ``kill`` and a cancelled CI job send SIGTERM: one line, exit 143, and the same
    clean-up and reuse as Ctrl-C (the feature shards are flushed by the same interrupt)."""
    p = _fresh(reference, tmp_path)
    r = run_cli("build", cwd=p, env={"TLREPORT_FAULT": "term:train:before-commit"})
    assert r.returncode == 143 and "Traceback" not in r.stderr
    assert r.stderr.strip() == "tlreport: terminated; completed work is cached and will be reused"
    assert not list((p / ".tlreport" / "stages" / "train").glob(".tmp-*"))
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    assert _last(p)["ran"] == ["train", "figures", "render"]
    assert _results(p) == _results(reference)


def _without_root_powers() -> list[str] | None:
    """A command prefix that makes the build obey file permissions, or None if it cannot."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    # root without CAP_DAC_OVERRIDE/CAP_FOWNER is held to the mode bits like anyone else
    cmd = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner", "--", "true"]
    return cmd[:-1] if subprocess.run(cmd, capture_output=True).returncode == 0 else None


def _build_with_folder_locked(p: Path, folder: Path) -> subprocess.CompletedProcess:
    """``tlreport build`` in ``p`` as a user held to the mode bits, with ``folder`` read-only meanwhile."""
    prefix = _without_root_powers()
    if prefix is None:
        pytest.skip("cannot drop root's permission override here (no setpriv)")
    folder.chmod(0o500)
    try:
        return subprocess.run([*prefix, sys.executable, "-m", "tlreport", "build"], cwd=p, capture_output=True,
                              text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    finally:
        folder.chmod(0o700)


def test_unwritable_site_dir_is_one_line_before_any_work(reference, tmp_path):
    p = tmp_path / "p"
    shutil.copytree(reference, p)
    post = p / "site" / "_posts" / "2026-11-28-reliability.md"
    before = post.read_text()
    entries = sorted((p / ".tlreport" / "stages").glob("*/*"))
    (p / "tlreport.toml").write_text(CONFIG.replace("epochs = 8", "epochs = 9"))
    r = _build_with_folder_locked(p, p / "site" / "_posts")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip().startswith(f"tlreport: site_dir {p / 'site' / '_posts'} is not writable"), r.stderr
    assert sorted((p / ".tlreport" / "stages").glob("*/*")) == entries   # stopped before training, not after
    assert post.read_text() == before


def test_an_unwritable_stage_folder_is_one_line(reference, tmp_path):
    p = tmp_path / "p"
    shutil.copytree(reference, p)
    figures = p / ".tlreport" / "stages" / "figures"
    shutil.rmtree(figures)
    figures.mkdir()
    r = _build_with_folder_locked(p, figures)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stderr.strip() == f"tlreport: cannot write {figures}: Permission denied", r.stderr


@pytest.mark.parametrize("point", ["render:before-commit", "publish:mid"])
def test_a_full_disk_while_rendering_or_publishing_keeps_the_post_whole(reference, tmp_path, point):
    """One line, and the old post stays as it was: a render that fails leaves ``site/`` alone, and a
    publish puts the figures in before the post's markdown, so one stopped between them leaves the old
    post with everything it links to; the next build publishes the new one."""
    p = tmp_path / "p"
    shutil.copytree(reference, p)
    post = p / "site" / "_posts" / "2026-11-28-reliability.md"
    before = post.read_text()
    (p / "tlreport.toml").write_text(CONFIG.replace('title = "Reliability"', 'title = "Changed"'))
    r = run_cli("build", cwd=p, env={"TLREPORT_FAULT": f"enospc:{point}"})
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    where = p / ".tlreport" / "stages" / "render" if point.startswith("render") else p / "site" / "images"
    assert r.stderr.strip().startswith(f"tlreport: disk full while writing {where}"), r.stderr
    assert post.read_text() == before
    assert not list((p / ".tlreport" / "stages" / "render").glob(".tmp-*"))
    assert not list((p / "site").rglob(".*.tlreport-*"))                # no temporary copies left behind
    r = run_cli("build", cwd=p)
    assert r.returncode == 0 and 'title: "Changed"' in post.read_text()


def test_site_dir_that_cannot_be_created_is_one_line(reference, tmp_path):
    p = _fresh(reference, tmp_path)
    (p / "blocker").write_text("a file where a folder should be")
    (p / "tlreport.toml").write_text('site_dir = "blocker/site"\n' + CONFIG)
    r = run_cli("build", cwd=p)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip() == f"tlreport: site_dir {p / 'blocker' / 'site'} cannot be created: {p / 'blocker'} " \
                               "is not a folder"
    assert not (p / ".tlreport" / "stages").exists()                # no stage ran


def test_bad_files_in_the_dataset_are_skipped_counted_and_listed(reference, tmp_path):
    """Every bad-file kind, through a real build: one reported skip each, listed in the post."""
    from helpers.images import make_bad_files

    prefix = _without_root_powers()
    p = _fresh(reference, tmp_path)
    bad = make_bad_files(p / "data", label="red")         # 10 bad files, 5 ignored, 1 good
    (p / "data" / "red" / "empty.jpg").write_bytes(b"")
    obeys_modes = prefix is not None
    r = subprocess.run([*(prefix or []), sys.executable, "-m", "tlreport", "build"], cwd=p, capture_output=True,
                       text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3"), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    skipped = 11 if obeys_modes else 10
    assert f"{25 + (not obeys_modes)} images in 3 classes; {skipped} skipped" in r.stdout
    post = (p / "site" / "_posts" / "2026-11-28-reliability.md").read_text()
    kinds = {kind for name, (_, kind) in bad.items() if kind and (obeys_modes or name != "unreadable")}
    listed = re.findall(r"^\| red \| (.+?) \| (.+?) \|$", post, flags=re.M)
    assert len(listed) == skipped
    assert {reason.split(":")[0] for _, reason in listed} == kinds | {"empty file"}
    assert any("bomb.png" in f and "20000x20000" in why for f, why in listed)


def test_empty_class_is_an_error_naming_it(reference, tmp_path):
    p = _fresh(reference, tmp_path)
    (p / "data" / "empty class").mkdir()
    (p / "data" / "empty class" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0garbage")
    r = run_cli("build", cwd=p)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "empty class" in r.stderr


def test_impossible_protocol_setting_names_the_class(reference, tmp_path):
    p = _fresh(reference, tmp_path)
    cfg = CONFIG.replace("[experiments]\nenabled = false", """[experiments]
n_splits = 2
[[experiments.tables]]
dataset = "data"
settings = [8]
test_cap = 5""")
    (p / "tlreport.toml").write_text(cfg)
    r = run_cli("build", cwd=p)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert "'red' has 8 (too few for 8)" in r.stderr and "drop_short_classes = true" in r.stderr
    assert "lower the settings to at most 7" in r.stderr
    assert not (p / ".tlreport" / "stages").exists()        # said while planning, before any stage ran


def test_classes_too_small_for_a_table_can_be_dropped_and_are_listed(reference, tmp_path):
    p = _fresh(reference, tmp_path)
    for f in sorted((p / "data" / "red").iterdir())[3:]:
        f.unlink()                                          # red: 3 images, the others 8
    (p / "tlreport.toml").write_text(CONFIG.replace("[experiments]\nenabled = false", """[experiments]
n_splits = 2
heads = ["logreg"]
[[experiments.tables]]
dataset = "data"
settings = [3, 4]
test_cap = 3
drop_short_classes = true"""))
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    post = (p / "site" / "_posts" / "2026-11-28-reliability.md").read_text()
    assert "Left out of this table, with fewer than 5 images (`drop_short_classes`): red (3)." in post
    results = json.loads(next((p / ".tlreport" / "stages" / "experiments").glob("*/results.json")).read_text())
    assert {row["n_test"] for row in results["splits"]} == {2 * 3}     # two classes left, 3 test images each


BACKBONES = CONFIG.replace("[experiments]\nenabled = false", """[experiments]
backbones = ["tiny_random"]
heads = ["logreg"]
n_splits = 2
[[experiments.tables]]
dataset = "data"
settings = [3]
test_cap = 4""")


def _random_inception_v4(tmp_path: Path, seed: int = 4) -> Path:
    """inception_v4_2016_09_09.tar.gz's layout: one V1 checkpoint with every slim variable, random values."""
    import tarfile

    from helpers.slim_reference import SlimReference, aux_values, write_v1

    tmp_path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    ref = SlimReference(rng)
    ref(rng.uniform(0, 255, (1, 75, 75, 3)).astype(np.float32))       # draws every main-path variable
    values = dict(ref.values) | aux_values(rng) | {"global_step": np.array(1, np.int64)}
    ckpt = write_v1(tmp_path / "inception_v4.ckpt", values)
    archive = tmp_path / "inception_v4_2016_09_09.tar.gz"
    with tarfile.open(archive, "w:gz", compresslevel=1) as tar:
        tar.add(ckpt, arcname="inception_v4.ckpt")
    Path(ckpt).unlink()                                                      # 176 MB: only the archive is fetched
    return archive


def test_adding_a_backbone_extracts_features_for_it_alone(reference, tmp_path):
    p = _fresh(reference, tmp_path)
    (p / "tlreport.toml").write_text(BACKBONES)
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    assert _last(p)["counters"]["features.extracted.tiny_random"] == 24

    archive = _random_inception_v4(tmp_path)
    r = run_cli("fetch", "inception_v4", "--from", str(archive), "--data-root", str(tmp_path / "data-root"), cwd=p)
    assert r.returncode == 0, r.stderr
    first_sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    archive.unlink()                                                    # fetched: the test's disk stays small
    (p / "tlreport.toml").write_text(f'data_root = "{tmp_path / "data-root"}"\n' + BACKBONES.replace(
        'backbones = ["tiny_random"]', 'backbones = ["tiny_random", "inception_v4"]'))
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    assert "features: inception_v4 24 new images" in r.stdout
    last = _last(p)
    counters = {k: v for k, v in last["counters"].items() if k.startswith("features.extracted.")}
    assert counters == {"features.extracted.inception_v4": 24}          # none for the cached backbone
    assert last["ran"] == ["features", "experiments", "figures", "render"]   # train: cached
    newest = max((p / ".tlreport" / "stages" / "experiments").glob("*/results.json"), key=lambda f: f.stat().st_mtime_ns)
    results = json.loads(newest.read_text())
    assert {row["backbone"] for row in results["aggregate"]} == {"tiny_random", "inception_v4"}
    post = (p / "site" / "_posts" / "2026-11-28-reliability.md").read_text()
    assert first_sha[:16] in post                                       # the provenance box names the weights

    # another unpinned checkpoint under the same name: a new identity, so its features are extracted anew
    other = _random_inception_v4(tmp_path / "other", seed=5)
    r = run_cli("fetch", "inception_v4", "--from", str(other), "--data-root", str(tmp_path / "data-root"), cwd=p)
    assert r.returncode == 0, r.stderr
    second_sha = hashlib.sha256(other.read_bytes()).hexdigest()
    other.unlink()
    r = run_cli("build", cwd=p)
    assert r.returncode == 0, r.stderr
    assert "features: inception_v4 24 new images" in r.stdout
    post = (p / "site" / "_posts" / "2026-11-28-reliability.md").read_text()
    assert second_sha != first_sha and second_sha[:16] in post and first_sha[:16] not in post


def test_image_vanishing_after_the_scan_is_one_line_and_keeps_the_work(reference, tmp_path, monkeypatch):
    """Deleted between the scan and its turn in the network: a clear error; the rerun rescans."""
    from tlreport.config import load_config
    from tlreport.datasets.scan import scan_dataset
    from tlreport.errors import UserError
    from tlreport.pipeline import build

    p = _fresh(reference, tmp_path)
    (p / "tlreport.toml").write_text(CONFIG.replace("[features]\n", "[features]\nbatch_size = 4\n"))
    real_scan = scan_dataset
    victim = p / "data" / "red" / "img_05.png"

    def scan_then_delete(*args, **kwargs):
        m = real_scan(*args, **kwargs)
        victim.unlink()
        return m

    monkeypatch.setattr(scan_module, "scan_dataset", scan_then_delete)
    with pytest.raises(UserError, match=r"red/img_05\.png: vanished or unreadable since the dataset was scanned; "
                                        r"run the build again"):
        build(load_config(p / "tlreport.toml"), quiet=True)
    monkeypatch.setattr(scan_module, "scan_dataset", real_scan)
    r = build(load_config(p / "tlreport.toml"), quiet=True)
    # the first 20 images (5 batches of 4 before the victim's) were kept: only 3 are left to extract
    assert r.counters["features.extracted"] == 23 - 20
    assert "23 images in 3 classes" in _results(p)["manifest_summary"]
