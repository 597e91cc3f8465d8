"""What many tests share: the repository's path, running the CLI, writing configs.

Tests import from here (``from helpers import run_cli``), never from each other.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"

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
