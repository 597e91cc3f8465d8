"""The offline demo dataset: real photos, drawn as varied crops.

The offline default has no Caltech-101, so the transfer and replication
sections run on a small dataset the build makes from photos that ship inside
installed packages.  Each class is one photo; each image is a random crop of it
(1–12% of its area, aspect 3:4 to 4:3), possibly mirrored, slightly rotated
and with its brightness and contrast jittered.  Small crops of busy photos are
genuinely ambiguous (sky, wall, a patch of fur), and three classes are
greyscale textures (brick, grass, gravel), so the task is not trivial.
It is deterministic: the same seed gives the same bytes.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from tlreport.util.files import atomic_write_bytes
from tlreport.util.hashing import hash_obj

VERSION = 2
CLASSES = {
    "cat": "skimage:chelsea.png",
    "coffee": "skimage:coffee.png",
    "rocket": "skimage:rocket.jpg",
    "astronaut": "skimage:astronaut.png",
    "officer": "matplotlib:grace_hopper.jpg",
    "temple": "sklearn:china.jpg",
    "flower": "sklearn:flower.jpg",
    "motorbike": "skimage:motorcycle_left.png",
    "brick": "skimage:brick.png",
    "grass": "skimage:grass.png",
    "gravel": "skimage:gravel.png",
}
MIN_AREA, MAX_AREA = 0.01, 0.12

def demo_dataset_key(seed: int, per_class: int) -> str:
    return hash_obj({"v": VERSION, "classes": CLASSES, "area": [MIN_AREA, MAX_AREA], "seed": seed,
                     "per_class": per_class})[:16]


def demo_dataset_path(cache_dir: Path, *, seed: int, per_class: int = 40) -> Path | None:
    """The demo dataset folder under ``cache_dir`` if it was written completely, else None."""
    root = Path(cache_dir) / "demo-dataset" / demo_dataset_key(seed, per_class)
    return root if (root / ".complete").is_file() else None


def make_demo_dataset(cache_dir: Path, *, seed: int, per_class: int = 40, size: int = 256) -> Path:
    """Write (once) and return the demo dataset folder under ``cache_dir``."""
    from PIL import Image, ImageEnhance

    from tlreport.datasets.images import load_rgb
    from tlreport.datasets.sources import resolve_image

    root = Path(cache_dir) / "demo-dataset" / demo_dataset_key(seed, per_class)
    done = root / ".complete"
    if done.is_file():
        return root
    rng = np.random.default_rng(seed)
    for label, ref in CLASSES.items():
        photo = load_rgb(resolve_image(ref, base_dir=Path.cwd()).path)
        w, h = photo.size
        for i in range(per_class):
            area = rng.uniform(MIN_AREA, MAX_AREA) * w * h
            aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
            cw = int(min(w, round(np.sqrt(area * aspect))))
            ch = int(min(h, round(np.sqrt(area / aspect))))
            x0 = int(rng.integers(0, w - cw + 1))
            y0 = int(rng.integers(0, h - ch + 1))
            img = photo.crop((x0, y0, x0 + cw, y0 + ch))
            img.thumbnail((size, size), Image.Resampling.BILINEAR)
            if rng.random() < 0.5:
                img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
            img = img.rotate(float(rng.uniform(-10, 10)), resample=Image.Resampling.BILINEAR,
                             expand=False, fillcolor=(128, 128, 128))
            img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.7, 1.3)))
            img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.7, 1.3)))
            buf = io.BytesIO()
            img.save(buf, "JPEG", quality=90)
            atomic_write_bytes(root / label / f"{label}_{i:03d}.jpg", buf.getvalue())
    atomic_write_bytes(done, b"ok\n")
    return root
