"""The package's shape: no import cycles (every import statement, lazy ones too), an engine that knows no stage."""

from __future__ import annotations

import tlreport
from tlreport.engine.code import module_imports, package_modules


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return out


def _edges() -> dict[str, set[str]]:
    return {m: set(module_imports(m)) for m in package_modules("tlreport")}


def test_the_import_reader_sees_lazy_imports() -> None:
    assert "tlreport.pipeline.data" in module_imports("tlreport.pipeline.train")   # inside functions, aliased
    assert "tlreport.heads.softmax" in module_imports("tlreport.pipeline.train")


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_in_the_package() -> None:
    assert _cycles(_edges()) == []


def test_the_engine_imports_no_stage() -> None:
    edges = _edges()
    reach, todo = set(), [m for m in edges if m.startswith("tlreport.engine")]
    while todo:
        m = todo.pop()
        if m not in reach:
            reach.add(m)
            todo.extend(edges[m])
    assert not {m for m in reach if m.startswith("tlreport.pipeline")}


def test_every_module_has_a_docstring() -> None:
    import ast

    missing = [m for m, path in package_modules("tlreport").items()
               if not ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) and path.stat().st_size]
    assert missing == []
    assert tlreport.__doc__
