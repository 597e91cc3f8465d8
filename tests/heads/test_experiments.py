"""The Zeiler & Fergus protocol: splits, metric, heads, grid, aggregation and report helpers."""

from __future__ import annotations

import math
import threading
import tomllib

import numpy as np
import pandas as pd
import pytest

from tlreport.datasets.protocol import PROTOCOLS, protocol_splits
from tlreport.errors import UserError
from tlreport.heads import get_head
from tlreport.heads.base import Predictor
from tlreport.heads.grid import COLUMNS, aggregate, run_grid
from tlreport.heads.logreg import LogRegHead
from tlreport.heads.metrics import mean_per_class_accuracy
from tlreport.heads.penalty import choose, fit_logistic, holdout_split, row_space, scale, scaler, sgd_l2_as_C
from tlreport.heads.softmax_sgd import SoftmaxSGDHead
from tlreport.report.charts import plot_table_accuracy
from tlreport.report.tables import (
    _literature_path,
    chosen_sentence,
    claims,
    literature_rows,
    paired_lead,
    results_table,
)

FAST_LOGREG = LogRegHead(C_grid=(0.01, 0.1, 1.0))


def blobs(sizes: list[int], dim: int = 8, *, spread: float = 0.3, seed: int = 0
          ) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Well-separated Gaussian blobs, one per class, with the given class sizes."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(sizes)), sizes)
    centres = rng.normal(size=(len(sizes), dim)) * 3.0
    X = (centres[labels] + spread * rng.normal(size=(labels.size, dim))).astype(np.float32)
    return X, labels, [f"c{i}" for i in range(len(sizes))]


class CentroidHead:
    """Nearest class mean: a fast stand-in head for grid-shape tests."""

    name = "centroid"

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        means = np.stack([X[y == c].mean(0) for c in range(num_classes)])

        def predict(Xq: np.ndarray) -> np.ndarray:
            d = ((Xq[:, None, :] - means[None]) ** 2).sum(-1)
            return np.exp(-(d - d.min(1, keepdims=True)))

        return predict


# ------------------------------------------------------------------ splits

SIZES = [31, 40, 55, 120, 800, 33]


def test_exact_n_train_per_class_and_test_cap() -> None:
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    for tr, te in protocol_splits(labels, None, n_train=30, test_cap=50, n_splits=5, seed=1):
        assert np.bincount(labels[tr], minlength=len(SIZES)).tolist() == [30] * len(SIZES)
        # the rest of each class, capped at 50
        assert np.bincount(labels[te], minlength=len(SIZES)).tolist() == [1, 10, 25, 50, 50, 3]


def test_no_overlap_and_no_cap() -> None:
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    for tr, te in protocol_splits(labels, None, n_train=15, test_cap=None, n_splits=3, seed=2):
        assert np.intersect1d(tr, te).size == 0
        assert np.unique(tr).size == tr.size and np.unique(te).size == te.size
        assert tr.size + te.size == labels.size  # uncapped: every image is used


def test_folds_differ_but_calls_repeat() -> None:
    labels = np.repeat(np.arange(len(SIZES)), SIZES)
    a = protocol_splits(labels, None, n_train=15, test_cap=50, n_splits=5, seed=3)
    b = protocol_splits(labels, None, n_train=15, test_cap=50, n_splits=5, seed=3)
    c = protocol_splits(labels, None, n_train=15, test_cap=50, n_splits=5, seed=4)
    for (tr1, te1), (tr2, te2) in zip(a, b, strict=True):
        assert np.array_equal(tr1, tr2) and np.array_equal(te1, te2)
    assert len({tuple(tr) for tr, _ in a}) == 5  # five different folds
    assert not all(np.array_equal(x[0], y[0]) for x, y in zip(a, c, strict=True))
    # asking for more folds keeps the first ones
    more = protocol_splits(labels, None, n_train=15, test_cap=50, n_splits=7, seed=3)
    assert all(np.array_equal(x[0], y[0]) for x, y in zip(a, more, strict=False))


def test_keys_make_splits_independent_of_manifest_order() -> None:
    labels = np.repeat(np.arange(4), [20, 25, 30, 22])
    keys = [f"{i:064x}" for i in range(labels.size)]  # stand-ins for image sha256
    perm = np.random.default_rng(0).permutation(labels.size)
    a = protocol_splits(labels, None, n_train=10, test_cap=5, seed=0, keys=keys)
    b = protocol_splits(labels[perm], None, n_train=10, test_cap=5, seed=0, keys=[keys[i] for i in perm])
    for (tr1, te1), (tr2, te2) in zip(a, b, strict=True):
        assert sorted(keys[i] for i in tr1) == sorted(keys[perm[i]] for i in tr2)
        assert sorted(keys[i] for i in te1) == sorted(keys[perm[i]] for i in te2)


def test_same_splits_for_every_backbone(monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, names = blobs([20, 24, 30], dim=4)
    seen: list[tuple[bytes, bytes]] = []

    class Recorder:
        name = "recorder"

        def fit(self, Xtr, ytr, *, num_classes, seed):  # noqa: ANN001, ANN202
            seen.append(Xtr.tobytes())
            return lambda Xq: np.tile(np.eye(num_classes)[0], (len(Xq), 1))

    feats = {"a": X, "b": X * 2.0 + 1.0}  # different feature matrices, same rows
    run_grid(feats, y, names, settings=[5], test_cap=4, n_splits=3, seed=7, heads=[Recorder()])
    a, b = seen[:3], seen[3:]
    for sa, sb in zip(a, b, strict=True):
        rows_a = np.frombuffer(sa, np.float32).reshape(-1, 4)
        rows_b = np.frombuffer(sb, np.float32).reshape(-1, 4)
        np.testing.assert_allclose(rows_b, rows_a * 2.0 + 1.0)


def test_too_small_classes_are_named_with_counts() -> None:
    labels = np.repeat(np.arange(4), [31, 12, 40, 30])
    names = ["airplanes", "platypus", "wild_cat", "garfield"]
    with pytest.raises(UserError) as err:
        protocol_splits(labels, names, n_train=30, test_cap=50, seed=0)
    msg = str(err.value)
    assert "'platypus' has 12" in msg and "'garfield' has 30" in msg and "31 needed" in msg
    assert "airplanes" not in msg and "wild_cat" not in msg
    # exactly n_train + 1 is enough
    protocol_splits(labels, names, n_train=11, test_cap=50, seed=0)


@pytest.mark.parametrize("kwargs", [dict(n_train=0, test_cap=5), dict(n_train=3, test_cap=0),
                                    dict(n_train=3, test_cap=5, n_splits=0)])
def test_bad_protocol_values(kwargs: dict) -> None:
    with pytest.raises(UserError):
        protocol_splits(np.repeat([0, 1], 10), None, seed=0, **kwargs)


# ------------------------------------------------------------------ metric


def test_mean_per_class_accuracy_by_hand() -> None:
    y_true = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 1, 0, 2, 2, 2, 0, 0, 0])
    # class 0: 3/4, class 1: 1/2, class 2: 3/6; class 3 has no test image and is left out
    assert mean_per_class_accuracy(y_true, y_pred, 4) == pytest.approx((0.75 + 0.5 + 0.5) / 3)
    assert np.mean(y_true == y_pred) == pytest.approx(7 / 12)  # plain accuracy differs


# ------------------------------------------------------------------ heads and grid


def test_both_heads_learn_a_separable_problem_deterministically() -> None:
    X, y, names = blobs([30, 35, 40, 32, 50, 31], dim=16)
    kwargs = dict(settings=[10], test_cap=15, n_splits=1, seed=0, dataset="toy",
                  heads=[SoftmaxSGDHead(epochs=30), LogRegHead()])
    df = run_grid({"toy": X}, y, names, **kwargs)
    assert df["head"].tolist() == ["softmax_sgd", "logreg"]
    assert (df["mean_per_class_accuracy"] >= 0.95).all(), df
    assert (df["n_test"] == 6 * 15).all()
    again = run_grid({"toy": X}, y, names, **kwargs)
    pd.testing.assert_frame_equal(df.drop(columns="seconds"), again.drop(columns="seconds"))


def test_the_hold_out_is_a_stratified_third_of_the_training_images() -> None:
    y = np.repeat(np.arange(4), [6, 9, 12, 30])
    fit, held = holdout_split(y, seed=3)
    assert np.intersect1d(fit, held).size == 0 and np.union1d(fit, held).size == y.size
    assert np.bincount(y[held]).tolist() == [2, 3, 4, 10]          # a third of every class
    assert holdout_split(y, seed=3)[1].tolist() == held.tolist()   # seeded
    assert holdout_split(y, seed=4)[1].tolist() != held.tolist()
    two = np.array([0, 0, 1, 1, 1, 1])
    assert np.bincount(two[holdout_split(two, seed=0)[1]]).tolist() == [1, 2]   # a class of 2: halves
    assert holdout_split(np.array([0, 0, 1]), seed=0) is None                 # a class of 1: nothing held


def test_logreg_chooses_C_on_the_training_split_only() -> None:
    X, y, _ = blobs([12] * 5, dim=6, spread=2.0)
    grid = [1e-4, 1e-2, 1.0]
    choice = choose(X, y, grid, seed=0, patience=5)
    assert set(choice.scores) == {0, 1, 2} and choice.scores[choice.index] == max(choice.scores.values())
    assert choice.solution.coef.shape == (5, 6) and choice.solution.classes.tolist() == [0, 1, 2, 3, 4]
    assert choice.index > 0                                  # 1e-4 is far too strong for separable blobs
    predict = LogRegHead(C_grid=tuple(grid), patience=5).fit(X, y, num_classes=5, seed=0)
    assert predict.chosen == {"C": grid[choice.index]}


def test_every_scaler_is_fitted_on_the_images_it_trains_on(monkeypatch) -> None:
    """No held-out image shapes the scaling it is scored under: the hold-out's scaler sees its fit part
    (2/3 of the images), the final fit's the whole training split."""
    from tlreport.heads import logreg, penalty

    fitted: list[int] = []
    original = penalty.scaler

    def recording(X):
        fitted.append(len(X))
        return original(X)

    monkeypatch.setattr(penalty, "scaler", recording)
    monkeypatch.setattr(logreg, "scaler", recording)
    X, y, _ = blobs([12] * 5, dim=6, spread=2.0)
    LogRegHead(C_grid=(1e-2, 1.0)).fit(X, y, num_classes=5, seed=0)
    assert fitted == [40, 60]


def test_softmax_sgd_chooses_l2_on_the_training_split_only() -> None:
    """Its L2 is chosen inside each fold's training images: the test images cannot move it, a grid of one
    value chooses nothing, and a problem that needs a strong penalty gets one."""
    X, y, _ = blobs([12] * 4, dim=8, spread=3.0)
    rng = np.random.default_rng(0)
    noisy = np.concatenate([X, 5.0 * rng.normal(size=(len(X), 200)).astype(np.float32)], axis=1)  # 200 noise dims
    head = SoftmaxSGDHead(epochs=20, l2_grid=(0.0, 0.1, 10.0), train_kwargs={"lr": 0.01, "standardize": False})
    l2_a = head.choose(noisy, y, seed=3)
    assert l2_a in head.l2_grid and l2_a > 0.0                # 200 pure-noise features: the penalty pays
    predictors = head.fit_many([noisy, noisy[::-1]], [y, y[::-1]], num_classes=4, seeds=[3, 4])
    assert predictors[0].l2 == l2_a                          # fit_many trains with the value chosen
    assert predictors[0].chosen == {"l2": l2_a}              # and says so, for the grid's "chosen" column
    assert predictors[1].l2 == head.choose(noisy[::-1], y[::-1], seed=4)
    assert SoftmaxSGDHead(epochs=20, l2_grid=(0.5,)).choose(noisy, y, seed=3) == 0.5
    tiny = np.array([0, 0, 1, 1])                           # 2 images per class: half is held out
    assert head.choose(noisy[:4], tiny, seed=0) in head.l2_grid
    assert head.choose(noisy[:3], np.array([0, 0, 1]), seed=0) == 0.1    # nothing to hold out: the middle


@pytest.mark.parametrize("classes", [3, 2])
def test_the_l_bfgs_fit_reaches_scikit_learns_optimum(classes) -> None:
    """``fit_logistic`` is scikit-learn's ``LogisticRegression`` (same objective, same L-BFGS-B), in float32:
    the same probabilities, a warm start lands there too, and a class it never saw gets 0.  With two
    classes scikit-learn fits one weight vector w where ``fit_logistic`` fits two, w/2 and -w/2 at the
    optimum, whose penalty is half of w's: scikit-learn's C is twice ours."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(classes), 25)
    X = (rng.normal(size=(classes, 6))[y] + rng.normal(size=(len(y), 6))).astype(np.float32)
    ours = fit_logistic(X, y, 0.05, tol=1e-8, max_iter=5_000)
    theirs = LogisticRegression(C=0.05 * (2 if classes == 2 else 1), tol=1e-10, max_iter=10_000).fit(
        X.astype(np.float64), y)
    np.testing.assert_allclose(ours.proba(X, classes), theirs.predict_proba(X.astype(np.float64)), atol=1e-4)
    assert np.abs(ours.proba(X, classes) - fit_logistic(X, y, 0.5, tol=1e-8).proba(X, classes)).max() > 1e-3
    warm = fit_logistic(X, y, 0.05, start=fit_logistic(X, y, 0.01), tol=1e-8, max_iter=5_000)
    np.testing.assert_allclose(warm.proba(X, classes), ours.proba(X, classes), atol=1e-4)
    seen = y != classes - 1                                      # the last class left out of the fit
    partial = fit_logistic(X[seen], y[seen], 0.05).proba(X, classes + 1)
    assert partial.shape == (len(X), classes + 1) and (partial[:, classes - 1:] == 0).all()
    np.testing.assert_allclose(partial.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("classes", [3, 2])
def test_softmax_sgd_and_its_l_bfgs_twin_reach_the_same_optimum(classes) -> None:
    """The variance-weighted penalty on raw features is logistic regression on standardised features at
    C = mean(v) / (2 n l2): trained to convergence (full batches, many epochs), SGD lands where L-BFGS
    (``fit_logistic``, one weight vector per class like the softmax layer) does, so scoring a penalty on the
    twin scores the head's own objective."""
    from tlreport.heads.softmax import predict_proba, train_softmax

    rng = np.random.default_rng(4)
    y = np.repeat(np.arange(classes), 30)
    X = ((rng.normal(size=(classes, 5))[y] + rng.normal(size=(len(y), 5))).astype(np.float32)
         * np.array([2.0, 1.0, 0.5, 1.0, 1.5], np.float32))           # overlapping classes, features in mixed units
    l2 = 0.02
    empty = (np.zeros((0, 5), np.float32), np.zeros(0, np.int32))
    sgd = train_softmax(X, y, *empty, num_classes=classes, epochs=1000, batch_size=len(X), lr=0.05, l2=l2,
                        l2_weighting="variance", standardize=False, schedule="constant", patience=None, seed=0)
    Z = scale(X, scaler(X), np.float64)
    C = sgd_l2_as_C(X, l2)
    twin = fit_logistic(Z, y, C, tol=1e-10, max_iter=10_000)
    np.testing.assert_allclose(predict_proba(sgd, X), twin.proba(Z, classes), atol=1e-4)
    other = fit_logistic(Z, y, 2 * C, tol=1e-10, max_iter=10_000)
    assert np.abs(predict_proba(sgd, X) - other.proba(Z, classes)).max() > 1e-3    # another penalty, another optimum
    standardized = train_softmax(X, y, *empty, num_classes=classes, epochs=1000, batch_size=len(X), lr=0.05, l2=l2,
                                 standardize=True, schedule="constant", patience=None, seed=0)
    twin = fit_logistic(Z, y, sgd_l2_as_C(X, l2, standardized=True), tol=1e-10, max_iter=10_000)
    np.testing.assert_allclose(predict_proba(standardized, X), twin.proba(Z, classes), atol=1e-4)


def test_a_wide_problem_is_fitted_in_its_row_space_to_the_same_optimum() -> None:
    """Fewer images than features: logistic regression on X @ V (V a basis of X's row space) has the optimum
    of the fit on X, in N columns instead of D."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(30, 200)).astype(np.float32)
    y = rng.integers(0, 3, 30)
    X[:, :3] += 2.0 * np.eye(3, dtype=np.float32)[y]
    XV, V = row_space(X)
    assert V.shape == (200, 30)
    np.testing.assert_allclose(V.T @ V, np.eye(30), atol=1e-5)
    np.testing.assert_allclose(XV, X @ V, atol=1e-5)                    # the QR's R.T: no product needed
    # centred features have rank N - 1: the basis still spans their row space, so the optimum is the same
    Xc = X - X.mean(axis=0)
    Xc_V, Vc = row_space(Xc)
    np.testing.assert_allclose(Xc_V @ Vc.T, Xc, atol=1e-5)
    fit_c = fit_logistic(Xc.astype(np.float64), y, 0.1, tol=1e-10, max_iter=10_000)
    narrow_c = fit_logistic(Xc_V.astype(np.float64), y, 0.1, tol=1e-10, max_iter=10_000)
    np.testing.assert_allclose(narrow_c.coef @ Vc.T, fit_c.coef, atol=1e-4)
    full = fit_logistic(X.astype(np.float64), y, 0.1, tol=1e-10, max_iter=10_000)
    narrow = fit_logistic((X @ V).astype(np.float64), y, 0.1, tol=1e-10, max_iter=10_000)
    np.testing.assert_allclose(narrow.coef @ V.T, full.coef, atol=1e-4)
    np.testing.assert_allclose(narrow.proba(X @ V, 3), full.proba(X, 3), atol=1e-5)
    np.testing.assert_allclose(full.in_basis(V).proba(X @ V, 3), full.proba(X, 3), atol=1e-5)
    assert row_space(X[:, :40]) is None                      # 30 rows of 40 columns: not worth it


def test_grid_rows_and_determinism() -> None:
    X, y, names = blobs([25, 30, 28, 40], dim=6, spread=2.5)
    kwargs = dict(settings=[5, 10], test_cap=8, n_splits=3, seed=11, dataset="toy",
                  heads=[FAST_LOGREG, LogRegHead(C_grid=(1.0,), name="logreg_C1")])
    calls: list[tuple[int, int]] = []
    a = run_grid({"x": X, "y": X[:, ::-1].copy()}, y, names, progress=lambda d, t, _: calls.append((d, t)),
                   **kwargs)
    b = run_grid({"x": X, "y": X[:, ::-1].copy()}, y, names, **kwargs)
    assert list(a.columns) == COLUMNS
    assert len(a) == 2 * 2 * 2 * 3
    assert calls[-1] == (24, 24)
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    assert (a["seconds"] > 0).all()
    # a head's results do not depend on which other heads run alongside it
    alone = run_grid({"x": X, "y": X[:, ::-1].copy()}, y, names, **{**kwargs, "heads": [FAST_LOGREG]})
    pd.testing.assert_frame_equal(alone.drop(columns="seconds"),
                                  a[a["head"] == "logreg"].drop(columns="seconds").reset_index(drop=True))


class OneFoldAtATime:
    """The softmax head without ``fit_many``: run_grid must fall back to one fit per fold."""

    name = "softmax_sgd"

    def __init__(self) -> None:
        self.inner = SoftmaxSGDHead(epochs=10)

    def fit(self, X: np.ndarray, y: np.ndarray, *, num_classes: int, seed: int) -> Predictor:
        return self.inner.fit(X, y, num_classes=num_classes, seed=seed)


def test_folds_trained_side_by_side_match_folds_trained_one_by_one() -> None:
    X, y, names = blobs([20, 24, 22], dim=6, spread=2.0)
    kwargs = dict(settings=[4, 8], test_cap=6, n_splits=3, seed=5, dataset="toy")
    calls: list[int] = []
    stacked = run_grid({"x": X}, y, names, heads=[SoftmaxSGDHead(epochs=10)],
                         progress=lambda d, t, _: calls.append(d), **kwargs)
    single = run_grid({"x": X}, y, names, heads=[OneFoldAtATime()], **kwargs)
    assert calls == list(range(1, 7))                        # progress after every fold, in order
    assert list(stacked["n_train"]) == [4, 4, 4, 8, 8, 8] and list(stacked["split"]) == [0, 1, 2] * 2
    np.testing.assert_allclose(stacked["mean_per_class_accuracy"], single["mean_per_class_accuracy"], atol=1e-9)


@pytest.mark.slow
def test_a_small_grid_fitted_in_this_process_gives_the_rows_of_worker_processes(monkeypatch) -> None:
    """A small grid runs every fit in this process, the TensorFlow head in this thread and the L-BFGS head in
    a second one at the same time; a large one sends L-BFGS fits to worker processes, one head at a time.
    Each fit computes the same either way, so the rows are equal."""
    from tlreport.heads import grid

    X, y, names = blobs([20, 24, 22], dim=10, spread=1.5)
    kwargs = dict(settings=[6], test_cap=8, n_splits=3, seed=2, dataset="toy",
                  heads=[SoftmaxSGDHead(epochs=15, processes=2), LogRegHead(C_grid=(1e-2, 1e-1, 1.0), processes=2)])
    threads: set[str] = set()
    fit = LogRegHead.fit

    def noting_the_thread(self, *args, **kw):
        threads.add(threading.current_thread().name)
        return fit(self, *args, **kw)

    monkeypatch.setattr(LogRegHead, "fit", noting_the_thread)
    small = run_grid({"a": X, "b": X[:, ::-1].copy()}, y, names, **kwargs)
    assert threads and threading.main_thread().name not in threads     # logreg beside TensorFlow, not after it
    monkeypatch.setattr(grid, "IN_PROCESS_BELOW", 0)
    large = run_grid({"a": X, "b": X[:, ::-1].copy()}, y, names, **kwargs)
    pd.testing.assert_frame_equal(small.drop(columns="seconds"), large.drop(columns="seconds"))


def test_an_error_in_the_second_thread_of_a_small_grid_stops_the_grid() -> None:
    """The L-BFGS head fits in a second thread beside TensorFlow; its error reaches the caller, once."""

    class Failing(LogRegHead):
        def fit(self, X, y, *, num_classes, seed):  # noqa: ANN001
            raise UserError("this head cannot fit")

    X, y, names = blobs([12, 12, 12], dim=6, spread=2.0)
    with pytest.raises(UserError, match="cannot fit"):
        run_grid({"a": X}, y, names, settings=[4], test_cap=4, n_splits=2, seed=0,
                 heads=[SoftmaxSGDHead(epochs=3, l2_grid=(0.01,)), Failing(name="failing")])


def test_flip_rows_average_the_mirror_predictions() -> None:
    X, y, names = blobs([20, 20, 20], dim=4)
    flip = X + 0.01
    df = run_grid({"x": X}, y, names, settings=[5], test_cap=10, n_splits=2, seed=0, heads=[FAST_LOGREG],
                    features_flip={"x": flip})
    assert sorted(set(df["head"])) == ["logreg", "logreg+flip"]
    assert (df.groupby("head").size() == 2).all()
    with pytest.raises(UserError, match="flipped features"):
        run_grid({"x": X}, y, names, settings=[5], test_cap=10, n_splits=1, seed=0, heads=[FAST_LOGREG],
                   features_flip={"x": flip[:, :2]})


def test_unknown_head() -> None:
    with pytest.raises(UserError, match="Unknown head 'svm'"):
        get_head("svm")


# ------------------------------------------------------------------ aggregation


def test_aggregate_matches_the_fold_rows() -> None:
    rows = []
    for head, accs in {"logreg": [0.90, 0.92, 0.91, 0.89, 0.93], "softmax_sgd": [0.80, 0.84, 0.82, 0.86, 0.83]}.items():
        for s, a in enumerate(accs):
            rows.append(dict(dataset="caltech101", backbone="b", head=head, n_train=30, split=s,
                             mean_per_class_accuracy=a, accuracy=a - 0.01, n_test=100, seconds=1.0 + s))
    df = pd.DataFrame(rows, columns=COLUMNS)
    agg = aggregate(df).set_index("head")
    acc = np.array([0.90, 0.92, 0.91, 0.89, 0.93]) * 100
    assert agg.loc["logreg", "mean"] == pytest.approx(acc.mean())
    assert agg.loc["logreg", "std"] == pytest.approx(acc.std(ddof=1))  # sample std, ddof=1
    assert agg.loc["logreg", "std"] != pytest.approx(acc.std(ddof=0))
    assert agg.loc["softmax_sgd", "mean"] == pytest.approx(83.0)
    assert agg.loc["logreg", "n_splits"] == 5
    assert agg.loc["logreg", "accuracy"] == pytest.approx(acc.mean() - 1.0)
    assert agg.loc["logreg", "seconds"] == pytest.approx(3.0)


# ------------------------------------------------------------------ literature and report helpers


def test_literature_rows_match_the_seed_tables() -> None:
    c101 = {r["label"]: r for r in literature_rows("caltech101")}
    assert c101["Bo et al., 2013"]["results"] == {30: {"mean": 81.4, "std": 0.33}}
    assert c101["Yang et al., 2009"]["results"] == {15: {"mean": 73.2, "std": None},
                                                        30: {"mean": 84.3, "std": None}}
    assert c101["Zeiler & Fergus, 2013"]["results"][15] == {"mean": 83.8, "std": 0.5}
    assert c101["Inception v3"]["kind"] == "seed post"
    assert c101["Inception-ResNet v2"]["results"][30] == {"mean": 90.1, "std": 0.5}
    c256 = {r["label"]: r for r in literature_rows("caltech256")}
    assert [c256["Sohn et al., 2011"]["results"][n]["mean"] for n in (15, 30, 45, 60)] == [35.1, 42.1, 45.7, 47.9]
    assert c256["Zeiler & Fergus, 2013"]["results"][60] == {"mean": 74.2, "std": 0.3}
    assert c256["Inception v4"]["results"][45] == {"mean": 85.2, "std": 0.5}
    assert all(r["citation"] for r in c256.values())
    with pytest.raises(UserError, match="caltech101"):
        literature_rows("mnist")


def test_literature_file_parses_and_every_row_has_a_citation() -> None:
    path = _literature_path()
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert len(data["row"]) == 12
    assert all(r["citation"] and r["results"] for r in data["row"])


def _agg(dataset: str, rows: dict[tuple[str, str], dict[int, tuple[float, float]]]) -> pd.DataFrame:
    out = []
    for (backbone, head), res in rows.items():
        for n, (m, s) in res.items():
            out.append(dict(dataset=dataset, backbone=backbone, head=head, n_train=n, mean=m, std=s,
                            n_splits=5, accuracy=m, seconds=1.0))
    return pd.DataFrame(out)


#: the classes of the stand-in tables below; with 150 test images a split at 15 per class tests on as many
#: images as it trains on (n_test / n_train = 1 in the corrected standard error)
CLASSES = 10


def _fits(acc: dict, n: int = 15, dataset: str = "t", n_test: int = 150) -> pd.DataFrame:
    """results.csv rows: one per (backbone, head) and split, from ``{(backbone, head): [accuracy per split]}``."""
    return pd.DataFrame([{"dataset": dataset, "backbone": b, "head": h, "n_train": n, "split": s,
                          "mean_per_class_accuracy": v, "n_test": n_test}
                         for (b, h), vals in acc.items() for s, v in enumerate(vals)])


def _agg_of(fits: pd.DataFrame) -> pd.DataFrame:
    g = fits.groupby(["dataset", "backbone", "head", "n_train"], sort=False)["mean_per_class_accuracy"]
    out = pd.concat([g.mean() * 100, g.std(ddof=1) * 100], axis=1).reset_index()
    out.columns = ["dataset", "backbone", "head", "n_train", "mean", "std"]
    return out


def test_a_row_clearly_behind_either_of_two_tied_top_rows_is_not_bold() -> None:
    """Two rows tied at the top (0.02 points apart) are both best: which comes first by that hair must not
    decide the bold.  c is level with the noisy a but clearly behind b, so it is shown behind the best."""
    a = [0.90, 0.92, 0.88, 0.91, 0.89]
    b = [0.9002, 0.9002, 0.9002, 0.8994, 0.8994]
    c = [v - d for v, d in zip(b, [0.010, 0.011, 0.009, 0.010, 0.012], strict=True)]
    fits = _fits({("a", "logreg"): a, ("b", "logreg"): b, ("c", "logreg"): c})
    table = results_table(_agg_of(fits), fits, [], [15], dataset="t", num_classes=CLASSES)
    bold = {r["label"]: r["bold"][0] for r in table["groups"][0]["rows"]}
    assert bold == {"a with logistic regression": True, "b with logistic regression": True,
                    "c with logistic regression": False}
    (claim,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert claim["tie"] and claim["best"] == ["a with logistic regression", "b with logistic regression"]
    (behind,) = claim["behind"]
    assert behind["title"] == "c with logistic regression" and behind["by"] == "b with logistic regression"
    assert behind["clear"] and behind["ahead"] == 5 and behind["mean"] == pytest.approx(1.04)
    # a alone does not clearly lead c: the tie-break row would have left c bold
    assert not claim_lead(fits, ("a", "logreg"), ("c", "logreg"))["clear"]


def claim_lead(fits: pd.DataFrame, x: tuple[str, str], y: tuple[str, str]) -> dict:
    from tlreport.report.tables import _by_split, paired_lead

    by = _by_split(fits, "t", 15)
    return paired_lead(by[x], by[y], test_per_train=150 / (15 * CLASSES))


def test_a_clear_lead_is_bold_alone() -> None:
    """Ahead on 5 of 5 paired splits by far more than twice the standard error: the one best row."""
    fits = _fits({("a", "logreg"): [0.92, 0.93, 0.91, 0.94, 0.92], ("b", "logreg"): [0.90, 0.915, 0.89, 0.925, 0.905]})
    table = results_table(_agg_of(fits), fits, [], [15], dataset="t", num_classes=CLASSES)
    bold = {r["label"]: r["bold"] for r in table["groups"][0]["rows"]}
    assert bold == {"a with logistic regression": [True], "b with logistic regression": [False]}
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["best"] == ["a with logistic regression"] and c["clear_lead"]["ahead"] == 5
    assert c["clear_lead"]["mean"] == pytest.approx(1.7)


def test_a_lead_inside_the_noise_is_level() -> None:
    """The Caltech-101 case: a 0.05-point mean lead, ahead on 4 of 5 splits, is no winner: both rows are
    bold (level), and a third row that is clearly behind is not."""
    fits = _fits({("a", "softmax_sgd"): [0.9280, 0.9310, 0.9250, 0.9300, 0.9255],
                  ("a", "logreg"): [0.9270, 0.9300, 0.9240, 0.9290, 0.9280],
                  ("c", "logreg"): [0.90, 0.905, 0.899, 0.902, 0.901]})
    table = results_table(_agg_of(fits), fits, [], [15], dataset="t", num_classes=CLASSES)
    bold = {r["label"]: r["bold"] for r in table["groups"][0]["rows"]}
    assert bold == {"a with softmax (SGD)": [True], "a with logistic regression": [True], "c with logistic regression": [False]}
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["best"] == ["a with softmax (SGD)", "a with logistic regression"] and c["clear_lead"] is None
    assert c["closest"]["ahead"] == 4 and not c["closest"]["clear"]
    # every row level: nothing is bold (bolding the whole column says nothing)
    same = _fits({("a", "logreg"): [0.9, 0.91, 0.92], ("b", "logreg"): [0.91, 0.9, 0.92]})
    table = results_table(_agg_of(same), same, [], [15], dataset="t", num_classes=CLASSES)
    assert not any(r["bold"][0] for r in table["groups"][0]["rows"])


def test_level_rows_carry_their_own_numbers_and_an_equal_mean_is_a_tie_not_a_lead() -> None:
    """Two rows with the same mean (once the offline default's 20/class: the same images right, split by
    split in another order) are a tie, not a lead of 0.00; each level row keeps its own mean and std."""
    fits = _fits({("a", "logreg"): [0.880, 0.900, 0.870, 0.880, 0.870],
                  ("b", "logreg"): [0.890, 0.880, 0.870, 0.890, 0.870]})
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert len(c["best"]) == 2 and c["tie"]
    assert [round(r["mean"], 6) for r in c["level_rows"]] == [88.0, 88.0]
    assert {round(r["std"], 3) for r in c["level_rows"]} == {1.225, 1.0}
    # a lead of 0.2 points is no tie, and the level rows' numbers differ
    fits = _fits({("a", "logreg"): [0.882, 0.902, 0.872, 0.882, 0.872],
                  ("b", "logreg"): [0.890, 0.880, 0.870, 0.890, 0.870]})
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert not c["tie"] and c["closest"]["se"] == pytest.approx(c["closest"]["sd"] * (1 / 5 + 1) ** 0.5)
    assert [round(r["mean"], 2) for r in c["level_rows"]] == [88.2, 88.0]
    # a lead of 0.03 points does not show in a table that prints one decimal: a tie
    fits = _fits({("a", "logreg"): [0.8803, 0.9003, 0.8703, 0.8803, 0.8703],
                  ("b", "logreg"): [0.890, 0.880, 0.870, 0.890, 0.870]})
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["tie"] and c["tie_points"] == 0.05


def test_too_few_splits_call_no_row_best() -> None:
    fits = _fits({("a", "logreg"): [0.95, 0.96], ("b", "logreg"): [0.80, 0.81]})
    assert paired_lead(fits[fits.backbone == "a"].mean_per_class_accuracy.reset_index(drop=True),
                       fits[fits.backbone == "b"].mean_per_class_accuracy.reset_index(drop=True),
                       test_per_train=1)["clear"] is False
    table = results_table(_agg_of(fits), fits, [], [15], dataset="t", num_classes=CLASSES)
    assert not any(r["bold"][0] for r in table["groups"][0]["rows"])
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["decided"] is False and c["best"] == []


def test_quoted_rows_are_set_apart_never_bold_and_name_their_source() -> None:
    lit = literature_rows("caltech101")
    fits = _fits({("efficientnet_lite0", "logreg"): [0.90, 0.91, 0.92]}, dataset="caltech101")
    table = results_table(_agg_of(fits), fits, lit, [15, 30], dataset="caltech101", num_classes=CLASSES)
    titles = [g["title"] for g in table["groups"]]
    assert titles == ["This build", "Quoted from the seed post", "From the papers the seed post quotes"]
    quoted = {r["label"]: r for g in table["groups"][1:] for r in g["rows"]}
    assert quoted["Bo et al., 2013"]["cells"] == ["-", "81.4 ± 0.33"]
    assert quoted["Yang et al., 2009"]["cells"] == ["73.2", "84.3"] and quoted["Yang et al., 2009"]["ref"] == "yang2009"
    assert quoted["Inception v3"]["cells"] == ["87.5 ± 0.5", "89.8 ± 0.4"]
    assert not any(b for r in quoted.values() for b in r["bold"])
    assert table["groups"][0]["rows"][0]["cells"] == ["91.0 ± 1.0", "-"]


def test_caltech256_stand_in_runs_all_four_settings() -> None:
    proto = PROTOCOLS["caltech256"]
    rng = np.random.default_rng(0)
    sizes = rng.integers(proto.settings[-1] + 2, proto.settings[-1] + 40, size=proto.num_classes).tolist()
    X, y, names = blobs(sizes, dim=6, spread=0.5)
    head = CentroidHead()  # sklearn's 257-class softmax loss is slow on 2 cores; the grid is what is tested
    df = run_grid({"tiny": X}, y, names, settings=list(proto.settings), test_cap=proto.test_cap, n_splits=2,
                    seed=0, heads=[head], dataset=proto.dataset)
    assert len(df) == 4 * 2
    assert (df.groupby("n_train")["n_test"].max() <= proto.test_cap * proto.num_classes).all()
    agg = aggregate(df)
    table = results_table(agg, df, literature_rows("caltech256"), list(proto.settings), num_classes=proto.num_classes)
    ours = table["groups"][0]["rows"]
    assert (agg["mean"] > 90).all()
    assert ours[0]["label"] == "tiny with centroid" and all("±" in c for c in ours[0]["cells"])
    assert [r["label"] for r in table["groups"][2]["rows"]] == ["Sohn et al., 2011", "Bo et al., 2013",
                                                               "Zeiler & Fergus, 2013"]


def test_claims_compare_with_the_seed_and_the_paper() -> None:
    lit = literature_rows("caltech101")
    fits = _fits({("efficientnet_lite0", "logreg"): [0.915, 0.92, 0.92]}, n=30, dataset="caltech101")
    (c,) = claims(_agg_of(fits), fits, lit, [15, 30], "caltech101", num_classes=CLASSES)
    assert c["seed"]["label"] == "Inception-ResNet v2" and c["seed"]["mean"] == 90.1
    assert c["paper"]["label"] == "Zeiler & Fergus, 2013" and c["paper"]["ref"] == "zeiler2013"
    assert c["decided"] is False                     # one row: nothing to compare it with


def test_the_grid_records_what_each_fits_cross_validation_chose() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 8)
    feats = {"f": (rng.normal(size=(24, 4)) + labels[:, None]).astype(np.float32)}
    head = LogRegHead(C_grid=(1e-2, 1.0), processes=1)
    df = run_grid(feats, labels, ["a", "b", "c"], settings=[4], test_cap=None, n_splits=2, seed=0, heads=[head])
    assert set(df["chosen"]) <= {"C=0.01", "C=1"} and len(df) == 2
    text = chosen_sentence(df, None)
    assert text.startswith("logistic regression's C=") and "of 2 fits" in text


def test_plot_writes_a_png(tmp_path) -> None:  # noqa: ANN001
    agg = _agg("caltech101", {("b", "logreg"): {15: (90.0, 0.3), 30: (91.8, 0.6)}})
    agg.loc[0, "std"] = math.nan  # a single fold has no std; the plot must cope
    paths = plot_table_accuracy(agg, tmp_path / "acc", literature_rows("caltech101"))
    assert [p.name for p in paths] == ["acc.png", "acc.phone.png"]
    assert paths[0].stat().st_size > 5000


def test_auto_precision_trains_softmax_sgd_in_bf16_only_where_the_cpu_computes_it():
    from tlreport.heads.softmax_sgd import auto_precision

    assert auto_precision("auto", {"avx512f", "amx_bf16", "amx_tile"}) == "bfloat16"
    assert auto_precision("auto", {"avx512f", "avx512_bf16"}) == "bfloat16"
    assert auto_precision("auto", {"avx2", "avx512f"}) == "float32"              # no bf16 arithmetic
    assert auto_precision("auto", {"avx2"}) == "float32"
    assert auto_precision("bfloat16", {"avx2"}) == "bfloat16"                     # asked for: as asked
    assert auto_precision("float32", {"amx_bf16"}) == "float32"
    assert SoftmaxSGDHead(precision="bfloat16")._kwargs()["precision"] == "bfloat16"


def test_the_closest_level_row_is_never_one_the_top_row_clearly_beats() -> None:
    """A is level with the noisy C but clearly ahead of B (whose mean is second): the sentence names C."""
    a = [0.90, 0.91, 0.92, 0.93, 0.94]
    fits = _fits({("a", "logreg"): a, ("b", "logreg"): [v - 0.005 for v in a],
                  ("c", "logreg"): [0.95, 0.85, 0.96, 0.86, 0.93]})
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["best"] == ["a with logistic regression", "c with logistic regression"]
    assert c["closest"]["title"] == "c with logistic regression" and not c["closest"]["clear"]
    # the post names the row shown behind the best, with the top row's lead over it
    assert [b["title"] for b in c["behind"]] == ["b with logistic regression"] and c["behind"][0]["clear"]
    assert c["behind"][0]["mean"] == pytest.approx(0.5) and c["behind"][0]["ahead"] == 5


def test_a_setting_with_one_row_says_so_with_its_splits() -> None:
    fits = _fits({("a", "logreg"): [0.9, 0.91, 0.92, 0.93, 0.94]})
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["only"] and c["k"] == 5 and not c["decided"]


def test_a_lead_the_plain_standard_error_calls_clear_is_level_once_corrected() -> None:
    """Splits that share their images vary less than independent experiments: a 1.1-point lead ahead on
    5 of 5 splits is 3.7 plain standard errors, but only 1.5 corrected ones (n_test = n_train), under
    Student's t's 2.78 for 4 degrees of freedom; with far fewer test images than training ones it is clear."""
    diffs = np.array([1.0, 2.0, 0.3, 1.5, 0.7]) / 100
    a = pd.Series([0.9] * 5) + diffs
    b = pd.Series([0.9] * 5)
    sd = float(np.std(diffs * 100, ddof=1))
    assert 1.1 / (sd / 5 ** 0.5) > 3.5                                     # the old rule's 2 SE: clear
    lead = paired_lead(a, b, test_per_train=1.0)
    assert lead["se"] == pytest.approx(sd * 1.2 ** 0.5) and not lead["clear"]
    assert lead["t"] == pytest.approx(1.1 / (sd * 1.2 ** 0.5))
    assert paired_lead(a, b, test_per_train=0.01)["clear"]
    # the table's ratio comes from its n_test column and its class count
    fits = _fits({("a", "logreg"): list(a), ("b", "logreg"): list(b)}, n_test=150)
    assert len(claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)[0]["best"]) == 2
    fits = _fits({("a", "logreg"): list(a), ("b", "logreg"): list(b)}, n_test=1)
    assert claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)[0]["best"] == ["a with logistic regression"]


def test_each_row_is_compared_with_the_best_only() -> None:
    """b's steady deficit is clear, c's larger but noisier one is not: c is bold (not shown behind the
    best), b is not, and no 'every row level' span is claimed since one pair clears the rule."""
    fits = _fits({("a", "logreg"): [0.93, 0.93, 0.93, 0.93, 0.93],
                  ("b", "logreg"): [0.92, 0.921, 0.919, 0.92, 0.92],
                  ("c", "logreg"): [0.92, 0.90, 0.925, 0.89, 0.926]}, n_test=1)
    top = fits[fits.backbone == "a"].mean_per_class_accuracy.reset_index(drop=True)
    lead = {k: paired_lead(top, fits[fits.backbone == k].mean_per_class_accuracy.reset_index(drop=True),
                           test_per_train=1 / 150)["clear"] for k in ("b", "c")}
    assert lead == {"b": True, "c": False}
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert c["best"] == ["a with logistic regression", "c with logistic regression"] and c["all_level"] is None


def test_when_every_row_is_level_the_post_gives_the_span_from_top_to_lowest() -> None:
    fits = _fits({("a", "logreg"): [0.93, 0.91, 0.94, 0.90, 0.92],
                  ("b", "logreg"): [0.92, 0.915, 0.93, 0.905, 0.91],
                  ("c", "logreg"): [0.935, 0.90, 0.92, 0.89, 0.915]})
    (c,) = claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)
    assert len(c["best"]) == 3 and c["all_level"]["title"] == "c with logistic regression"
    assert c["all_level"]["row"]["mean"] == pytest.approx(91.2) and c["all_level"]["k"] == 5
    fits = _fits({("a", "logreg"): [0.92, 0.93, 0.91, 0.94, 0.92], ("b", "logreg"): [0.90, 0.915, 0.89, 0.925, 0.905]},
                 n_test=1)
    assert claims(_agg_of(fits), fits, [], [15], "t", num_classes=CLASSES)[0]["all_level"] is None
