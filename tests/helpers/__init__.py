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

def _sigint_as_a_terminal_sends_it() -> None:
    """In the child: SIGINT back to its default, so Python turns it into KeyboardInterrupt.

    A test run started in the background by a shell without job control (``cmd &`` in a script, as
    some CI runners do) inherits SIGINT *ignored*, and Python keeps an ignored SIGINT ignored: the
    Ctrl-C test's injected SIGINT would then be lost and the build would finish.
    """
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def run_cli(*args: str, cwd: Path, env: dict | None = None, timeout: int = 600) -> subprocess.CompletedProcess:
    """Run ``python -m tlreport ARGS`` in a real subprocess, SIGINT handled as at a terminal."""
    e = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    if env:
        e.update(env)
    return subprocess.run([sys.executable, "-m", "tlreport", *args], cwd=cwd, env=e,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=_sigint_as_a_terminal_sends_it if os.name == "posix" else None)


def write_config(folder: Path, text: str, name: str = "tlreport.toml") -> Path:
    p = folder / name
    p.write_text(text, encoding="utf-8")
    return p
