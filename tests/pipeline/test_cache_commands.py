"""``tlreport cache prune`` deletes files, so it gets tests: what it removes, what it keeps, what it never does."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import write_config
from helpers.drawn import CLASSES, draw

from tlreport.config import load_config
from tlreport.features.cache import FeatureStore
from tlreport.pipeline import build
from tlreport.pipeline.cache_commands import cache_info, cache_prune

pytestmark = pytest.mark.slow

CONFIG = """
seed = 1
[post]
slug = "prune"
[classify]
enabled = false
[dataset]
path = "data"
[features]
[train]
backbone = "tiny_random"
epochs = 4
[experiments]
enabled = false
"""


def _entries(root: Path, stage: str) -> set[str]:
    return {p.name for p in (root / ".tlreport" / "stages" / stage).iterdir() if not p.name.startswith(".")}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for c, rgb in list(CLASSES.items())[:2]:
        for i in range(6):
            draw(tmp_path / "data", c, rgb, i)
    return tmp_path


def test_prune_removes_what_the_config_no_longer_uses_and_keeps_the_rest(project: Path, capsys) -> None:
    build(load_config(write_config(project, CONFIG)), quiet=True)
    first_train = _entries(project, "train")
    cfg = load_config(write_config(project, CONFIG.replace("epochs = 4", "epochs = 5")))
    build(cfg, quiet=True)
    assert len(_entries(project, "train")) == 2
    keys_before = {i.key for i in FeatureStore(project / ".tlreport" / "features").info()}

    assert cache_prune(cfg) == 0
    assert "pruned 3 stage entries and 0 feature namespace(s)\n" == capsys.readouterr().out  # train, figures, render
    kept = _entries(project, "train")
    assert len(kept) == 1 and kept != first_train
    assert {i.key for i in FeatureStore(project / ".tlreport" / "features").info()} == keys_before
    assert build(cfg, quiet=True).ran == []                     # what the config uses is all still there

    cache_info(cfg)
    assert "features tiny_random" in capsys.readouterr().out


def test_prune_drops_a_backbone_nobody_uses_any_more(project: Path, capsys) -> None:
    two = CONFIG.replace("[experiments]\nenabled = false", """[experiments]
backbones = ["tiny_random", "efficientnet_lite0"]
heads = ["logreg"]
n_splits = 1
[[experiments.tables]]
dataset = "data"
settings = [2]
test_cap = 2""")
    build(load_config(write_config(project, two)), quiet=True)
    assert len(FeatureStore(project / ".tlreport" / "features").info()) == 2
    cfg = load_config(write_config(project, CONFIG))
    cache_prune(cfg)
    assert "and 1 feature namespace(s)" in capsys.readouterr().out
    (info,) = FeatureStore(project / ".tlreport" / "features").info()
    assert FeatureStore(project / ".tlreport" / "features").meta(info.key)["name"] == "tiny_random"


def test_prune_never_downloads_and_keeps_entries_it_cannot_key(project: Path, tmp_path: Path, capsys) -> None:
    build(load_config(write_config(project, CONFIG)), quiet=True)
    before = {stage: _entries(project, stage) for stage in ("features", "train", "figures", "render")}
    # the same project now asks for a dataset that is not installed: prune must not fetch it
    cfg = load_config(write_config(project, f'data_root = "{tmp_path / "no-data"}"\n' +
                                   CONFIG.replace('path = "data"', 'path = "artifact:caltech101"')))
    assert cache_prune(cfg) == 0
    assert not (tmp_path / "no-data").exists()
    assert {stage: _entries(project, stage) for stage in before} == before
    assert len(FeatureStore(project / ".tlreport" / "features").info()) == 1


def test_cache_path_prints_the_entry_of_this_configs_stage_or_says_why_not(project: Path, capsys) -> None:
    from tlreport.errors import UserError
    from tlreport.pipeline.cache_commands import cache_path

    cfg = load_config(write_config(project, CONFIG))
    with pytest.raises(UserError, match="unknown stage 'trian'; stages: .*train"):
        cache_path(cfg, "trian")
    with pytest.raises(UserError, match="the train stage has no entry for this config yet; run tlreport build"):
        cache_path(cfg, "train")
    build(cfg, quiet=True)
    assert cache_path(cfg, "train") == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "classifier.keras").is_file() and folder.parent.name == "train"
    # another config's entry is not this one's
    other = load_config(write_config(project, CONFIG.replace("epochs = 4", "epochs = 5")))
    with pytest.raises(UserError, match="no entry for this config yet"):
        cache_path(other, "train")



def test_a_build_given_dataset_is_found_and_kept_when_the_cache_commands_are_given_it_too(
        project: Path, tmp_path: Path, capsys) -> None:
    """The Caltech-101 config names the fetched artifact; built from a local copy with --dataset, its
    entries are keyed on that copy, which cache path and prune must be told about as build was."""
    from tlreport.errors import UserError
    from tlreport.pipeline.cache_commands import cache_path

    cfg = load_config(write_config(project, f'data_root = "{tmp_path / "no-data"}"\n' +
                                   CONFIG.replace('path = "data"', 'path = "artifact:caltech101"')))
    local = str(project / "data")
    build(cfg, quiet=True, dataset_override=local)
    with pytest.raises(UserError, match=r"cannot find the train stage's entry: its inputs need caltech101 "
                                        r"\(.* download\); if the build was given --dataset PATH"):
        cache_path(cfg, "train")
    assert cache_path(cfg, "train", dataset=local) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert (folder / "classifier.keras").is_file() and ".." not in folder.parts
    before = {stage: _entries(project, stage) for stage in ("features", "train", "figures", "render")}
    assert cache_prune(cfg, dataset=local) == 0
    assert "pruned 0 stage entries" in capsys.readouterr().out
    assert {stage: _entries(project, stage) for stage in before} == before
    assert not (tmp_path / "no-data").exists()

def test_info_on_an_empty_cache_says_it_is_empty(tmp_path: Path, capsys) -> None:
    from tlreport.config import validate

    cfg = validate({"cache_dir": str(tmp_path / "cache")}, path=tmp_path / "tlreport.toml")
    cache_info(cfg)
    assert capsys.readouterr().out.splitlines()[-1] == "total: 0 B (empty: tlreport build fills it)"
