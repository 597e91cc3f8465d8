"""The intervals the post prints hold their 95% in simulation, where the truth is known."""

from __future__ import annotations

import numpy as np

from tlreport.heads.metrics import mean_per_class_interval


def test_the_mean_per_class_interval_covers_the_truth_with_few_test_images_per_class():
    """13 classes of 8 test images, as the offline default's test set: most classes near-perfect, so
    many come out 8 of 8.  The interval covers the true mean per-class accuracy about 95% of the time;
    a bootstrap within each class, which gives a perfect class no spread, covers it far less often."""
    rng = np.random.default_rng(0)
    truth = np.array([0.99, 0.98, 0.97, 0.97, 0.95, 0.95, 0.93, 0.9, 0.9, 0.85, 0.8, 0.6, 0.4])
    y = np.repeat(np.arange(len(truth)), 8)
    covered = bootstrap_covered = 0
    reps = 1000
    for _ in range(reps):
        hit = (rng.random(len(y)) < truth[y]).astype(float)
        low, high = mean_per_class_interval(hit, y)
        covered += low <= truth.mean() <= high
        per_class = np.stack([hit[y == c][rng.integers(0, 8, size=(400, 8))].mean(axis=1)
                              for c in range(len(truth))])
        b_low, b_high = np.percentile(per_class.mean(axis=0), [2.5, 97.5])
        bootstrap_covered += b_low <= truth.mean() <= b_high
    assert 0.93 <= covered / reps <= 0.99
    assert bootstrap_covered / reps < covered / reps - 0.03
