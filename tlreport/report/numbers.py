"""How the post and its figures print a fraction as a percentage: one rounding rule for both."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal


def percent(x: float, digits: int = 0) -> str:
    """``x`` in percent with ``digits`` decimals, halves rounded up (5 of 8 is 63%, as 3 of 8 is 38%).

    Python's own formatting rounds an exact half to even, so 62.5 and 37.5 would print as 62 and 38.

    >>> percent(5 / 8), percent(3 / 8), percent(0.9247, 2), percent(1.0)
    ('63%', '38%', '92.47%', '100%')
    """
    value = Decimal(repr(round(100 * float(x), 9)))     # repr: the shortest decimal, not the float's binary tail
    return f"{value.quantize(Decimal(1).scaleb(-digits), rounding=ROUND_HALF_UP)}%"
