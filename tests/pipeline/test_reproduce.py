"""The post's *Reproduce it* box: its commands, run as a reader would, rebuild the same tables.

A post is built on the shipped Caltech-101 subset; the commands are then read out of the post and run
in a fresh copy of the project with an empty cache (``tlreport`` becomes this interpreter's ``python -m
tlreport``).  The project lies outside tlreport's source, so the box installs nothing from it.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from helpers import REPO, run_cli

from tlreport.config import load_config
from tlreport.pipeline import build

pytestmark = pytest.mark.slow

CONFIG = f"""
seed = 11
[post]
title = "Reproduce test"
slug = "reproduce"
[classify]
enabled = false
[dataset]
path = "{(REPO / "data" / "caltech101-subset").as_posix()}"
[features]
[train]
backbone = "tiny_random"
epochs = 10
patience = 5
batch_size = 32
[experiments]
backbones = ["tiny_random"]
heads = ["logreg"]
n_splits = 3
[[experiments.tables]]
dataset = "{(REPO / "data" / "caltech101-subset").as_posix()}"
name = "Subset"
settings = [5]
test_cap = 5
"""


def _commands(post: str) -> list[str]:
    box = post[post.index("## Reproduce it"):]
    block = re.search(r"```sh\n(.*?)```", box, flags=re.S).group(1)
    return [line.split("   #")[0].strip() for line in block.splitlines() if line.strip()]


def _results(root: Path) -> str:
    (entry,) = (root / ".tlreport" / "stages" / "experiments").glob("*/results.csv")
    return entry.read_text()


def test_the_reproduce_commands_rebuild_the_same_tables(tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    (first / "tlreport.toml").write_text(CONFIG)
    build(load_config(first / "tlreport.toml"), quiet=True)
    post = next((first / "site" / "_posts").glob("*-reproduce.md")).read_text()
    commands = _commands(post)
    # a project outside tlreport's source: tlreport is installed already, the commands run beside the config
    assert commands[0] == "tlreport build --config tlreport.toml" and "pip install" not in post
    cfg_hash = load_config(first / "tlreport.toml").hash()
    assert f"settings hash `{cfg_hash[:16]}`" in post

    # a reader's fresh copy: the config alone, no cache, no site
    second = tmp_path / "second"
    second.mkdir()
    shutil.copy2(first / "tlreport.toml", second / "tlreport.toml")
    printed = ""
    for cmd in commands:
        args = shlex.split(cmd)
        assert args[0] == "tlreport", cmd
        r = run_cli(*args[1:], cwd=second)
        assert r.returncode == 0, r.stderr
        printed = r.stdout
    assert _results(second) == _results(first)
    table = re.compile(r"^\| .*\|$", flags=re.M)
    post2 = next((second / "site" / "_posts").glob("*-reproduce.md")).read_text()
    rows = [line for line in table.findall(post) if "Acc(%)" in line or "±" in line]
    assert rows and rows == [line for line in table.findall(post2) if "Acc(%)" in line or "±" in line]
    # the last command prints the folder that holds the exported classifier
    folder = Path(printed.strip())
    assert (folder / "classifier.keras").is_file()
    assert json.loads((folder / "train.json").read_text())["backbone"] == "tiny_random"
