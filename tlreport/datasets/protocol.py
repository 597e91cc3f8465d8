"""The Zeiler & Fergus protocol (arXiv:1311.2901v3, section 5.2): n training images per class, a capped test set, seeded folds."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from tlreport.errors import UserError

# ----------------------------------------------------------------- protocols


@dataclass(frozen=True)
class DatasetProtocol:
    """The Zeiler & Fergus settings for one dataset."""

    dataset: str
    settings: tuple[int, ...]
    test_cap: int
    background: str
    num_classes: int
    n_splits: int = 5


PROTOCOLS: dict[str, DatasetProtocol] = {
    "caltech101": DatasetProtocol("caltech101", (15, 30), 50, "BACKGROUND_Google", 102),
    "caltech256": DatasetProtocol("caltech256", (15, 30, 45, 60), 25, "257.clutter", 257),
}


# -------------------------------------------------------------------- splits


class ProtocolSplit:
    """Per-class random train/test folds: ``n_train`` per class, the rest (capped) for test.

    The folds depend only on the labels (and, if given, the per-image ``keys``),
    ``seed``, ``n_train``, ``test_cap`` and ``n_splits`` -- never on features --
    so every backbone and head sees exactly the same images.  Fold ``s`` draws
    from its own child of ``SeedSequence(seed)``, so asking for more folds does
    not change the earlier ones.  With ``keys`` (e.g. image sha256 strings) the
    images of a class are ordered by key before drawing, which makes the folds
    independent of the order the manifest happened to list the files in.

    Parameters
    ----------
    n_train : int
        Training images per class.
    test_cap : int or None
        At most this many of the remaining images per class are tested; ``None``
        tests on all of them.
    n_splits : int
        Number of folds.
    seed : int
        The one seed every draw derives from.

    Examples
    --------
    >>> labels = np.repeat([0, 1], [5, 7])
    >>> folds = list(ProtocolSplit(n_train=3, test_cap=2, n_splits=2, seed=0).split(labels))
    >>> [(len(tr), len(te)) for tr, te in folds]
    [(6, 4), (6, 4)]
    """

    def __init__(self, *, n_train: int, test_cap: int | None, n_splits: int = 5, seed: int = 0):
        self.n_train = n_train
        self.test_cap = test_cap
        self.n_splits = n_splits
        self.seed = seed

    def _validate(self, labels: np.ndarray, class_names: Sequence[str] | None,
                  keys: Sequence[str] | None) -> tuple[np.ndarray, int]:
        if int(self.n_train) != self.n_train or self.n_train < 1:
            raise UserError(f"n_train must be a positive integer. Received: n_train={self.n_train!r}")
        if self.test_cap is not None and (int(self.test_cap) != self.test_cap or self.test_cap < 1):
            raise UserError(f"test_cap must be a positive integer or None. Received: test_cap={self.test_cap!r}")
        if int(self.n_splits) != self.n_splits or self.n_splits < 1:
            raise UserError(f"n_splits must be a positive integer. Received: n_splits={self.n_splits!r}")
        labels = np.asarray(labels)
        if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
            raise UserError(f"labels must be a 1-d integer array. Received: shape={labels.shape}, "
                            f"dtype={labels.dtype}")
        if labels.size and labels.min() < 0:
            raise UserError("labels must be non-negative class indices.")
        num_classes = len(class_names) if class_names is not None else int(labels.max(initial=-1)) + 1
        if labels.size and labels.max() >= num_classes:
            raise UserError(f"label {int(labels.max())} has no class name ({num_classes} names given).")
        if keys is not None and len(keys) != len(labels):
            raise UserError(f"keys must have one entry per image: {len(keys)} keys for {len(labels)} labels.")
        counts = np.bincount(labels, minlength=num_classes)
        need = self.n_train + 1
        short = np.flatnonzero(counts < need)
        if short.size:
            names = [class_names[i] if class_names is not None else f"class {i}" for i in short]
            listed = ", ".join(f"{n!r} has {counts[i]}" for n, i in zip(names, short, strict=True))
            raise UserError(
                f"{short.size} class(es) have too few images for {self.n_train} training images per class "
                f"(at least {need} needed, n_train + 1 test image): {listed}. Lower n_train or drop "
                f"these classes.")
        return labels, num_classes

    def split(self, labels: np.ndarray, class_names: Sequence[str] | None = None,
              keys: Sequence[str] | None = None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(train_idx, test_idx)`` index arrays (sorted) for each fold."""
        labels, num_classes = self._validate(labels, class_names, keys)
        members = []
        for c in range(num_classes):
            idx = np.flatnonzero(labels == c)
            if keys is not None:
                idx = idx[np.argsort(np.asarray([str(keys[i]) for i in idx]), kind="stable")]
            members.append(idx)
        for child in np.random.SeedSequence(self.seed).spawn(self.n_splits):
            rng = np.random.default_rng(child)
            train, test = [], []
            for idx in members:
                order = idx[rng.permutation(idx.size)]
                train.append(order[: self.n_train])
                rest = order[self.n_train:]
                test.append(rest if self.test_cap is None else rest[: self.test_cap])
            yield np.sort(np.concatenate(train)), np.sort(np.concatenate(test))

    def get_n_splits(self) -> int:
        return self.n_splits


def protocol_splits(labels: np.ndarray, class_names: Sequence[str] | None, *, n_train: int,
                    test_cap: int | None, n_splits: int = 5, seed: int = 0,
                    keys: Sequence[str] | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """All folds of :class:`ProtocolSplit` as a list of ``(train_idx, test_idx)``.

    Raises :class:`~tlreport.errors.UserError` naming every class with fewer than
    ``n_train + 1`` images.
    """
    splitter = ProtocolSplit(n_train=n_train, test_cap=test_cap, n_splits=n_splits, seed=seed)
    return list(splitter.split(labels, class_names, keys))
