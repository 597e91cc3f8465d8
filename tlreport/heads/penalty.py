"""Choosing a head's L2 penalty on its training images: one hold-out, L-BFGS warm-started along the grid.

Both heads of the grid choose their penalty here, on the same problem:
multinomial logistic regression on standardised features.  For ``logreg``
that *is* the head.  For ``softmax_sgd`` it is an exact twin: its objective,
mean cross-entropy on raw features plus ``l2 * sum_d (v_d / mean(v)) * W_d**2``
(the variance-weighted penalty), is that of logistic regression on
standardised features at ``C = mean(v) / (2 * n * l2)``, so the optimum it
trains towards is the twin's and its penalty can be scored by L-BFGS in a
fraction of an SGD run (:func:`sgd_l2_as_C`).

A third of the training split (stratified, seeded) is held out; the candidates
are fitted on the rest from the strongest penalty to the weakest, each fit
starting where the previous one ended, and scored on the held-out images
(accuracy, ties broken by log-loss, then by the stronger penalty).  The walk
stops after ``patience`` candidates in a row score below the best.  Test images
never take part.  Why a hold-out and not k-fold cross-validation: see
docs/performance.md, *Choosing the penalty*.

The fits are :func:`fit_logistic`: the objective written out in NumPy and
minimised by SciPy's L-BFGS-B with scikit-learn's settings, to scikit-learn's
multinomial optimum (tested), without its per-fit overhead (docs/performance.md
says what that saves).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tlreport.heads.base import _full_proba, _softmax

#: a candidate "without penalty" (``l2 = 0``) is fitted at this C instead of an infinite one
C_MAX = 1e12


@dataclass(frozen=True)
class Logistic:
    """A fitted multinomial logistic regression: one weight vector and intercept per class it saw."""

    coef: np.ndarray         # (k, D)
    intercept: np.ndarray    # (k,)
    classes: np.ndarray      # (k,) the labels its rows stand for, ascending

    def proba(self, X: np.ndarray, num_classes: int) -> np.ndarray:
        """Class probabilities of ``X``, ``(n, num_classes)``; a class it never saw gets 0."""
        logits = X @ self.coef.T.astype(X.dtype, copy=False) + self.intercept.astype(X.dtype, copy=False)
        return _full_proba(_softmax(logits), self.classes, num_classes)

    def in_basis(self, V: np.ndarray | None) -> Logistic:
        """The same model for features ``X @ V`` (``V`` orthonormal columns, as :func:`row_space` gives them)."""
        return self if V is None else Logistic(self.coef @ V, self.intercept, self.classes)


def fit_logistic(X: np.ndarray, y: np.ndarray, C: float, *, start: Logistic | None = None, tol: float = 1e-4,
                 max_iter: int = 300) -> Logistic:
    """L2-regularised multinomial logistic regression by L-BFGS, ``start`` its warm start.

    The objective is scikit-learn's multinomial one, mean cross-entropy plus
    ``||W||**2 / (2 C n)`` with the intercepts unpenalised, minimised by the same
    L-BFGS-B with the same stopping rules: for three or more classes it reaches
    ``LogisticRegression(C=C, tol=tol, max_iter=max_iter)``'s optimum (tested).
    It keeps one weight vector per class with two classes too, where
    scikit-learn fits one vector w (ours are w/2 and -w/2 at the optimum, half
    the penalty): there ours at ``C`` is scikit-learn's at ``2 C``.  It is
    written here because on the grid's small problems scikit-learn's checks and
    dispatch, per fit and per iteration, cost as much as the arithmetic.  The
    products run in ``X``'s dtype; the loss and the weights are float64.
    """
    import scipy.optimize

    classes, codes = np.unique(y, return_inverse=True)
    n, d = X.shape
    k = len(classes)
    onehot = np.zeros((n, k), X.dtype)
    onehot[np.arange(n), codes] = 1.0
    penalty = 1.0 / (C * n)

    def loss_and_gradient(w: np.ndarray) -> tuple[float, np.ndarray]:
        W = w[:-k].reshape(k, d)
        Z = X @ W.T.astype(X.dtype) + w[-k:].astype(X.dtype)              # logits (n, k)
        Z -= Z.max(axis=1, keepdims=True)
        true_logit = Z[np.arange(n), codes].astype(np.float64)            # shifted, as log(sum exp) will be
        np.exp(Z, out=Z)
        total = Z.sum(axis=1, keepdims=True)
        loss = float(np.mean(np.log(total[:, 0], dtype=np.float64) - true_logit))   # cross-entropy, exact
        Z /= total
        Z -= onehot
        Z /= n                                                              # d(mean loss)/d logits
        grad = np.empty_like(w)
        grad[:-k] = (Z.T @ X).ravel()
        grad[:-k] += penalty * w[:-k]
        grad[-k:] = Z.sum(axis=0, dtype=np.float64)
        return loss + 0.5 * penalty * float(w[:-k] @ w[:-k]), grad

    w0 = np.zeros(k * d + k)
    if start is not None and np.array_equal(start.classes, classes) and start.coef.shape == (k, d):
        w0[:-k], w0[-k:] = start.coef.ravel(), start.intercept
    result = scipy.optimize.minimize(loss_and_gradient, w0, jac=True, method="L-BFGS-B", options=dict(
        maxiter=max_iter, maxls=50, gtol=tol, ftol=64 * np.finfo(float).eps))   # scikit-learn's settings
    return Logistic(result.x[:-k].reshape(k, d).copy(), result.x[-k:].copy(), classes)


@dataclass(frozen=True)
class Choice:
    """What the hold-out chose, and what the final fit may start from."""

    index: int                                  # into the candidates as given
    scores: dict[int, float]                    # held-out accuracy of each candidate tried, by index
    #: the chosen candidate, on the hold-out's fit part's standardised features (their own coordinates)
    solution: Logistic


def holdout_split(y: np.ndarray, *, seed: int, parts: int = 3) -> tuple[np.ndarray, np.ndarray] | None:
    """``(fit, held)`` indices: one of ``parts`` stratified folds held out (fewer parts when the smallest
    class has fewer images); ``None`` when some class has a single image."""
    from sklearn.model_selection import StratifiedKFold

    counts = np.bincount(y)
    parts = min(parts, int(counts[counts > 0].min()) if y.size else 0)
    if parts < 2:
        return None
    fit, held = next(StratifiedKFold(n_splits=parts, shuffle=True, random_state=int(seed) % (2**32)).split(y, y))
    return fit, held


def scaler(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The mean and std (float64) that standardise features like ``X``'s (a constant feature: std 1)."""
    mean = X.mean(axis=0, dtype=np.float64)
    std = X.std(axis=0, dtype=np.float64)
    std[std < 1e-6] = 1.0
    return mean, std


def scale(X: np.ndarray, stats: tuple[np.ndarray, np.ndarray], dtype: type = np.float32) -> np.ndarray:
    return ((np.asarray(X) - stats[0]) / stats[1]).astype(dtype, copy=False)


#: fit in the row space of the training features when they have at most this many rows per column
ROW_SPACE_BELOW = 0.6


def row_space(X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """``(X @ V, V)``, ``V`` (D, N) orthonormal columns spanning the row space of ``X`` (N, D), when ``X`` is
    well narrower than it is wide (``N <= ROW_SPACE_BELOW * D``); else ``None``.

    An L2-penalised linear model's weights lie in its training features' row
    space (their gradient is ``X.T @ residuals`` plus a multiple of the weights),
    so fitting on ``X @ V`` (N, N) and mapping the weights back by ``V`` gives
    the same optimum with ``N`` columns instead of ``D``: the concatenated
    features at 15 images per class have 3,840 columns and 1,530 rows.
    ``||V @ B|| == ||B||``, so the penalty is unchanged too.  ``V`` comes from
    the QR factorisation ``X.T = V R`` in ``X``'s precision, which also gives
    ``X @ V = R.T`` without a product: a third of the time of an
    eigendecomposition of the Gram matrix in float64 (docs/performance.md).
    Where ``X`` has rank below ``N`` (centred features have ``N - 1``) the
    extra columns of ``V`` are directions the data (numerically) never reach:
    they get no gradient from the data, and the penalty holds their weights at zero.
    """
    import scipy.linalg

    n, d = X.shape
    if n > ROW_SPACE_BELOW * d:
        return None
    V, R = scipy.linalg.qr(X.T, mode="economic", check_finite=False)
    return np.ascontiguousarray(R.T), V


def in_basis(X: np.ndarray, V: np.ndarray | None) -> np.ndarray:
    return X if V is None else X @ V


def sgd_l2_as_C(X: np.ndarray, l2: float, *, standardized: bool = False) -> float:
    """The C of ``softmax_sgd``'s twin (:func:`fit_logistic`) on training features ``X``: ``mean(v) / (2 * n * l2)``.

    ``mean(v)`` is the raw features' mean variance (the variance-weighted penalty
    on raw features), or 1 when the head trains on standardised ones.  Both the
    softmax layer and :func:`fit_logistic` have one weight vector per class, two
    classes included, so the penalties match term by term.
    """
    mean_var = 1.0 if standardized else float(X.var(axis=0, dtype=np.float64).mean())
    if mean_var <= 0.0:
        mean_var = 1.0                           # all features constant: only the bias can learn
    return min(C_MAX, mean_var / (2.0 * len(X) * l2)) if l2 > 0.0 else C_MAX


def choose(X: np.ndarray, y: np.ndarray, Cs: Sequence[float] | Callable[[np.ndarray], Sequence[float]], *,
           seed: int, patience: int, tol: float = 1e-3, max_iter: int = 300, dtype: type = np.float32
           ) -> Choice | None:
    """Score each candidate on a held-out third of ``(X, y)``; ``None`` when nothing can be held out.

    Candidates are walked in the order given, which must be from the strongest
    penalty to the weakest: ``Cs`` (logistic regression's C), or ``Cs(X_fit)``,
    the Cs for the images the candidates are fitted on (``softmax_sgd``'s twin
    needs their count and variance).
    """
    split = holdout_split(y, seed=seed)
    if split is None:
        return None
    fit, held = split
    stats = scaler(X[fit])
    Xf, Xh = scale(X[fit], stats, dtype), scale(X[held], stats, dtype)
    V = None
    if (narrow := row_space(Xf)) is not None:
        Xf, V = narrow
        Xh = Xh @ V
    yf, yh = y[fit], y[held]
    Cs = list(Cs(X[fit]) if callable(Cs) else Cs)
    k = int(y.max()) + 1
    scores: dict[int, float] = {}
    best_key, best, worse = None, 0, 0
    model = solution = None
    for i, C in enumerate(Cs):
        model = fit_logistic(Xf, yf, min(C, C_MAX), start=model, tol=tol, max_iter=max_iter)
        p = model.proba(Xh, k)
        acc = float(np.mean(p.argmax(1) == yh))
        loss = float(-np.mean(np.log(np.clip(p[np.arange(yh.size), yh], 1e-12, None))))
        scores[i] = acc
        key = (round(acc, 9), -loss)
        if best_key is None or key > best_key:            # a tie keeps the earlier, stronger penalty
            best_key, best, worse = key, i, 0
            # in the standardised features' own coordinates, to start a fit in another basis from
            solution = model if V is None else Logistic(model.coef @ V.T, model.intercept, model.classes)
        else:
            worse += 1
            if worse >= patience:
                break
    return Choice(index=best, scores=scores, solution=solution)
