"""Shared fixtures.  Tests are offline and never read ../shared; helpers live in ``tests/helpers``."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from helpers import REPO, run_cli

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(scope="session")
def default_build(tmp_path_factory) -> Path:
    """The README's offline default (``tlreport build``), built once per session.

    Returns the project folder holding ``tlreport.toml``, ``site/`` and ``.tlreport/``.
    """
    root = tmp_path_factory.mktemp("default")
    shutil.copy(REPO / "tlreport.toml", root / "tlreport.toml")
    shutil.copytree(REPO / "data" / "caltech101-subset", root / "data" / "caltech101-subset")
    r = run_cli("build", cwd=root, timeout=1200)
    assert r.returncode == 0, r.stdout + r.stderr
    return root
