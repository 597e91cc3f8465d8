"""The seed's head in the Zeiler & Fergus grid: a softmax layer, SGD with momentum, its L2 penalty chosen on a hold-out."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlreport.heads.base import Predictor
from tlreport.heads.penalty import choose, sgd_l2_as_C
from tlreport.heads.softmax import TrainedHead, predict_proba, train_softmax_many

#: CPU flags under which ``precision = "auto"`` trains in bfloat16: AMX and AVX-512 BF16, where the grid
#: ran 1.52x and 1.21x as fast and every row of the Caltech-101 table held within 0.01 points
#: (docs/performance.md, *bf16 in the experiment grid*).  AVX2 has no bf16 arithmetic: float32 there.
AUTO_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})


def auto_precision(setting: str, cpu_flags: frozenset[str] | set[str]) -> str:
    """``experiments.precision``: ``"auto"`` resolved for a CPU with ``cpu_flags``; other values as they are."""
    if setting != "auto":
        return setting
    return "bfloat16" if AUTO_BF16_FLAGS & set(cpu_flags) else "float32"



@dataclass(frozen=True)
class SoftmaxSGDHead:
    """The seed's head: a softmax layer trained with SGD + momentum (``train_softmax``).

    Inside the protocol there is no validation set, and carving one out of the
    training split would train on fewer than ``n_train`` images per class (at 15
    per class every image counts).  So the head trains a *fixed* budget on all
    ``n_train`` images per class: ``epochs`` epochs under the trainer's cosine
    schedule, which decays the learning rate to zero at the last epoch, with
    early stopping switched off.

    Its regulariser is the trainer's L2 penalty weighted per feature by the
    feature's variance (``l2_weighting="variance"``: the plain penalty of
    standardised features), on the raw features (SGD converges on their
    geometry in 100 epochs; standardised ones need far more).  Its strength is
    chosen from ``l2_grid`` on a held-out third of the training split, on the
    head's exact L-BFGS twin (:mod:`tlreport.heads.penalty`), so choosing costs
    a few L-BFGS fits instead of an SGD run per candidate and fold; then ONE SGD
    run per fold trains the head.  With a single value in ``l2_grid`` nothing is
    chosen.  Nothing is tuned on test images.  ``train_kwargs`` passes any other
    :func:`train_softmax` option.  Why these settings: docs/performance.md.
    """

    epochs: int = 100
    l2_grid: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
    #: the matrix products' precision, "float32" or "bfloat16" (mixed: float32 weights and updates)
    precision: str = "float32"
    train_kwargs: dict[str, Any] = field(
        default_factory=lambda: {"lr": 0.03, "standardize": False, "l2_weighting": "variance"})
    #: the twin's L-BFGS tolerance: tight, because a fit stopped early at a weak penalty scores like a
    #: stronger one (at 1e-3 the hold-out chose the strongest l2 on 5 of 40 Caltech-101 fits, at 1e-4 on 3)
    tol_select: float = 1e-4
    #: worker processes choosing the penalties of side-by-side folds (each seeded on its own)
    processes: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    name: str = "softmax_sgd"
    #: it trains with TensorFlow (the grid gives a Ray task's TensorFlow one thread, the log names the device)
    uses_tensorflow: bool = True
    #: how the post describes this head
    description: str = ("the seed's head, a softmax layer trained with SGD with momentum on cross-entropy, "
                        "on the raw bottleneck features of all n training images (100 epochs, learning rate "
                        "0.03 with a cosine schedule, the last epoch's weights kept), plus an L2 penalty on "
                        "the weights in which each feature counts by its variance (the plain penalty of "
                        "standardised features); the penalty's strength is chosen on a held-out third of the "
                        "training images, scored by the same objective solved exactly (L-BFGS)")

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        return self.fit_many([X], [y], num_classes=num_classes, seeds=[seed])[0]

    def _kwargs(self) -> dict[str, Any]:
        kwargs = {"schedule": "cosine", "patience": None, "epochs": self.epochs, "precision": self.precision,
                  **self.train_kwargs}
        kwargs.pop("l2", None)
        return kwargs

    def choose(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> float:
        """The ``l2`` for training features ``(X, y)``, chosen on a held-out third of them by the twin."""
        from threadpoolctl import threadpool_limits

        grid = sorted(self.l2_grid, reverse=True)                     # the strongest penalty first
        if len(grid) == 1:
            return grid[0]
        with threadpool_limits(limits=1, user_api="blas"):
            # the twin is exact for the head's own settings (a variance-weighted penalty on raw features, or
            # any penalty on standardised ones); a uniform penalty on raw features is scored as weighted
            standardized = bool(self._kwargs().get("standardize", True))
            choice = choose(X, y, lambda X_fit: [sgd_l2_as_C(X_fit, l2, standardized=standardized)
                                                 for l2 in grid], seed=seed, patience=len(grid), tol=self.tol_select)
        return grid[choice.index] if choice is not None else grid[len(grid) // 2]

    def fit_many(self, Xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], *, num_classes: int,
                 seeds: Sequence[int]) -> list[Predictor]:
        """Several same-shaped folds at once (:func:`train_softmax_many`).

        Each fold gets exactly the head :meth:`fit` would give it alone.
        """
        Xs = [np.asarray(X, dtype=np.float32) for X in Xs]
        ys = [np.asarray(y) for y in ys]
        if self.processes > 1 and len(Xs) > 1:
            from joblib import Parallel, delayed

            l2s = Parallel(n_jobs=self.processes, backend="loky")(
                delayed(self.choose)(X, y, seed=int(s)) for X, y, s in zip(Xs, ys, seeds, strict=True))
        else:
            l2s = [self.choose(X, y, seed=int(s)) for X, y, s in zip(Xs, ys, seeds, strict=True)]
        return self.train(Xs, ys, l2s, num_classes=num_classes, seeds=seeds)

    def train(self, Xs: Sequence[np.ndarray], ys: Sequence[np.ndarray], l2s: Sequence[float], *,
              num_classes: int, seeds: Sequence[int]) -> list[Predictor]:
        """One SGD run per fold with its chosen ``l2``, the folds side by side (:func:`train_softmax_many`)."""
        empty = np.zeros((0, Xs[0].shape[1]), np.float32), np.zeros(0, np.int32)
        heads = train_softmax_many([(X, y, *empty) for X, y in zip(Xs, ys, strict=True)], seeds=seeds,
                                   num_classes=num_classes, l2=list(l2s), **self._kwargs())

        def predictor(head: TrainedHead) -> Predictor:
            def predict(Xq: np.ndarray) -> np.ndarray:
                return predict_proba(head, Xq)

            predict.l2 = head.params["l2"]  # type: ignore[attr-defined]
            predict.chosen = {"l2": head.params["l2"]}  # type: ignore[attr-defined]
            return predict

        return [predictor(h) for h in heads]
