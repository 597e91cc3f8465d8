"""What a head is: something fitted on features that predicts class probabilities."""

from __future__ import annotations

from typing import Protocol

import numpy as np

# --------------------------------------------------------------------- heads


class Predictor(Protocol):
    """A fitted head: class probabilities, ``(n, num_classes)``, columns in label order.

    A head whose fit chooses a setting (its penalty, on a hold-out) says what it chose as an attribute of the
    predictor, ``predict.chosen = {"C": 0.1}``; the grid records it per fit and the post counts it.
    """

    def __call__(self, X: np.ndarray) -> np.ndarray: ...


class Head(Protocol):
    """A classifier trained on one fold's training features.

    Optional, read by the grid (:mod:`tlreport.heads.grid`): ``fit_many`` trains same-shaped folds side by
    side; ``choose(X, y, seed)`` and ``train(Xs, ys, chosen, num_classes, seeds)`` split choosing a setting
    from training, so the grid chooses for every fit at once in worker processes; ``processes`` is how
    many; ``uses_tensorflow`` says the head trains with TensorFlow.
    """

    name: str
    description: str    # one sentence for the post

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor: ...


def _softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax of logits ``z`` (n, k), in their dtype."""
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _full_proba(proba: np.ndarray, classes: np.ndarray, num_classes: int) -> np.ndarray:
    if proba.shape[1] == num_classes and np.array_equal(classes, np.arange(num_classes)):
        return proba
    out = np.zeros((proba.shape[0], num_classes), dtype=proba.dtype)
    out[:, classes] = proba
    return out
