"""The post's machine line tells apart the CPUs that give different features under one name."""

from __future__ import annotations

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
    assert "(" not in line and line.endswith(" cores, " + provenance.platform.system())
