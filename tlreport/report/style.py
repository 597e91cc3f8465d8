"""The house style of every figure and deterministic saving (PNG and SVG)."""

from __future__ import annotations

import contextlib
import io
import os
import re
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import matplotlib
import numpy as np
from cycler import cycler
from matplotlib.figure import Figure

DPI = 160
WIDTH = 7.5  # inches: 1200 px at DPI, a blog column at 2x
#: Okabe-Ito: distinguishable with colour-vision deficiencies and in greyscale order
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
WRONG_COLOR = "#B2182B"
_SVG_SALT = "tlreport"

matplotlib.use("Agg")   # figures are files; never open a window

#: fonts that draw what DejaVu Sans cannot (CJK and other scripts in class names), used where installed:
#: matplotlib falls back glyph by glyph along font.family
FALLBACK_FONTS = ("Noto Sans CJK JP", "Noto Sans CJK SC", "Noto Sans", "Droid Sans Fallback", "WenQuanYi Zen Hei",
                  "Arial Unicode MS")
#: characters no font of font.family could draw in a saved figure (a box there), for one line of warning
MISSING_GLYPHS: set[str] = set()


def _installed_fallbacks() -> list[str]:
    from matplotlib import font_manager

    names = {f.name for f in font_manager.fontManager.ttflist}
    return [f for f in FALLBACK_FONTS if f in names]

HOUSE_RC: dict[str, Any] = {
    "figure.dpi": DPI,
    "savefig.dpi": DPI,
    "figure.facecolor": "white",
    "savefig.facecolor": "white",
    "figure.constrained_layout.use": True,
    "font.family": ["DejaVu Sans", *_installed_fallbacks()],
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "legend.frameon": False,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#d0d0d0",
    "grid.linewidth": 0.6,
    "grid.linestyle": ":",
    "axes.prop_cycle": cycler(color=PALETTE),
    "lines.linewidth": 1.8,
    "image.cmap": "viridis",
    "image.interpolation": "nearest",
    "svg.hashsalt": _SVG_SALT,
    "svg.fonttype": "path",
    "path.simplify": True,
}

# ----------------------------------------------------------------------------- phone variants
#: a chart's phone variant: narrower, so that its text, shown at a phone's ~350 CSS px column, reads at
#: >= 11 CSS px (the post serves it through <picture> below :data:`PHONE_MEDIA_MAX_PX`)
PHONE_WIDTH = 3.6   # inches
PHONE_DPI = 200     # 720 px: about 2x a phone's column
#: the smallest font of a phone variant, in points: 9.5 pt on 3.6 in shown at 347 CSS px is 12.7 CSS px
PHONE_MIN_PT = 9.5
PHONE_MEDIA_MAX_PX = 600
PHONE_RC: dict[str, Any] = {
    "font.size": 10.5,
    "axes.titlesize": 10.5,
    "axes.labelsize": 10.5,
    "xtick.labelsize": PHONE_MIN_PT,
    "ytick.labelsize": PHONE_MIN_PT,
    "legend.fontsize": PHONE_MIN_PT,
    "legend.title_fontsize": PHONE_MIN_PT,
    "lines.linewidth": 1.6,
}
#: the PNG text chunk that records the smallest text of a chart, in image pixels
TEXT_PX_KEY = "tlreport:text-px"


@contextlib.contextmanager
def house_style() -> Iterator[dict[str, Any]]:
    """Context manager applying :data:`HOUSE_RC`; yields the rc dict.

    >>> with house_style():
    ...     fig = Figure(figsize=(WIDTH, 4))
    """
    with matplotlib.rc_context(HOUSE_RC):
        yield HOUSE_RC


@contextlib.contextmanager
def phone_style() -> Iterator[dict[str, Any]]:
    """:func:`house_style` with the phone variant's larger fonts."""
    rc = {**HOUSE_RC, **PHONE_RC}
    with matplotlib.rc_context(rc):
        yield rc


def phone_path(path: str | os.PathLike) -> Path:
    """``loss`` -> ``loss.phone`` (no suffix): where a chart's phone variant is written."""
    return _with_suffix(_stem(path), ".phone")


def min_text_pt(fig: Figure) -> float | None:
    """The font size (pt) of the smallest non-empty visible text in ``fig``, after it has been drawn."""
    from matplotlib.text import Text

    sizes = [t.get_fontsize() for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and _drawn(t)]
    return min(sizes) if sizes else None


def _drawn(t: Any) -> bool:
    """False for a tick label of a tick outside its axis' view (matplotlib keeps but does not draw it)."""
    axes = t.axes
    if axes is None:
        return True
    for axis in (axes.xaxis, axes.yaxis):
        for tick in axis.get_major_ticks() + axis.get_minor_ticks():
            if t is tick.label1 or t is tick.label2:
                lo, hi = sorted(axis.get_view_interval())
                loc = tick.get_loc()
                return loc is None or lo - 1e-9 * max(1.0, abs(hi - lo)) <= loc <= hi + 1e-9 * max(1.0, abs(hi - lo))
    return True


def read_text_px(path: str | os.PathLike) -> float | None:
    """The smallest text of a chart written by :func:`save_figure`, in image pixels (None if not recorded)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            value = getattr(im, "text", {}).get(TEXT_PX_KEY)
    except OSError:
        return None
    return float(value) if value else None


def _stem(path: str | os.PathLike) -> Path:
    p = Path(path)
    return p.with_suffix("") if p.suffix.lower() in (".png", ".svg", ".jpg") else p


def _with_suffix(stem: Path, suffix: str) -> Path:
    return stem.parent / (stem.name + suffix)  # names may contain dots


def _atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Render into memory, then write through :func:`tlreport.util.files.atomic_write_bytes`."""
    from tlreport.util.files import atomic_write_bytes

    buf = io.BytesIO()
    write(buf)
    atomic_write_bytes(path, buf.getvalue())
    return path


def new_figure(width: float = WIDTH, height: float = 4.0) -> Figure:
    """A pyplot-free figure in the house style (call inside :func:`house_style`)."""
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def save_figure(fig: Figure, path: str | os.PathLike, *, svg: bool = False, dpi: int = DPI,
                palette: bool = False) -> list[Path]:
    """Write ``fig`` as ``<path>.png`` (and ``<path>.svg``); return the paths written.

    ``path`` is given without a suffix (a ``.png``/``.svg`` suffix is dropped).
    PNG at ``dpi`` (:data:`DPI` unless a huge figure needs fewer pixels), RGB
    (the house figures are opaque) and with no ``Software`` chunk; SVG with a
    fixed hash salt and no date, so both are byte-reproducible.  ``palette=True``
    stores a line or bar chart in 256 colours, a third of the bytes with no
    visible change; figures with photographs or smooth colour maps keep full
    colour.  Pixel size is exactly ``figsize * dpi`` (no tight bounding box).
    The PNG records the size of its smallest text in image pixels (points
    times ``dpi / 72``) in a ``tlreport:text-px`` text chunk
    (:func:`read_text_px`), so the post can say how large a reader sees it.
    """
    from PIL import Image, PngImagePlugin

    stem = _stem(path)

    def write_png(f: IO[bytes]) -> None:
        raw = io.BytesIO()
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always")
            fig.savefig(raw, format="png", dpi=dpi, metadata={"Software": None})
        for w in said:                  # a glyph no font has: one line from the stage, not one per label
            m = re.match(r"Glyph (\d+) ", str(w.message))
            if m and "missing from font" in str(w.message):
                MISSING_GLYPHS.add(chr(int(m.group(1))))
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        raw.seek(0)
        with Image.open(raw) as im:
            rgb = im.convert("RGB")
        if palette:
            rgb = rgb.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE)
        info = None
        pt = min_text_pt(fig)
        if pt is not None:
            info = PngImagePlugin.PngInfo()
            info.add_text(TEXT_PX_KEY, f"{pt * dpi / 72:.2f}")
        rgb.save(f, format="PNG", optimize=True, pnginfo=info)

    out = [_atomic_write(_with_suffix(stem, ".png"), write_png)]
    if svg:
        with matplotlib.rc_context({"svg.hashsalt": _SVG_SALT, "svg.fonttype": "path"}):
            out.append(
                _atomic_write(
                    _with_suffix(stem, ".svg"),
                    lambda f: fig.savefig(f, format="svg", metadata={"Date": None, "Creator": None}),
                )
            )
    return out


#: JPEG quality of photo thumbnails: at 2x the shown size, artefacts are below what a reader sees
#: (PNG keeps every pixel of a photo and weighs 5-10 times more for no visible gain)
JPEG_QUALITY = 75


def _to_uint8(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image)
    if img.dtype != np.uint8:
        img = img.astype(np.float64)
        if img.size and np.nanmax(img) <= 1.5:
            img = img * 255.0
        img = np.clip(np.nan_to_num(img), 0, 255).round().astype(np.uint8)
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    return img


def _short(name: str, limit: int = 24) -> str:
    """A class name as a figure label: one line, shortened, ``$`` kept literal (not mathtext), control
    characters and undecodable bytes as escapes (no font has a glyph for them)."""
    from tlreport.util.text import display_name

    name = display_name(" ".join(str(name).replace("_", " ").split()))
    name = name if len(name) <= limit else name[: limit - 1].rstrip() + "…"
    return name.replace("$", r"\$")
