"""A stage's code identity changes with its own code and with what it imports, and only then."""

from __future__ import annotations

import importlib
import json
import sys
import textwrap
from pathlib import Path

import pytest

from tlreport.engine import code


@pytest.fixture
def fake_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``fakepkg`` with a stage module that imports a helper lazily and a module nobody imports."""
    pkg = tmp_path / "fakepkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text('"""fake"""\n')
    (pkg / "sub" / "__init__.py").write_text('"""fake sub"""\n')
    (pkg / "stage.py").write_text(textwrap.dedent('''
        """a stage"""
        def run():
            from fakepkg.sub import helper
            return helper.VALUE
    '''))
    (pkg / "sub" / "helper.py").write_text('"""helper"""\nVALUE = 1\n')
    (pkg / "unrelated.py").write_text('"""unrelated"""\nX = 1\n')
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.import_module("fakepkg")
    yield pkg
    for name in [m for m in sys.modules if m.split(".")[0] == "fakepkg"]:
        del sys.modules[name]


def _fingerprint() -> str:
    for f in (code.package_modules, code.module_imports, code.code_fingerprint):
        f.cache_clear()     # a new build process reads the sources afresh
    return code.code_fingerprint("fakepkg.stage")


def test_fingerprint_follows_lazy_imports_and_ignores_the_rest(fake_package: Path) -> None:
    assert code.module_imports("fakepkg.stage") == {"fakepkg.sub", "fakepkg.sub.helper"}   # not fakepkg itself
    first = _fingerprint()
    assert _fingerprint() == first
    (fake_package / "unrelated.py").write_text('"""unrelated"""\nX = 2\n')
    assert _fingerprint() == first
    (fake_package / "sub" / "helper.py").write_text('"""helper"""\nVALUE = 2\n')
    second = _fingerprint()
    assert second != first
    (fake_package / "stage.py").write_text((fake_package / "stage.py").read_text() + "\n# a comment\n")
    assert _fingerprint() not in (first, second)


def test_the_real_stages_differ_in_what_they_read() -> None:
    train = code.module_imports("tlreport.pipeline.train")
    assert "tlreport.report.charts" not in train      # editing a figure never retrains


def test_what_only_the_post_reads_is_in_no_computing_stage_s_code() -> None:
    """The post's wording helpers (its Reproduce box, development choices, references) are render's code
    alone: editing them re-renders the post and recomputes no number."""
    stages = ("classify", "features", "train", "experiments", "figures", "render")
    reads = {s: code.module_closure(f"tlreport.pipeline.{s}") for s in stages}
    for module in ("tlreport.pipeline.reproduce", "tlreport.pipeline.development_choices",
                   "tlreport.report.references", "tlreport.report.templating"):
        assert [s for s in stages if module in reads[s]] == ["render"], module


def test_a_build_with_no_code_changed_parses_nothing(fake_package: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """The parsed imports are kept in the cache: the next process reads them instead of parsing, to the
    same fingerprint; an edited source is parsed again, and the file keeps only what was read."""
    kept = tmp_path / "cache" / "code-imports.json"
    monkeypatch.setattr(code, "_parsed", {})
    monkeypatch.setattr(code, "_used", set())
    with code.remembered_imports(kept):
        first = _fingerprint()
    assert len(json.loads(kept.read_text())) == 3          # stage, sub/__init__ and helper; not unrelated.py

    monkeypatch.setattr(code, "_parsed", {})                # a new build process
    monkeypatch.setattr(code, "_used", set())

    def no_parsing(*args: object, **kwargs: object) -> None:
        raise AssertionError("parsed a source the cache holds")

    monkeypatch.setattr(code.ast, "parse", no_parsing)
    with code.remembered_imports(kept):
        assert _fingerprint() == first
    monkeypatch.undo()

    (fake_package / "sub" / "helper.py").write_text('"""helper"""\nimport fakepkg.unrelated\nVALUE = 2\n')
    monkeypatch.setattr(code, "_parsed", {})
    monkeypatch.setattr(code, "_used", set())
    with code.remembered_imports(kept):
        edited = _fingerprint()
    assert edited != first
    assert "fakepkg.unrelated" in code.module_closure("fakepkg.stage")
    assert len(json.loads(kept.read_text())) == 4          # the old helper's entry is gone, unrelated.py's came


@pytest.mark.parametrize("held", ["{not json", '{"abc": 3}', "[1, 2]"])
def test_an_unreadable_import_cache_is_parsed_afresh(fake_package: Path, tmp_path: Path, held: str,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    kept = tmp_path / "code-imports.json"
    kept.write_text(held)
    monkeypatch.setattr(code, "_parsed", {})
    monkeypatch.setattr(code, "_used", set())
    with code.remembered_imports(kept):
        fingerprint = _fingerprint()
    assert fingerprint == _fingerprint()
    assert len(json.loads(kept.read_text())) == 3
