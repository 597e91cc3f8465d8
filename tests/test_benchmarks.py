"""The benchmarks still import and start after the package moves under them, and the grid comparison
runs end to end on tiny data (their real runs take minutes to hours, by hand)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py") if p.name != "common.py")

def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_benchmark_imports_and_explains_itself(script):
    r = _run(str(BENCHMARKS / script), "--help")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "usage:" in r.stdout


def test_the_benchmarks_readme_lists_every_script():
    readme = (BENCHMARKS / "README.md").read_text()
    assert all(f"`{s}`" in readme for s in SCRIPTS), [s for s in SCRIPTS if f"`{s}`" not in readme]


@pytest.mark.slow
def test_the_grid_benchmark_compares_both_selections_on_tiny_features():
    r = _run(str(BENCHMARKS / "grid.py"))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "cv3: 12 fits" in r.stdout and "holdout: 12 fits" in r.stdout
    assert "largest row change" in r.stdout
    assert "softmax_sgd's products: cv3 float32, holdout float32" in r.stdout
    r = _run(str(BENCHMARKS / "grid.py"), "--only", "holdout", "--precision", "bfloat16")
    assert r.returncode == 0, r.stderr[-2000:]
    assert "softmax_sgd's products: holdout bfloat16\n" in r.stdout and "cv3" not in r.stdout


@pytest.mark.slow
def test_the_isa_benchmark_times_the_grid_as_is_and_held_to_avx2_on_tiny_features():
    r = _run(str(BENCHMARKS / "grid_isa.py"), "--repeats", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.count("as is:") == 1 and r.stdout.count("AVX2 code:") == 1 and "the time as is)" in r.stdout
