"""TensorFlow's C++ start-up lines never reach the terminal, on any CPU."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

NOISE_LINES = (
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
    "I0000 00:00:1796186629.211899    4672 port.cc:153] oneDNN custom operations are on. You may see "
    "slightly different numerical results due to floating-point round-off errors.\n"
)


def _python(code: str, *, extra_path: Path | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    if extra_path is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(extra_path), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture
def noisy_tensorflow(tmp_path: Path) -> Path:
    """A stand-in ``tensorflow`` that writes what TF 2.21 writes to fd 2 on an AVX-512 CPU, plus a real warning."""
    pkg = tmp_path / "tensorflow"
    pkg.mkdir()
    (pkg / "__init__.py").write_text(
        "import os\n"
        f"os.write(2, {NOISE_LINES.encode()!r})\n"
        "os.write(2, b'a real warning the user must see\\n')\n")
    return tmp_path


def test_the_stand_in_is_noisy_without_tlreport(noisy_tensorflow: Path) -> None:
    r = _python("import tensorflow", extra_path=noisy_tensorflow)
    assert "oneDNN custom operations are on" in r.stderr    # so the next test can fail


def test_importing_tensorflow_after_tlreport_drops_the_noise_keeps_the_rest(noisy_tensorflow: Path) -> None:
    r = _python("import tlreport\nimport tensorflow\nprint('imported')", extra_path=noisy_tensorflow)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "imported\n"
    assert "oneDNN" not in r.stderr and "absl::InitializeLog" not in r.stderr
    assert r.stderr == "a real warning the user must see\n"


@pytest.mark.slow
def test_real_tensorflow_and_keras_are_quiet() -> None:
    r = _python("""
        import tlreport
        import keras
        import tensorflow as tf
        keras.Sequential([keras.layers.Dense(2)])(tf.zeros((1, 3)))
        print('ok')
    """)
    assert r.returncode == 0, r.stderr
    assert r.stdout == "ok\n"
    assert r.stderr == "", r.stderr


@pytest.mark.slow
def test_a_cli_command_that_loads_a_backbone_prints_no_tensorflow_lines(tmp_path: Path) -> None:
    from PIL import Image

    img = tmp_path / "grey.png"
    Image.new("RGB", (64, 64), (128, 128, 128)).save(img)
    r = subprocess.run([sys.executable, "-m", "tlreport", "classify", str(img), "--top", "1",
                        "--cache-dir", str(tmp_path / "cache")],
                       capture_output=True, text=True, timeout=600,
                       env={k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert r.returncode == 0, r.stderr
    assert r.stderr == "", r.stderr
