"""L2-regularised multinomial logistic regression, C chosen by cross-validation."""

from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tlreport.heads.base import Predictor, _full_proba


@dataclass(frozen=True)
class LogRegHead:
    """L2 multinomial logistic regression (lbfgs) on standardised features, C tuned by CV.

    The scaler is fit on the training split only; ``C`` is chosen by stratified
    ``cv_folds``-fold cross-validation *inside the training split* (accuracy, ties
    broken by log-loss, then by the smaller C), each CV split standardised by its
    own training part, so no validation fold's images shape the scaling it is
    scored under.  The grid is walked from the
    strongest regularisation up, each fold warm-starting from its previous
    solution, and the walk stops once ``patience`` consecutive values score below
    the best so far.  The final fit on the whole split warm-starts from the mean
    of the fold solutions at the chosen C.  Work is done in float32, which halves
    the cost of every matrix product.

    BLAS is limited to ``blas_threads`` (default 1) during the fit: SciPy's
    L-BFGS-B (C translation, SciPy >= 1.15) makes many level-1 BLAS calls on the
    130k-long parameter vector, and multi-threaded OpenBLAS makes each of them
    slow -- one thread was 4-5x faster on 2 cores (benchmarks/grid.py).  It also
    makes the float32 results independent of the machine's core count.
    ``n_jobs > 1`` fits the CV folds of one C in that many threads (each with
    ``blas_threads`` BLAS threads); results do not change.  ``processes`` is how
    many of :func:`run_grid`'s folds run at once in worker processes (default:
    up to 2 cores); each fold is seeded on its own, so results do not change.
    """

    C_grid: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0, 3.0, 10.0)
    cv_folds: int = 3
    patience: int = 2
    tol_cv: float = 1e-3
    tol: float = 1e-4
    max_iter: int = 300
    dtype: Any = np.float32
    blas_threads: int | None = 1
    n_jobs: int = 1
    processes: int = field(default_factory=lambda: min(2, os.cpu_count() or 1))
    name: str = "logreg"
    #: how the post describes this head (a head says what it is in one place: here)
    description: str = ("L2-regularised multinomial logistic regression (scikit-learn, lbfgs) on standardised "
                        "features, its C chosen by 3-fold cross-validation on the training images only")

    def select_C(self, X: np.ndarray, y: np.ndarray, *, seed: int
                 ) -> tuple[float, dict[float, float], list[tuple[np.ndarray, np.ndarray]] | None]:
        """Cross-validate ``C`` on the training features ``X`` (each CV split standardised by its own
        training part).

        Returns the chosen C, the mean CV accuracy per C tried, and the fold
        solutions ``(coef, intercept)`` at the chosen C (``None`` when CV was
        impossible because a class has fewer than 2 images).
        """
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from sklearn.preprocessing import StandardScaler

        grid = sorted(self.C_grid)
        counts = np.bincount(y)
        n_min = int(counts[counts > 0].min()) if y.size else 0
        folds = min(self.cv_folds, n_min)
        if folds < 2 or len(grid) == 1:
            return grid[len(grid) // 2], {}, None
        cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=int(seed) % (2**32))
        fold_idx = list(cv.split(X, y))
        models = [LogisticRegression(C=grid[0], solver="lbfgs", tol=self.tol_cv, max_iter=self.max_iter,
                                     warm_start=True) for _ in fold_idx]
        scores: dict[float, float] = {}
        best_key: tuple[float, float, float] | None = None
        best_C, best_sol, worse = grid[0], None, 0
        parts = []
        for tr, va in fold_idx:
            scaler = StandardScaler().fit(X[tr])
            parts.append((scaler.transform(X[tr]).astype(self.dtype, copy=False), y[tr],
                          scaler.transform(X[va]).astype(self.dtype, copy=False), y[va]))
        k = int(y.max()) + 1

        def run_fold(i: int, C: float) -> tuple[float, float, tuple[np.ndarray, np.ndarray]]:
            model, (Xa, ya, Xv, yv) = models[i], parts[i]
            model.set_params(C=C)
            model.fit(Xa, ya)
            p = _full_proba(model.predict_proba(Xv), model.classes_, k)
            acc = float(np.mean(p.argmax(1) == yv))
            loss = float(-np.mean(np.log(np.clip(p[np.arange(yv.size), yv], 1e-12, None))))
            return acc, loss, (model.coef_.copy(), model.intercept_.copy())

        pool = ThreadPoolExecutor(self.n_jobs) if self.n_jobs > 1 else None
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # lbfgs may stop at max_iter on a CV fit
                for C in grid:
                    if pool is None:
                        out = [run_fold(i, C) for i in range(len(models))]
                    else:
                        out = list(pool.map(run_fold, range(len(models)), [C] * len(models)))
                    acc, loss, sol = ([o[j] for o in out] for j in range(3))
                    scores[C] = float(np.mean(acc))
                    key = (scores[C], -float(np.mean(loss)), -C)
                    if best_key is None or key > best_key:
                        best_key, best_C, best_sol, worse = key, C, sol, 0
                    else:
                        worse += 1
                        if worse >= self.patience:
                            break
        finally:
            if pool is not None:
                pool.shutdown()
        return best_C, scores, best_sol

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=self.blas_threads, user_api="blas"):
            return self._fit(X, y, num_classes=num_classes, seed=seed)

    def _fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        X = np.asarray(X, dtype=self.dtype)
        C, _, sols = self.select_C(X, y, seed=seed)
        scaler = StandardScaler().fit(X)
        Xs = scaler.transform(X).astype(self.dtype, copy=False)
        model = LogisticRegression(C=C, solver="lbfgs", tol=self.tol, max_iter=self.max_iter,
                                   warm_start=sols is not None)
        if sols is not None and all(s[0].shape == sols[0][0].shape for s in sols):
            model.coef_ = np.mean([s[0] for s in sols], axis=0)
            model.intercept_ = np.mean([s[1] for s in sols], axis=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(Xs, y)
        dtype = self.dtype

        def predict(Xq: np.ndarray) -> np.ndarray:
            Xq = scaler.transform(np.asarray(Xq, dtype=dtype)).astype(dtype, copy=False)
            return _full_proba(model.predict_proba(Xq), model.classes_, num_classes)

        predict.C = C  # type: ignore[attr-defined]
        predict.chosen = {"C": C}  # type: ignore[attr-defined]
        return predict
