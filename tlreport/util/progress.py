"""A tiny tqdm wrapper: a bar with rate and ETA on a terminal, silence elsewhere."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm


def is_tty() -> bool:
    """True when stderr (where bars are drawn) is an interactive terminal."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def bar(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "",
        unit: str = "img", enabled: bool = True, **kwargs: Any) -> tqdm:
    """Return a tqdm bar that is disabled when ``enabled`` is false or stderr is not a TTY."""
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not (enabled and is_tty()),
                dynamic_ncols=True, leave=False, smoothing=0.1, **kwargs)
