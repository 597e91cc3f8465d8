"""Heads trained on cached features, in one registry keyed by the names the config uses.

Adding a head is one module with a class that has ``name``, ``description``
(one sentence for the post) and ``fit(X, y, num_classes, seed) -> Predictor``,
and one line in :data:`HEADS`; the config schema and the post read the registry.
"""

from __future__ import annotations

from collections.abc import Callable

from tlreport.errors import UserError
from tlreport.heads.base import Head
from tlreport.heads.logreg import LogRegHead
from tlreport.heads.softmax_sgd import SoftmaxSGDHead

HEADS: dict[str, Callable[[], Head]] = {
    "softmax_sgd": SoftmaxSGDHead,
    "logreg": LogRegHead,
}


def get_head(head: str | Head) -> Head:
    """A head by registry name (``softmax_sgd``, ``logreg``), or the head object itself."""
    if not isinstance(head, str):
        return head
    try:
        return HEADS[head]()
    except KeyError:
        raise UserError(f"Unknown head {head!r}; known heads: {', '.join(sorted(HEADS))}.") from None
