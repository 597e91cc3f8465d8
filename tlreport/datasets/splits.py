"""Stratified train/validation/test splits keyed by content, stable when images are added."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import numpy as np

from tlreport.errors import UserError

# --------------------------------------------------------------------------- split


def _rank_key(seed: int, sha: str) -> str:
    return hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest()


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Images per part for a class of ``n`` images (cumulative rounding).

    The cut after part ``k`` sits at ``round(n * (f_0 + ... + f_k))`` (halves
    round up), so the counts add up to ``n`` exactly, each is within one image
    of ``n * f_k``, and every cut moves by at most one when ``n`` grows by one.

    >>> split_counts(10, (0.6, 0.2, 0.2))
    [6, 2, 2]
    >>> split_counts(31, (0.6, 0.2, 0.2))
    [19, 6, 6]
    """
    cuts = [0]
    acc = 0.0
    for f in fractions[:-1]:
        acc += f
        cuts.append(min(n, int(math.floor(n * acc + 0.5 + 1e-9))))
    cuts.append(n)
    return [b - a for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) < 1 or any(f < 0 or not math.isfinite(f) for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UserError(
            f"split fractions must be non-negative and add up to 1. Received: fractions={tuple(fractions)}"
        )
    return fr


def split_by_hash(
    shas: Sequence[str],
    labels: np.ndarray,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
) -> np.ndarray:
    """Assign every image to exactly one part: 0 train, 1 validation, 2 test.

    Method (stratified, seeded, stable):

    1. Within each class, images are ranked by ``sha256(f"{seed}:{image_sha}")``
       -- a pseudo-random order that depends only on the seed and the image's
       own content hash, never on file order or on the other images.
    2. The ranked list is cut into consecutive blocks whose sizes come from
       :func:`split_counts` (cumulative rounding): per class, the counts are
       exact (they add up to the class size and each is within one image of
       ``n * fraction``), unlike TF ``retrain.py``'s hash-percentage rule whose
       counts only match the fractions on average.

    Why cumulative rounding rather than largest-remainder quotas: both give
    counts within one image of the ideal, but the cumulative cuts are monotone
    in ``n`` (largest remainder is not -- the Alabama paradox), so adding one
    image to a class moves **at most two** existing images (one per cut) to a
    different part; images in other classes never move.

    Parameters
    ----------
    shas : content hashes of the images (hex strings), aligned with ``labels``.
    labels : integer (or any hashable) class label per image.
    fractions : fraction of each class per part; non-negative, summing to 1.
    seed : changes the ranking, hence the split.

    Returns
    -------
    ``np.ndarray`` of ``int8`` part ids, one per image.

    A part can be empty for a very small class (a class of 3 images gets
    2 train, 0 validation, 1 test with the default fractions).
    """
    fr = _check_fractions(fractions)
    labels = np.asarray(labels)
    if len(shas) != len(labels):
        raise ValueError(f"shas and labels differ in length: {len(shas)} != {len(labels)}")
    parts = np.full(len(labels), -1, dtype=np.int8)
    keys = np.array([_rank_key(seed, s) for s in shas], dtype=object)
    for cls in np.unique(labels) if len(labels) else []:
        idx = np.flatnonzero(labels == cls)
        # stable sort: identical files (same sha) keep their manifest order
        ranked = idx[np.argsort(keys[idx], kind="stable")]
        start = 0
        for part, count in enumerate(split_counts(len(ranked), fr)):
            parts[ranked[start : start + count]] = part
            start += count
    return parts


def empty_held_out_part(parts: np.ndarray) -> str | None:
    """``"validation"`` or ``"test"`` if :func:`split_by_hash` gave that part no image (too few images for
    the fractions), else None: the new layer needs both."""
    return next((name for i, name in ((1, "validation"), (2, "test")) if not np.any(parts == i)), None)
