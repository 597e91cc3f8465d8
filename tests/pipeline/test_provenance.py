"""The post's machine line tells apart the CPUs that give different features under one name."""

from __future__ import annotations

import os

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
