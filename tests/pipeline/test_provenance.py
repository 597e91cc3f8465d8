"""The post's machine line tells apart the CPUs that give different features under one name."""

from __future__ import annotations

import os

import pytest

from tlreport.pipeline import provenance
from tlreport.pipeline.provenance import vector_isa


def test_the_widest_vector_instructions_are_named():
    assert vector_isa({"sse4_2", "avx", "avx2", "avx512f", "avx512_bf16", "avx512_vnni"}) == "AVX-512 with bf16"
    assert vector_isa({"avx2", "avx512f"}) == "AVX-512"
    assert vector_isa({"sse4_2", "avx", "avx2", "fma"}) == "AVX2"
    assert vector_isa({"sse4_2"}) == "" and vector_isa(set()) == ""


def test_the_machine_line_carries_them(monkeypatch):
    monkeypatch.setattr(provenance, "cpu_flags", lambda: frozenset({"avx2", "fma"}))
    assert " (AVX2), " in provenance._machine()
    monkeypatch.setattr(provenance, "cpu_flags", lambda: frozenset())
    line = provenance._machine()
    assert line == f"{provenance._cpu_name()}, {os.cpu_count()} cores, {provenance.platform.system()}"


def test_the_cpu_name_drops_trademark_marks():
    for raw, name in (("Intel(R) Xeon(R) Processor", "Intel Xeon Processor"),
                      ("Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz", "Intel Core i7-8650U CPU @ 1.90GHz"),
                      ("AMD EPYC 9R14 96-Core Processor", "AMD EPYC 9R14 96-Core Processor")):
        assert provenance.cpu_model_name(f"processor\t: 0\nmodel name\t: {raw}\nflags\t: fpu\n") == name
    assert provenance.cpu_model_name("processor\t: 0\n") == ""


PROJECT = """
seed = 7
[post]
title = "Provenance test"
slug = "provenance"
[classify]
enabled = false
[dataset]
path = "data"
[train]
backbone = "tiny_random"
epochs = 5
batch_size = 16
[experiments]
backbones = ["tiny_random"]
heads = ["logreg"]
n_splits = 2
[[experiments.tables]]
dataset = "data"
settings = [3]
test_cap = 4
"""


@pytest.mark.slow
def test_a_post_re_rendered_elsewhere_names_the_machine_that_computed_its_numbers(tmp_path, monkeypatch):
    """The machine line and the versions come from the stages that computed the results (their _meta.json),
    not from the machine that renders: a retitled post, rendered on "another machine" from the cache, keeps
    the first machine; an experiment rerun there adds it, naming which stages ran where."""
    from helpers.drawn import CLASSES, draw

    from tlreport.config import load_config
    from tlreport.pipeline import build

    for c, rgb in CLASSES.items():
        for i in range(8):
            draw(tmp_path / "data", c, rgb, i)
    config = tmp_path / "tlreport.toml"
    config.write_text(PROJECT)
    build(load_config(config), quiet=True)
    post = tmp_path / "site" / "_posts" / "2026-11-28-provenance.md"
    here = provenance._machine()
    assert f"Machine: {here}." in post.read_text()

    monkeypatch.setattr(provenance, "_machine", lambda: "Another machine, 64 cores, Linux")
    monkeypatch.setattr(provenance, "_version", lambda dist, *alts: "9.9")
    config.write_text(PROJECT.replace('title = "Provenance test"', 'title = "Provenance, retitled"'))
    r = build(load_config(config), quiet=True)
    assert r.ran == ["render"]
    text = post.read_text()
    assert f"Machine: {here}." in text and "Another machine" not in text
    assert "NumPy 9.9" not in text                         # the versions are the computing stages' too

    config.write_text(PROJECT.replace("n_splits = 2", "n_splits = 3"))
    r = build(load_config(config), quiet=True)
    assert "experiments" in r.ran and "features" not in r.ran
    text = post.read_text()
    assert f"Machine: {here} (features, train); Another machine, 64 cores, Linux (experiments)." in text
    assert "NumPy 9.9" in text                             # the tables' stage ran with these


def _git(repo, *args):
    import subprocess

    subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t", *args], check=True,
                   capture_output=True)


def test_the_render_names_its_commit_and_uncommitted_changes_to_what_it_renders_from(tmp_path):
    """A post rendered with templates not yet committed says so: its commit alone would not write it."""
    repo = tmp_path / "repo"
    for folder in ("tlreport", "templates", "site"):
        (repo / folder).mkdir(parents=True)
        (repo / folder / "f.txt").write_text("1")
    _git(tmp_path, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "c")
    state = provenance.render_git(repo)
    assert len(state["commit"]) == 12 and state["modified"] is False
    (repo / "site" / "f.txt").write_text("2")                  # the rendered site itself does not count
    (repo / "notes.txt").write_text("untracked")
    assert provenance.render_git(repo)["modified"] is False
    (repo / "templates" / "f.txt").write_text("2")
    assert provenance.render_git(repo) == {"commit": state["commit"], "modified": True}
    assert provenance.render_git(tmp_path / "not-a-repo") == {"commit": "", "modified": False}


def test_the_provenance_box_names_both_commits_when_a_cached_stage_computed_the_numbers():
    from pipeline.test_render_sections import _render_with_prov

    md = _render_with_prov(git="aaaaaaaaaaaa", rendered={"commit": "bbbbbbbbbbbb", "modified": False})
    assert "numbers computed at commit `aaaaaaaaaaaa`, this post written at commit `bbbbbbbbbbbb` (" in md
    md = _render_with_prov(git="aaaaaaaaaaaa", rendered={"commit": "aaaaaaaaaaaa", "modified": True})
    assert "(commit `aaaaaaaaaaaa`, with uncommitted changes)" in md and "written at" not in md


def test_a_features_stage_that_only_read_the_cache_says_so_beside_its_time():
    from pipeline.test_render_sections import _render_with_prov

    timings = [("features", 1.1), ("train", 43.7)]
    md = _render_with_prov(timings=timings, features_extracted=0)
    assert "features 1.1 s (every vector read from the feature cache, extracted by an earlier build), train" in md
    assert "feature cache" not in _render_with_prov(timings=timings, features_extracted=9145)


def test_uncommitted_changes_are_part_of_the_render_key(tmp_path, monkeypatch):
    """A post rendered from uncommitted code is not reused once the code is committed: the render's
    inputs differ, so it is rendered again and stops saying so."""
    from tlreport.config import validate
    from tlreport.engine.stage import BuildContext
    from tlreport.engine.store import StageStore
    from tlreport.pipeline.render import render_inputs

    def build_context():          # one per build: git is asked once per build (ctx.once)
        return BuildContext(config=validate({"classify": {"enabled": False}, "train": {"enabled": False}}),
                            store=StageStore(tmp_path / "s"))

    monkeypatch.setattr(provenance, "render_git", lambda: {"commit": "a" * 12, "modified": True})
    dirty = render_inputs(build_context())
    monkeypatch.setattr(provenance, "render_git", lambda: {"commit": "b" * 12, "modified": False})
    clean = render_inputs(build_context())
    assert dirty != clean and {k for k in dirty if dirty[k] != clean[k]} == {"uncommitted"}
