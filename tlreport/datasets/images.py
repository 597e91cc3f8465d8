"""Reading one image: format sniffing, safe decoding, RGB, and the backbone's resize and crop."""

from __future__ import annotations

import io
import os
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image, ImageFile, ImageOps

DEFAULT_MAX_PIXELS = 40_000_000
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "WEBP")
# Extensions that claim to be images: a file with one whose content is not an
# image is reported; any other non-image file is ignored silently.
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".gif", ".bmp", ".dib",
                        ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif"})
_BMP_DIB_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
_PIL_LIMIT_LOCK = threading.Lock()

ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated image must fail, never half-load


class BadImage(Exception):
    """A file that looks like an image but cannot be used; ``str(e)`` is the reason."""


# --------------------------------------------------------------------------- sniffing

def sniff(head: bytes) -> str | None:
    """Image format from the first bytes (>= 32), or None when not a supported image."""
    if head[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if head[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "BMP"
    return None


def _unsupported_format(head: bytes) -> str | None:
    """Name of a recognised but unsupported image format (reported, not ignored)."""
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if head[4:8] == b"ftyp" and head[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif", b"hevc"):
        return "HEIF/AVIF"
    return None


def check_image_path(path: os.PathLike[str] | str) -> None:
    """One line for a path given as an image that is no file: missing, or a folder."""
    from pathlib import Path

    from tlreport.errors import UserError
    from tlreport.util.text import display_name

    p = Path(path)
    if p.is_dir():
        raise UserError(f"{display_name(str(p))} is a folder; give image files (a shell glob such as {display_name(str(p))}/*.jpg)")
    if not p.is_file():
        raise UserError(f"image not found: {display_name(str(p))}")


# --------------------------------------------------------------------------- decoding

def _open(path_or_bytes: str | os.PathLike | bytes, max_pixels: int) -> Image.Image:
    src: Any = io.BytesIO(path_or_bytes) if isinstance(path_or_bytes, bytes | bytearray) else path_or_bytes
    try:
        with warnings.catch_warnings():
            # PIL warns (two lines on stderr) between its own limit and twice it; `max_pixels` is checked
            # below, and a refused image is one reported line, so PIL's warning is not wanted
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(src)
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large: {e}") from None
    except Image.UnidentifiedImageError:
        # PIL's message names the stream object by its memory address, which changes from run to run
        raise BadImage("corrupt: no image header PIL recognises") from None
    except (OSError, SyntaxError, ValueError) as e:  # PIL raises all three for bad headers
        raise BadImage(f"corrupt: {_without_addresses(str(e))}") from None
    if img.format not in IMAGE_FORMATS:
        raise BadImage(f"unsupported format {img.format}")
    w, h = img.size
    if w * h > max_pixels:
        raise BadImage(f"too large: {w}x{h} = {w * h:,} pixels > limit {max_pixels:,}")
    if w <= 0 or h <= 0:
        raise BadImage(f"corrupt: size {w}x{h}")
    return img


def _without_addresses(message: str) -> str:
    """A library's message without object reprs (``<_io.BytesIO object at 0x7f...>``): a skip reason is
    written into the post and must be the same on every run.

    >>> _without_addresses("cannot read <_io.BytesIO object at 0x7faa2cbb9df0> here")
    'cannot read the file here'
    """
    import re

    return re.sub(r"<[^<>]*? at 0x[0-9a-fA-F]+>", "the file", message)


def _load(img: Image.Image) -> None:
    try:
        img.load()
    except Image.DecompressionBombError as e:
        raise BadImage(f"too large: {e}") from None
    except OSError as e:
        msg = _without_addresses(str(e))
        kind = "truncated" if "truncated" in msg or "premature" in msg.lower() else "corrupt"
        raise BadImage(f"{kind}: {msg}") from None
    except (SyntaxError, ValueError, EOFError, IndexError, TypeError, MemoryError) as e:
        raise BadImage(f"corrupt: {type(e).__name__}: {_without_addresses(str(e))}") from None


def _to_rgb(img: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB; alpha is composited on white."""
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I", "F"):
        a = np.asarray(img).astype(np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        a = np.clip(np.rint(a * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(a, "L").convert("RGB")
    has_alpha = mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
        mode in ("P", "L", "RGB") and "transparency" in img.info)
    if has_alpha:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def load_rgb(path_or_bytes: str | os.PathLike | bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS,
             draft: int | None = None) -> Image.Image:
    """Decode an image to an RGB ``PIL.Image``.

    Grayscale/palette/CMYK/16-bit become RGB, alpha is composited on white,
    EXIF orientation is applied and a GIF gives its first frame.  ``draft``
    (JPEG only) lets libjpeg decode at a reduced scale as long as both sides
    stay >= ``draft`` pixels.  Raises :class:`BadImage` with a reason.
    """
    img = _open(path_or_bytes, max_pixels)
    try:
        if draft and img.format == "JPEG" and min(img.size) >= 2 * draft:
            img.draft("RGB", (draft, draft))
        # an image opens on its first frame; asking a GIF for n_frames would walk (and trip on) the rest
        _load(img)
        try:
            ImageOps.exif_transpose(img, in_place=True)
        except Exception:  # malformed EXIF must not lose the image
            pass
        out = _to_rgb(img)
        if out is img and getattr(img, "fp", None) is not None:
            out = img.copy()  # detach from a file PIL keeps open (multi-frame GIF)
    except BaseException:
        img.close()
        raise
    if out is not img:
        img.close()
    return out


def validate(data: bytes, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[int, int]:
    """Check that ``data`` decodes completely; returns (width, height) or raises BadImage.

    A header check (``verify()``) accepts truncated JPEGs, so the pixels are
    decoded; JPEGs use a 1/8-scale draft decode, which still reads every byte
    of the entropy-coded data but costs ~40% less.
    """
    img = _open(data, max_pixels)
    with img:
        size = img.size
        if img.format == "JPEG":
            img.draft("L", (max(1, size[0] // 8), max(1, size[1] // 8)))
        _load(img)
    return size


_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "area": Image.Resampling.BOX,
}


def _resample(spec: Any) -> Image.Resampling:
    try:
        return _RESAMPLE[spec.interpolation]
    except KeyError:
        raise ValueError(f"unknown interpolation {spec.interpolation!r} in spec {spec.name}") from None


def _resize_target(size: tuple[int, int], spec: Any) -> tuple[int, int]:
    s = int(spec.input_size)
    if spec.resize == "center_crop":
        w, h = size
        short = max(s, round(s / float(spec.crop_fraction)))
        if w <= h:
            return short, max(short, round(h * short / w))
        return max(short, round(w * short / h)), short
    if spec.resize in ("squash", "graph"):  # the 2015 graph squashes to input_size too
        return s, s
    raise ValueError(f"unknown resize mode {spec.resize!r} in spec {spec.name}")


def prepare(img: Image.Image, spec: Any) -> np.ndarray:
    """Resize/crop an RGB image for ``spec``; returns uint8 (S, S, 3).

    ``center_crop``: shorter side -> round(S / crop_fraction), then a central
    S x S crop.  ``squash`` (and ``graph``): resize straight to S x S.  A spec
    with ``hflip`` gets the result mirrored left-right.
    """
    s = int(spec.input_size)
    if img.mode != "RGB":
        img = _to_rgb(img)
    tw, th = _resize_target(img.size, spec)
    if (tw, th) != img.size:
        img = img.resize((tw, th), _resample(spec))
    if (tw, th) != (s, s):
        left, top = int(round((tw - s) / 2.0)), int(round((th - s) / 2.0))
        img = img.crop((left, top, left + s, top + s))
    out = np.asarray(img, dtype=np.uint8)
    assert out.shape == (s, s, 3), out.shape
    if getattr(spec, "hflip", False):
        out = np.ascontiguousarray(out[:, ::-1])
    return out


def _draft(spec: Any) -> int:
    """The smallest side :func:`load_prepared` lets libjpeg decode ``spec``'s images at."""
    return _resize_target((1, 1), spec)[0] if spec.resize == "center_crop" else int(spec.input_size)


def load_prepared(path_or_bytes: str | os.PathLike | bytes, spec: Any, *,
                  max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode + :func:`prepare` in one step: the single pixel path used for features."""
    return prepare(load_rgb(path_or_bytes, max_pixels=max_pixels, draft=_draft(spec)), spec)


def load_prepared_many(data: bytes, specs: Sequence[Any], *,
                       max_pixels: int = DEFAULT_MAX_PIXELS) -> list[np.ndarray]:
    """:func:`load_prepared` for several specs, decoding the image once where that gives the same pixels.

    Decoding a Caltech-101 photo costs 0.7 ms of CPU and each resize 1.1 ms, so three backbones that
    share the decode do about a quarter less work.  A reduced-scale JPEG decode (``draft``) depends
    on the spec's size, so the specs are grouped by the draft that takes effect on *this* image: a
    photo smaller than twice every spec's input (every Caltech-101 image) is decoded once, a large JPEG
    once per distinct draft.  Each result equals ``load_prepared(data, spec)`` bit for bit.
    """
    with _open(data, max_pixels) as head:                     # the header only: format and size
        fmt, short = head.format, min(head.size)
    by_draft: dict[int | None, list[int]] = {}
    for i, spec in enumerate(specs):
        d = _draft(spec)
        by_draft.setdefault(d if fmt == "JPEG" and short >= 2 * d else None, []).append(i)
    out: list[np.ndarray | None] = [None] * len(specs)
    for draft, members in by_draft.items():
        img = load_rgb(data, max_pixels=max_pixels, draft=draft)
        with img:
            for i in members:
                out[i] = prepare(img, specs[i])
    return out  # type: ignore[return-value]


def _header_size(data: bytes) -> tuple[int, int]:
    """Best-effort (w, h) of an image rejected as too large (0, 0 when unknown)."""
    try:
        with _PIL_LIMIT_LOCK:
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                with Image.open(io.BytesIO(data)) as im:
                    return im.size
            finally:
                Image.MAX_IMAGE_PIXELS = saved
    except Exception:
        return 0, 0
