"""Confident learning on out-of-fold probabilities: planted label flips are found, clean data is left alone."""

from __future__ import annotations

import numpy as np
import pytest

from tlreport.heads.label_noise import (
    LabelIssue,
    confident_joint,
    find_label_issues,
    out_of_fold_probabilities,
)

K = 12


def clusters(*, seed: int, flip: float = 0.05, per: int = 30, dim: int = 16, spread: float = 0.8
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Gaussian clusters, ``per`` points in each of K classes -> (X, true labels, given labels, flipped rows).

    ``flip`` of the points get another class, drawn uniformly among the K - 1 others.
    """
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(K), per)
    centres = rng.normal(size=(K, dim)) * 1.5
    X = centres[y] + spread * rng.normal(size=(y.size, dim))
    given = y.copy()
    flipped = rng.choice(y.size, int(round(flip * y.size)), replace=False)
    given[flipped] = (y[flipped] + rng.integers(1, K, flipped.size)) % K
    return X, y, given, np.sort(flipped)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_planted_flips_are_found(seed):
    # Over 30 seeds of this set-up (360 points, 18 flips): precision 0.86-1.00 (mean 0.99), recall 0.61-1.00
    # (mean 0.81); the floors below leave a margin under those.
    X, _, given, flipped = clusters(seed=seed)
    probs = out_of_fold_probabilities(X, given, K, seed=0, C=1.0)
    issues = find_label_issues(probs, given)
    found = {i.index for i in issues}
    hits = found & set(flipped.tolist())
    assert len(hits) >= 0.8 * len(found)                  # at least 80% of the flagged images are planted flips
    assert len(hits) >= 0.5 * len(flipped)
    for issue in issues:
        assert issue.suggested != issue.given
        assert issue.suggested == int(probs[issue.index].argmax())
        assert issue.self_confidence == pytest.approx(probs[issue.index, issue.given])
        assert issue.suggested_probability == pytest.approx(probs[issue.index].max())
    confidences = [i.self_confidence for i in issues]
    assert confidences == sorted(confidences)              # most suspicious first


def test_clean_data_flags_few():
    X, y, _, _ = clusters(seed=3, flip=0.0)
    probs = out_of_fold_probabilities(X, y, K, seed=0, C=1.0)
    assert np.mean(probs.argmax(1) == y) > 0.95
    assert len(find_label_issues(probs, y)) <= 2          # 0 on 30 seeds of this set-up


def test_out_of_fold_probabilities_shape_and_determinism():
    X, _, given, _ = clusters(seed=4)
    a = out_of_fold_probabilities(X, given, K, seed=7, C=1.0)
    b = out_of_fold_probabilities(X, given, K, seed=7, C=1.0)
    assert a.shape == (given.size, K)
    np.testing.assert_allclose(a.sum(1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(a, b)
    assert find_label_issues(a, given) == find_label_issues(b, given)
    # PCA inside each fold is seeded as well
    Xw = np.hstack([X, X @ np.random.default_rng(0).normal(size=(16, 48))])
    np.testing.assert_array_equal(out_of_fold_probabilities(Xw, given, K, seed=7, components=8),
                                  out_of_fold_probabilities(Xw, given, K, seed=7, components=8))


def test_an_absent_class_gets_zero_probability():
    X, _, given, _ = clusters(seed=5)
    probs = out_of_fold_probabilities(X, given, K + 1, seed=0, C=1.0)   # class K has no images
    assert probs.shape == (given.size, K + 1)
    assert np.all(probs[:, K] == 0.0)


def test_confident_joint_by_hand():
    # thresholds: class 0 -> mean(0.9, 0.8, 0.2) = 0.633, class 1 -> mean(0.7, 0.9) = 0.8
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.2, 0.8], [0.3, 0.7], [0.1, 0.9]])
    y = np.array([0, 0, 0, 1, 1])
    raw = confident_joint(probs, y, calibrate=False)
    np.testing.assert_array_equal(raw, [[2, 1], [0, 1]])      # row 3 passes neither threshold: not counted
    cal = confident_joint(probs, y)
    np.testing.assert_allclose(cal.sum(1), [3, 2])
    issues = find_label_issues(probs, y)
    assert issues == [LabelIssue(index=2, given=0, suggested=1, self_confidence=0.2, suggested_probability=0.8)]


@pytest.mark.parametrize("probs, y, match", [
    (np.full((4, 3), 1 / 3), np.array([0, 1, 2]), "len"),
    (np.full((3,), 1 / 3), np.array([0, 1, 2]), r"\(n, num_classes\)"),
    (np.full((3, 3), 1 / 3), np.array([0, 1, 3]), "0..2"),
    (np.full((3, 3), 1 / 3), np.array([0.0, 1.0, 2.0]), "integers"),
    (np.full((3, 3), np.nan), np.array([0, 1, 2]), "NaN"),
    (np.full((3, 3), 1 / 3), np.zeros((3, 1), dtype=int), "1-d"),
])
def test_find_label_issues_rejects_bad_input(probs, y, match):
    with pytest.raises(ValueError, match=match):
        find_label_issues(probs, y)


def test_out_of_fold_probabilities_rejects_bad_input():
    X, _, given, _ = clusters(seed=6)
    with pytest.raises(ValueError, match=r"\(n, d\)"):
        out_of_fold_probabilities(X[:-1], given, K, seed=0)
    with pytest.raises(ValueError, match="0..11"):
        out_of_fold_probabilities(X, given, K - 1, seed=0)
    with pytest.raises(ValueError, match="needs 5"):
        out_of_fold_probabilities(X[:33], given[:33], K, seed=0)          # only class 0 and 3 of class 1
    with pytest.raises(ValueError, match="folds"):
        out_of_fold_probabilities(X, given, K, seed=0, folds=1)
    with pytest.raises(ValueError, match="NaN"):
        out_of_fold_probabilities(np.where(X > 2, np.nan, X), given, K, seed=0)


def test_threads_do_not_change_the_result():
    X, _, given, _ = clusters(seed=8)
    np.testing.assert_array_equal(out_of_fold_probabilities(X, given, K, seed=1, C=1.0, n_jobs=1),
                                  out_of_fold_probabilities(X, given, K, seed=1, C=1.0, n_jobs=3))


def test_every_fold_projects_or_none_does():
    from tlreport.heads.label_noise import projected_components

    # 101 images in 5 folds: training folds of 80 and 81 images; 80 components fit neither fully
    assert projected_components(101, 512, folds=5, components=80) is None
    assert projected_components(101, 512, folds=5, components=79) == 79
    assert projected_components(101, 60, folds=5, components=79) is None        # fewer features than that
    assert projected_components(9145, 1280, folds=5, components=512) == 512     # Caltech-101, Lite0
    assert projected_components(9145, 1280, folds=5, components=None) is None
    # 72 images in 5 folds train on 57 or 58: 57 components fit some folds, not all, so none projects (the
    # rule once taken per fold projected three folds of five)
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(6), 12)
    X = (rng.normal(size=(72, 64)) + 2.0 * np.eye(6)[y] @ rng.normal(size=(6, 64))).astype(np.float32)
    straddling = out_of_fold_probabilities(X, y, 6, seed=7, components=57)
    np.testing.assert_array_equal(straddling, out_of_fold_probabilities(X, y, 6, seed=7, components=None))
    assert not np.array_equal(out_of_fold_probabilities(X, y, 6, seed=7, components=8), straddling)
