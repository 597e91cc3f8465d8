"""Generators of fixture image folders (all offline, made with PIL in a temp dir).

Reusable by any test: ``make_dataset`` gives a clean dataset, ``make_zoo``
every supported-but-awkward format, ``make_bad_files`` every kind of file a
scan must skip (with the expected reason kind).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def noise_image(seed: int, size: tuple[int, int] = (40, 32), mode: str = "RGB") -> Image.Image:
    """A deterministic random image (distinct seeds give distinct bytes)."""
    rng = np.random.default_rng(seed)
    w, h = size
    channels = {"RGB": 3, "L": 1, "RGBA": 4, "CMYK": 4}[mode]
    a = rng.integers(0, 256, size=(h, w, channels), dtype=np.uint8)
    return Image.fromarray(a[..., 0] if channels == 1 else a, mode)


def save(img: Image.Image, path: Path, fmt: str = "JPEG", **kwargs: object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, fmt, **kwargs)
    return path


def jpeg_bytes(seed: int = 0, size: tuple[int, int] = (40, 32)) -> bytes:
    buf = io.BytesIO()
    noise_image(seed, size).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_dataset(root: Path, classes: dict[str, int] | None = None, size: tuple[int, int] = (40, 32),
                 seed: int = 0) -> Path:
    """``root/<class>/img_<i>.jpg`` with distinct noise images; returns ``root``."""
    classes = classes or {"cats": 4, "dogs": 3}
    k = seed * 1000
    for c, n in classes.items():
        for i in range(n):
            save(noise_image(k, size), root / c / f"img_{i:03d}.jpg", quality=90)
            k += 1
    return root


def bomb_png(width: int = 20_000, height: int = 20_000) -> bytes:
    """A 1-bit all-black PNG of width x height pixels: a few KB on disk, 400 Mpx decoded."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    raw = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def exif_rotated_jpeg(path: Path, size: tuple[int, int] = (20, 40), orientation: int = 6) -> Path:
    """A JPEG stored ``size`` (tall by default) with an EXIF Orientation tag."""
    img = noise_image(77, size)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return save(img, path, "JPEG", exif=exif.tobytes())


def make_zoo(root: Path, label: str = "zoo") -> dict[str, Path]:
    """Every awkward-but-valid image kind in ``root/label``; returns name -> path."""
    d = root / label
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, Path] = {}
    out["noext_jpeg"] = d / "tmp"
    out["noext_jpeg"].write_bytes(jpeg_bytes(11))
    out["png_named_jpg"] = save(noise_image(12), d / "really_a_png.jpg", "PNG")
    out["cmyk"] = save(noise_image(13, mode="CMYK"), d / "cmyk.jpg", "JPEG")
    out["gray"] = save(noise_image(14, mode="L"), d / "gray.jpg", "JPEG")
    rgba = Image.new("RGBA", (16, 16), (255, 0, 0, 255))
    rgba.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent black -> white
    out["rgba"] = save(rgba, d / "alpha.png", "PNG")
    out["exif6"] = exif_rotated_jpeg(d / "rotated.jpg")
    frames = [Image.new("P", (12, 10), i) for i in (1, 2)]
    for f in frames:
        f.putpalette([0, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * (256 * 3 - 9))
    frames[0].save(d / "anim.gif", "GIF", save_all=True, append_images=frames[1:], duration=50)
    out["gif"] = d / "anim.gif"  # first frame green, second blue
    out["bmp"] = save(noise_image(15), d / "pic.bmp", "BMP")
    out["webp"] = save(noise_image(16), d / "pic.webp", "WEBP")
    i16 = Image.fromarray(np.full((8, 8), 65535, dtype=np.uint16))
    out["png16"] = save(i16, d / "deep.png", "PNG")
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([10, 20, 30] + [0] * 765)
    out["palette_transparent"] = save(pal, d / "pal.png", "PNG", transparency=0)
    os.symlink("pic.bmp", d / "link_to_bmp.bmp")
    out["symlink_inside"] = d / "link_to_bmp.bmp"
    sub = d / "nested" / "deeper"
    out["nested"] = save(noise_image(17), sub / "inner.jpg", "JPEG")
    return out


def make_bad_files(root: Path, label: str = "bad") -> dict[str, tuple[Path, str | None]]:
    """Files a scan must skip (name -> (path, expected Skip.kind)) or ignore (kind None)."""
    d = root / label
    d.mkdir(parents=True, exist_ok=True)
    out: dict[str, tuple[Path, str | None]] = {}
    (d / "zero.jpg").write_bytes(b"")
    out["zero"] = (d / "zero.jpg", "empty file")
    good = jpeg_bytes(21, (120, 90))
    (d / "truncated.jpg").write_bytes(good[: len(good) * 2 // 3])
    out["truncated"] = (d / "truncated.jpg", "truncated")
    (d / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0" + bytes(range(256)) * 8)
    out["corrupt"] = (d / "corrupt.jpg", "corrupt")
    (d / "text.jpg").write_text("this is not a picture\n")
    out["text_named_jpg"] = (d / "text.jpg", "not an image")
    (d / "bomb.png").write_bytes(bomb_png())
    out["bomb"] = (d / "bomb.png", "too large")
    (d / "locked.jpg").write_bytes(jpeg_bytes(22))
    os.chmod(d / "locked.jpg", 0)
    out["unreadable"] = (d / "locked.jpg", "unreadable")
    os.symlink("loop_b.jpg", d / "loop_a.jpg")
    os.symlink("loop_a.jpg", d / "loop_b.jpg")
    out["symlink_loop_a"] = (d / "loop_a.jpg", "symlink loop")
    out["symlink_loop_b"] = (d / "loop_b.jpg", "symlink loop")
    os.symlink(".", d / "self_dir")
    out["dir_loop"] = (d / "self_dir", "symlink loop")
    os.symlink("nowhere.jpg", d / "dangling.jpg")
    out["dangling"] = (d / "dangling.jpg", "broken symlink")
    # ignored silently
    (d / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0junk")
    (d / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (d / "desktop.ini").write_text("[.ShellClassInfo]\n")
    (d / "notes.txt").write_text("labels checked by hand\n")
    (d / ".hidden.jpg").write_bytes(jpeg_bytes(23))
    for name in ("Thumbs.db", ".DS_Store", "desktop.ini", "notes.txt", ".hidden.jpg"):
        out[f"ignored:{name}"] = (d / name, None)
    # and one good image so the class is usable
    (d / "fine.jpg").write_bytes(jpeg_bytes(24))
    return out
