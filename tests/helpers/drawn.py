"""A small drawn dataset: colour classes (one with a hostile but legal folder name), noisy 64-px PNGs."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = {
    "red": (200, 30, 30),
    "green": (30, 170, 40),
    "blue": (30, 50, 200),
    "{{ site.title }} | <i>_x_ *y* $z": (220, 200, 40),   # a hostile but legal folder name
}


def draw(root: Path, cls: str, rgb: tuple[int, int, int], i: int) -> Path:
    """Image ``i`` of class ``cls``: its colour plus noise seeded by (class, i), the same on every run."""
    rng = np.random.default_rng(zlib.crc32(f"{cls}/{i}".encode()))
    a = np.clip(np.array(rgb)[None, None, :] + rng.normal(0, 25, (64, 64, 3)), 0, 255).astype(np.uint8)
    p = root / cls / f"img_{i:02d}.png"
    p.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(a).save(p)
    return p
