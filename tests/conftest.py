"""Shared fixtures.  Tests are offline and never read ../shared."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = Path(__file__).resolve().parent.parent


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m tlreport ARGS`` in a real subprocess."""
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "tlreport", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout)


def write_config(folder: Path, text: str) -> Path:
    p = folder / "tlreport.toml"
    p.write_text(text, encoding="utf-8")
    return p


@pytest.fixture(scope="session")
def default_build(tmp_path_factory) -> Path:
    """The README's offline default (``tlreport build``), built once per session.

    Returns the project folder holding ``tlreport.toml``, ``site/`` and ``.tlreport/``.
    """
    root = tmp_path_factory.mktemp("default")
    shutil.copy(REPO / "tlreport.toml", root / "tlreport.toml")
    r = run_cli("build", cwd=root, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    return root
