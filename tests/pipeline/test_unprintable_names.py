"""Folder and file names no terminal, post or feed can hold as they are: control characters and bytes
that are not UTF-8.  The build reads the files by their exact names and shows the names as escapes."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import unicodedata
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import run_cli
from PIL import Image

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(os.name != "posix", reason="names that are not UTF-8 are a POSIX thing")]

CLASSES = {b"esc\x1b[31mred\x1b[0m": (200, 30, 30), b"caf\xe9": (30, 170, 40), b"two\nlines\x7f": (30, 50, 200)}

CONFIG = """
seed = 5
[post]
title = "Odd names"
slug = "odd-names"
[classify]
enabled = false
[dataset]
path = "data"
[features]
[train]
backbone = "tiny_random"
epochs = 8
batch_size = 16
grid_size = 2
[experiments]
backbones = ["tiny_random"]
n_splits = 2
[[experiments.tables]]
dataset = "data"
name = "Odd names"
settings = [3]
test_cap = 3
"""


def _dataset(root: Path) -> bytes:
    data = os.fsencode(root / "data")
    for cls, rgb in CLASSES.items():
        folder = data + b"/" + cls
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError:                          # a file system that refuses such names (APFS)
            pytest.skip("this file system refuses names that are not UTF-8")
        for i in range(8):
            rng = np.random.default_rng(zlib.crc32(cls + bytes([i])))
            a = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 25, (32, 32, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(a).save(os.fsdecode(folder + b"/img\xff%02d.png" % i))
    with open(data + b"/caf\xe9/broken-\xfe.jpg", "wb") as f:
        f.write(b"\xff\xd8\xff\xe0 not really a jpeg")
    return data


def test_a_build_on_unprintable_names_runs_and_shows_escapes(tmp_path: Path) -> None:
    data = _dataset(tmp_path)
    (tmp_path / "tlreport.toml").write_text(CONFIG)
    r = run_cli("build", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr and "Glyph" not in r.stderr         # no font lacks a glyph either
    assert "\x1b" not in r.stdout and "skipped caf\\xe9/broken-\\xfe.jpg: corrupt" in r.stdout

    post_bytes = next((tmp_path / "site" / "_posts").glob("*-odd-names.md")).read_bytes()
    post = post_bytes.decode("utf-8")                                        # strict: it is UTF-8
    unshowable = [c for c in post if unicodedata.category(c) in ("Cc", "Cs") and c not in "\n"]
    assert not unshowable, unshowable                                        # an XML feed could not hold them
    assert "caf&#92;xe9" in post and "esc&#92;x1b&#91;31mred" in post and "two lines&#92;x7f" in post

    # the post's classify command names the example image by its exact bytes
    word = re.search(r"tlreport classify (\$'.*?(?<!\\)') --model", post)
    assert word, "the example image's path is quoted for the shell"
    if shutil.which("bash"):
        relpath = subprocess.run(["bash", "-c", f"printf %s {word.group(1)}"], capture_output=True,
                                 check=True).stdout
        assert os.path.isfile(data + b"/" + relpath)

    again = run_cli("build", cwd=tmp_path)                                   # the stored names load back
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout, again.stdout
