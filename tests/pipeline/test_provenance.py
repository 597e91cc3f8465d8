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
