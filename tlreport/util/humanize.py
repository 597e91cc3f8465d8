"""Numbers for people: sizes in binary units."""

from __future__ import annotations


def human_size(n: int | float | None) -> str:
    """``1536`` -> ``'1.5 KiB'``; ``None`` or 0 -> ``'?'`` (an unknown size).

    >>> human_size(512), human_size(96_000_000), human_size(None)
    ('512 B', '91.6 MiB', '?')
    """
    if not n:
        return "?"
    size = float(n)
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    for unit in units:
        if size < 1024 or unit == units[-1]:
            break
        size /= 1024
    return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
