"""Atomic writes: all or nothing under the final name, with the mode a plain write would give."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tlreport.util.files import atomic_write_bytes, atomic_write_text


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path: Path, umask: int, mode: int) -> None:
    old = os.umask(umask)
    try:
        atomic_write_text(tmp_path / "a.txt", "hello")
        atomic_write_bytes(tmp_path / "sub" / "b.bin", b"\0\1")
    finally:
        os.umask(old)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == mode
    assert (tmp_path / "sub" / "b.bin").stat().st_mode & 0o777 == mode
    assert (tmp_path / "a.txt").read_text() == "hello"


def test_an_existing_file_is_replaced_whole(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "a.txt", "old")
    atomic_write_text(tmp_path / "a.txt", "new")
    assert (tmp_path / "a.txt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]      # no temporary file left behind
