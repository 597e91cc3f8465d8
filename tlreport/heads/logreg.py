"""L2-regularised multinomial logistic regression, its C chosen on a hold-out of the training images."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlreport.heads.base import Predictor
from tlreport.heads.penalty import choose, fit_logistic, in_basis, row_space, scale, scaler


@dataclass(frozen=True)
class LogRegHead:
    """L2 multinomial logistic regression (L-BFGS) on standardised features.

    ``C`` is chosen on a held-out third of the training split
    (:func:`tlreport.heads.penalty.choose`: ``C_grid`` walked from the strongest
    penalty up with warm starts, stopping after ``patience`` worse values); the
    final fit on the whole split starts from the chosen candidate's solution.
    Every scaler is fitted on the images it trains on.  Work is in float32.

    BLAS is held to ``blas_threads`` during the fit: L-BFGS makes many small
    BLAS calls on the long parameter vector, which a second thread only slows,
    and one thread makes the float32 results independent of the core count.
    ``processes`` is how many of the grid's fits run at once in worker
    processes (default: up to 2 cores); each is seeded on its own, so the rows
    do not change.
    """

    C_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
    patience: int = 2
    tol_select: float = 1e-3
    tol: float = 1e-4
    max_iter: int = 300
    dtype: Any = np.float32
    blas_threads: int | None = 1
    processes: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    name: str = "logreg"
    #: how the post describes this head (a head says what it is in one place: here)
    description: str = ("L2-regularised multinomial logistic regression (L-BFGS) on standardised "
                        "features, its C (the inverse of the penalty's strength: a smaller C, a stronger "
                        "penalty) chosen on a held-out third of the training images")

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            return self._fit(X, y, num_classes=num_classes, seed=seed)

    def _fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        X = np.asarray(X, dtype=self.dtype)
        grid = sorted(self.C_grid)                        # the strongest penalty first
        choice = choose(X, y, grid, seed=seed, patience=self.patience, tol=self.tol_select,
                        max_iter=self.max_iter, dtype=self.dtype)
        C = grid[choice.index] if choice is not None else grid[len(grid) // 2]
        stats = scaler(X)
        Xs = scale(X, stats, self.dtype)
        V = None
        if (narrow := row_space(Xs)) is not None:
            Xs, V = narrow
        # every class is in the hold-out's fit part, so the chosen candidate's classes are the split's
        start = choice.solution.in_basis(V) if choice is not None else None
        model = fit_logistic(Xs, y, C, start=start, tol=self.tol, max_iter=self.max_iter)
        dtype = self.dtype

        def predict(Xq: np.ndarray) -> np.ndarray:
            return model.proba(in_basis(scale(Xq, stats, dtype), V), num_classes)

        predict.C = C  # type: ignore[attr-defined]
        predict.chosen = {"C": C}  # type: ignore[attr-defined]
        return predict
