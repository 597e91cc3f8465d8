"""A plan only reads: ``--dry-run`` and ``cache prune`` never download and never write outside a temp folder."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import REPO, run_cli


def _seed_config(tmp_path: Path) -> Path:
    """configs/seed-replication.toml in a folder of its own (its cache_dir and site_dir are relative)."""
    folder = tmp_path / "configs"
    folder.mkdir()
    shutil.copy(REPO / "configs" / "seed-replication.toml", folder / "seed-replication.toml")
    return folder / "seed-replication.toml"


def test_dry_run_of_the_seed_replication_offline_lists_every_download_and_writes_nothing(tmp_path: Path) -> None:
    config = _seed_config(tmp_path)
    data_root = tmp_path / "empty-data-root"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = run_cli("build", "--config", str(config), "--dry-run", "--data-root", str(data_root), cwd=tmp_path,
                env={"KERAS_HOME": str(tmp_path / "keras-home"), "TLREPORT_DATA": str(data_root)})
    assert r.returncode == 0, r.stderr
    plan = next(line for line in r.stdout.splitlines() if line.startswith("plan: "))
    for name in ("caltech101", "caltech256", "inception_2015", "inception_v3", "inception_v4",
                 "inception_resnet_v2"):
        assert f"{name} (" in plan, (name, plan)
    assert "caltech101 (131.0 MiB download)" in plan          # sizes where the registry knows them
    assert "inception_2015 (download, size not published)" in plan or "inception_2015 (84.8 MiB" in plan
    assert "train: after features" in plan and "render: after" in plan
    assert not (tmp_path / ".tlreport").exists()                # the config's cache_dir: ../.tlreport
    assert not data_root.exists() and not (tmp_path / "keras-home").exists()
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.slow
def test_dry_run_of_the_offline_default_writes_nothing(tmp_path: Path) -> None:
    shutil.copy(REPO / "tlreport.toml", tmp_path / "tlreport.toml")
    shutil.copytree(REPO / "data" / "caltech101-subset", tmp_path / "data" / "caltech101-subset")
    r = run_cli("build", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert ("plan: classify: rerun; features: efficientnet_lite0 515 new images, efficientnet_lite1 515 new "
            "images, efficientnet_lite2 515 new images") in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "tlreport.toml"]


@pytest.mark.slow
def test_dry_run_of_the_demo_dataset_draws_it_in_a_temporary_folder(tmp_path: Path) -> None:
    """The demo dataset a plan needs is drawn into a temporary folder, not into the cache."""
    (tmp_path / "tlreport.toml").write_text(
        '[classify]\nenabled = false\n[dataset]\npath = "demo"\n[experiments]\nenabled = false\n')
    r = run_cli("build", "--dry-run", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "features: efficientnet_lite0 440 new images" in r.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tlreport.toml"]


def test_a_dataset_of_one_class_is_refused_while_planning(tmp_path: Path) -> None:
    """Not after the features are extracted, in the trainer's words: the plan names the class and the fix."""
    from helpers import write_config
    from helpers.drawn import CLASSES, draw

    from tlreport.config import load_config
    from tlreport.errors import UserError
    from tlreport.pipeline import build

    for c, rgb in list(CLASSES.items())[:2]:
        for i in range(4):
            draw(tmp_path / "data", c, rgb, i)
    one = list(CLASSES)[0]
    cfg = load_config(write_config(tmp_path, f'[dataset]\npath = "data"\ninclude = ["{one}"]\n'
                                             '[train]\nbackbone = "tiny_random"\n[experiments]\nenabled = false\n'))
    with pytest.raises(UserError, match=rf"^the dataset has 1 class to train on \({one}\); a classifier needs at "
                                        "least two"):
        build(cfg, dry_run=True, quiet=True)
    assert not (tmp_path / ".tlreport" / "features").exists()
