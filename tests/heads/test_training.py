"""Tests for splits, the softmax trainer, evaluation and the exported classifier."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tlreport.datasets.splits import split_by_hash, split_counts
from tlreport.errors import UserError
from tlreport.heads.export import classify_with, export_classifier, load_classifier
from tlreport.heads.metrics import evaluate
from tlreport.heads.softmax import (
    HISTORY_COLUMNS,
    predict_proba,
    train_softmax,
    train_softmax_many,
    train_softmax_penalties,
)


def _shas(n, prefix="img"):
    return [hashlib.sha256(f"{prefix}{i}".encode()).hexdigest() for i in range(n)]


# --------------------------------------------------------------------------- split


def test_split_counts_exact_and_within_one():
    for n in range(0, 200):
        counts = split_counts(n, (0.6, 0.2, 0.2))
        assert sum(counts) == n
        assert all(abs(c - n * f) <= 1 for c, f in zip(counts, (0.6, 0.2, 0.2), strict=True))
    assert split_counts(10, (0.6, 0.2, 0.2)) == [6, 2, 2]
    assert split_counts(31, (0.6, 0.2, 0.2)) == [19, 6, 6]
    assert split_counts(7, (0.5, 0.5)) == [4, 3]


def test_split_covers_every_image_once_with_stratified_counts():
    rng = np.random.default_rng(0)
    sizes = [31, 45, 800, 62, 7, 100]
    labels = np.repeat(np.arange(len(sizes)), sizes)
    rng.shuffle(labels)
    shas = _shas(len(labels))
    parts = split_by_hash(shas, labels, (0.6, 0.2, 0.2), seed=3)
    assert parts.shape == labels.shape and set(np.unique(parts)) <= {0, 1, 2}
    for cls, n in enumerate(sizes):
        got = [int(np.sum((labels == cls) & (parts == p))) for p in range(3)]
        assert got == split_counts(n, (0.6, 0.2, 0.2)), cls
    # deterministic, independent of manifest order, and the seed matters
    assert np.array_equal(parts, split_by_hash(shas, labels, seed=3))
    perm = rng.permutation(len(labels))
    assert np.array_equal(split_by_hash([shas[i] for i in perm], labels[perm], seed=3), parts[perm])
    assert not np.array_equal(parts, split_by_hash(shas, labels, seed=4))


def test_split_is_stable_when_images_are_added():
    labels = np.repeat(np.arange(4), [30, 41, 55, 12])
    shas = _shas(len(labels))
    parts = split_by_hash(shas, labels, seed=0)
    extra = _shas(25, prefix="new")
    for k, sha in enumerate(extra):
        cls = k % 4
        new_labels = np.append(labels, cls)
        new_parts = split_by_hash([*shas, sha], new_labels, seed=0)
        moved = int(np.sum(new_parts[:-1] != parts))
        assert moved <= 2, (k, moved)
        # images of other classes never move
        assert np.array_equal(new_parts[:-1][labels != cls], parts[labels != cls])
        # counts stay exact
        n = int(np.sum(new_labels == cls))
        assert [int(np.sum((new_labels == cls) & (new_parts == p))) for p in range(3)] == split_counts(
            n, (0.6, 0.2, 0.2)
        )
        labels, shas, parts = new_labels, [*shas, sha], new_parts


def test_split_rejects_bad_fractions():
    with pytest.raises(UserError, match="fractions"):
        split_by_hash(_shas(3), np.zeros(3), (0.7, 0.2, 0.2), seed=0)
    with pytest.raises(ValueError):
        split_by_hash(_shas(3), np.zeros(4), seed=0)


# --------------------------------------------------------------------------- training


def _blobs(n_per_class=60, classes=5, dim=32, sep=3.0, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * sep
    y = np.repeat(np.arange(classes), n_per_class)
    X = (centres[y] + rng.normal(size=(len(y), dim)) + 5.0).astype(np.float32)  # offset: standardisation matters
    perm = rng.permutation(len(y))
    return X[perm], y[perm]


def test_train_softmax_learns_separable_data():
    X, y = _blobs()
    Xtr, ytr, Xva, yva = X[:200], y[:200], X[200:], y[200:]
    head = train_softmax(Xtr, ytr, Xva, yva, num_classes=5, epochs=30, batch_size=32, seed=0, patience=None)
    h = head.history
    assert list(h.columns) == HISTORY_COLUMNS and list(h.epoch) == list(range(1, 31))
    assert h.loss.iloc[-1] < 0.5 * h.loss.iloc[0]
    assert h.val_loss.iloc[-1] < h.val_loss.iloc[0]
    m = evaluate(predict_proba(head, Xva), yva, 5)
    assert m["accuracy"] > 0.95 and m["n"] == len(yva)
    assert head.W.shape == (32, 5) and head.b.shape == (5,)
    # folded weights act on raw features exactly like the standardised head
    W, b = head.folded()
    z = X @ W + b
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    np.testing.assert_allclose(p, predict_proba(head, X), atol=1e-4)


def test_train_softmax_is_deterministic():
    X, y = _blobs(n_per_class=30, classes=4, dim=16, sep=1.0, seed=1)
    kw = dict(num_classes=4, epochs=8, batch_size=16, seed=7, patience=None)
    a = train_softmax(X[:90], y[:90], X[90:], y[90:], **kw)
    b = train_softmax(X[:90], y[:90], X[90:], y[90:], **kw)
    assert a.W.tobytes() == b.W.tobytes() and a.b.tobytes() == b.b.tobytes()
    assert a.history.equals(b.history)
    c = train_softmax(X[:90], y[:90], X[90:], y[90:], **{**kw, "seed": 8})
    assert c.W.tobytes() != a.W.tobytes()


def test_bfloat16_products_train_float32_weights_close_to_the_float32_run():
    """precision="bfloat16" rounds the inputs of the two matrix products only: the weights stay float32,
    the run is deterministic and lands near the float32 one (a few bf16 roundings, not a different head)."""
    X, y = _blobs(n_per_class=40, classes=5, dim=24, sep=1.5, seed=2)
    kw = dict(num_classes=5, epochs=12, batch_size=32, seed=3, patience=None)
    fp32 = train_softmax(X[:150], y[:150], X[150:], y[150:], **kw)
    bf16 = train_softmax(X[:150], y[:150], X[150:], y[150:], precision="bfloat16", **kw)
    again = train_softmax(X[:150], y[:150], X[150:], y[150:], precision="bfloat16", **kw)
    assert bf16.W.dtype == np.float32 and bf16.params["precision"] == "bfloat16"
    assert bf16.W.tobytes() == again.W.tobytes()
    assert not np.array_equal(bf16.W, fp32.W)                       # the products did run in bf16
    scale = float(np.abs(fp32.W).max())
    assert float(np.abs(bf16.W - fp32.W).max()) < 0.05 * scale
    assert evaluate(predict_proba(bf16, X[150:]), y[150:], 5)["accuracy"] > 0.95
    with pytest.raises(UserError, match="precision"):
        train_softmax(X, y, X, y, num_classes=5, precision="float16")


def test_an_epoch_is_split_into_near_equal_batches_not_full_batches_and_a_runt():
    # 130 images at batch 128 train as two batches of 65, exactly like batch 65 (and batch 70, which
    # needs two batches too); batch 64 needs three (44, 43, 43) and so trains differently
    X, y = _blobs(n_per_class=30, classes=5, dim=16, sep=1.0, seed=3)
    X, y = X[:130], y[:130]
    kw = dict(num_classes=5, epochs=5, seed=4, patience=None, standardize=False)
    runs = {bs: train_softmax(X, y, X[:0], y[:0], batch_size=bs, **kw) for bs in (128, 65, 70, 64)}
    for bs in (65, 70):
        assert runs[bs].W.tobytes() == runs[128].W.tobytes()
        assert runs[bs].history.equals(runs[128].history)
    assert runs[64].W.tobytes() != runs[128].W.tobytes()
    assert runs[128].params["batch_size"] == 128   # what was asked for, as the post reports it


def test_early_stopping_restores_best_epoch():
    # random labels: the head can only memorise, so validation loss turns up early
    rng = np.random.default_rng(2)
    X = rng.normal(size=(80, 64)).astype(np.float32)
    y = rng.integers(0, 3, 80)
    head = train_softmax(
        X[:40], y[:40], X[40:], y[40:], num_classes=3, epochs=200, batch_size=8, lr=0.05, l2=0.0,
        schedule="constant", patience=5, seed=0,
    )
    h = head.history
    assert len(h) < 200
    assert head.best_epoch == int(h.epoch[h.val_loss.idxmin()])
    assert len(h) == head.best_epoch + 5
    m = evaluate(predict_proba(head, X[40:]), y[40:], 3)
    assert m["loss"] == pytest.approx(h.val_loss.min(), rel=1e-3)
    # patience 0: it stops at the first epoch that does not improve, not before
    zero = train_softmax(X[:40], y[:40], X[40:], y[40:], num_classes=3, epochs=200, batch_size=8, lr=0.05, l2=0.0,
                         schedule="constant", patience=0, seed=0).history.val_loss.to_numpy()
    assert len(zero) > 1 and (np.diff(zero[:-1]) < 0).all() and zero[-1] >= zero[-2]


def test_heads_trained_side_by_side_equal_heads_trained_alone():
    """train_softmax_many is K independent train_softmax runs, early stopping included."""
    rng = np.random.default_rng(5)
    problems = []
    for k in range(3):
        X = rng.normal(size=(80, 24)).astype(np.float32)
        y = rng.integers(0, 3, 80)
        X[:, :3] += 2.0 * np.eye(3, dtype=np.float32)[y] * (k == 0)   # only problem 0 is learnable
        problems.append((X[:40], y[:40], X[40:], y[40:]))
    kw = dict(num_classes=3, epochs=60, batch_size=16, lr=0.05, l2=1e-4, schedule="constant", patience=4)
    together = train_softmax_many(problems, seeds=[3, 4, 5], **kw)
    alone = [train_softmax(*p, seed=s, **kw) for p, s in zip(problems, [3, 4, 5], strict=True)]
    assert len({len(h.history) for h in alone}) > 1          # they stop at different epochs
    for t, a in zip(together, alone, strict=True):
        assert t.best_epoch == a.best_epoch and len(t.history) == len(a.history)
        np.testing.assert_allclose(t.W, a.W, atol=1e-5)
        np.testing.assert_allclose(t.b, a.b, atol=1e-5)
        np.testing.assert_allclose(t.history.to_numpy(), a.history.to_numpy(), atol=1e-5)
    with pytest.raises(ValueError, match="same train and validation shapes"):
        train_softmax_many([problems[0], (problems[1][0][:30], problems[1][1][:30], *problems[1][2:])],
                           seeds=[1, 2], **kw)


def test_each_side_by_side_head_gets_its_own_l2():
    """Cross-validation trains one head per L2 candidate in one run: each must equal its run alone."""
    rng = np.random.default_rng(6)
    X = rng.normal(size=(60, 12)).astype(np.float32)
    y = rng.integers(0, 3, 60)
    X[:, :3] += 1.5 * np.eye(3, dtype=np.float32)[y]
    kw = dict(num_classes=3, epochs=30, batch_size=16, lr=0.05, schedule="cosine", patience=None)
    empty = (np.zeros((0, 12), np.float32), np.zeros(0, np.int64))
    together = train_softmax_many([(X, y, *empty)] * 3, seeds=[1, 1, 1], l2=[0.0, 1e-2, 1.0], **kw)
    for head, l2 in zip(together, [0.0, 1e-2, 1.0], strict=True):
        alone = train_softmax(X, y, *empty, seed=1, l2=l2, **kw)
        np.testing.assert_allclose(head.W, alone.W, atol=1e-5)
        assert head.params["l2"] == l2
    norms = [float(np.square(h.W).sum()) for h in together]
    assert norms[0] > norms[1] > norms[2]                    # a stronger penalty, smaller weights
    with pytest.raises(ValueError, match="one per problem"):
        train_softmax_many([(X, y, *empty)] * 2, seeds=[1, 2], l2=[0.1], **kw)


def test_penalties_sharing_a_problems_batches_each_equal_their_run_alone():
    """train_softmax_penalties: head [k][j] is train_softmax on problem k with seed k and penalty j, early
    stopping and best epoch included, although a problem's penalties share one kernel and one batch order."""
    rng = np.random.default_rng(8)
    problems = []
    for k in range(2):
        X = rng.normal(size=(90, 16)).astype(np.float32)
        y = rng.integers(0, 4, 90)
        X[:, :4] += (1.0 + k) * np.eye(4, dtype=np.float32)[y]
        problems.append((X[:50], y[:50], X[50:], y[50:]))
    l2s = [0.0, 3e-2, 1.0]
    kw = dict(num_classes=4, epochs=40, batch_size=16, lr=0.1, schedule="constant", patience=3,
              l2_weighting="variance", standardize=False)
    together = train_softmax_penalties(problems, seeds=[11, 12], l2s=l2s, **kw)
    assert [len(row) for row in together] == [3, 3]
    stops = set()
    for problem, seed, row in zip(problems, [11, 12], together, strict=True):
        for l2, head in zip(l2s, row, strict=True):
            alone = train_softmax(*problem, seed=seed, l2=l2, **kw)
            stops.add(len(alone.history))
            assert head.params["l2"] == l2 and head.best_epoch == alone.best_epoch
            assert len(head.history) == len(alone.history)
            np.testing.assert_allclose(head.W, alone.W, atol=1e-5)
            np.testing.assert_allclose(head.b, alone.b, atol=1e-5)
            np.testing.assert_allclose(head.history.to_numpy(), alone.history.to_numpy(), atol=1e-5)
    assert len(stops) > 1                                    # the heads of one kernel stop at different epochs
    with pytest.raises(ValueError, match="at least one penalty"):
        train_softmax_penalties(problems, seeds=[1, 2], l2s=[], **kw)


def _keras_reference(X, y, *, num_classes, epochs, batch_size, lr, momentum, l2, schedule, seed):
    """The head as Keras trains it: GradientTape on mean cross-entropy + ``l2 * sum(W**2)``, and
    ``keras.optimizers.SGD(momentum)`` (with ``CosineDecay``) applying the gradients, on the trainer's
    own initial weights, shuffles and near-equal batches."""
    import keras
    import tensorflow as tf

    n, d = X.shape
    steps = -(-n // batch_size)
    bs, n_big = divmod(n, steps)
    sizes = [bs + 1] * n_big + [bs] * (steps - n_big)
    kernel = keras.Variable(keras.initializers.GlorotUniform(seed=seed)((d, num_classes), dtype="float32"))
    bias = keras.Variable(np.zeros(num_classes, np.float32))
    rate = keras.optimizers.schedules.CosineDecay(lr, steps * epochs) if schedule == "cosine" else lr
    opt = keras.optimizers.SGD(learning_rate=rate, momentum=momentum)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(n)
        start = 0
        for size in sizes:
            idx = perm[start:start + size]
            start += size
            with tf.GradientTape() as tape:
                loss = loss_fn(y[idx], tf.matmul(X[idx], kernel) + bias) + l2 * tf.reduce_sum(tf.square(kernel))
            opt.apply(tape.gradient(loss, [kernel, bias]), [kernel, bias])
    return kernel.numpy(), bias.numpy()


@pytest.mark.parametrize("schedule", ["cosine", "constant"])
def test_the_trainer_takes_the_steps_of_keras_sgd_with_momentum(schedule):
    """The side-by-side epoch (stacked kernels, in-graph batches, the schedule's step count) takes the
    steps of a plain Keras loop with SGD with momentum, step for step (the seed's text says momentum; its
    code ran plain gradient descent)."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(70, 10)).astype(np.float32)
    y = rng.integers(0, 4, 70)
    X[:, :4] += np.eye(4, dtype=np.float32)[y]
    kw = dict(num_classes=4, epochs=6, batch_size=16, lr=0.1, momentum=0.9, l2=1e-2, schedule=schedule, seed=3)
    empty = (np.zeros((0, 10), np.float32), np.zeros(0, np.int64))
    head = train_softmax(X, y, *empty, standardize=False, patience=None, **kw)
    assert head.best_epoch == 6                              # the last epoch's weights, to compare
    W, b = _keras_reference(X, y, **kw)
    assert float(np.abs(W).max()) > 0.3                      # it moved well away from its start
    np.testing.assert_allclose(head.W, W, atol=2e-5)
    np.testing.assert_allclose(head.b, b, atol=2e-5)


def test_without_validation_images_the_last_epochs_weights_are_kept():
    """A fixed budget (the grid's heads train without validation images) ends on the weights the schedule
    ends on, even when an earlier epoch had a lower training loss (here the loss rises at a rate of 2)."""
    rng = np.random.default_rng(9)
    X = rng.normal(size=(70, 10)).astype(np.float32)
    y = rng.integers(0, 4, 70)
    empty = (np.zeros((0, 10), np.float32), np.zeros(0, np.int64))
    kw = dict(num_classes=4, batch_size=16, lr=2.0, schedule="constant", seed=3, patience=None, standardize=False)
    head = train_softmax(X, y, *empty, epochs=12, **kw)
    assert head.history.loss.idxmin() != len(head.history) - 1       # an earlier epoch had the lowest loss
    assert head.best_epoch == 12 and len(head.history) == 12
    patient = train_softmax(X, y, *empty, epochs=12, **{**kw, "patience": 2})   # nothing to monitor: no stop
    assert len(patient.history) == 12 and patient.W.tobytes() == head.W.tobytes()
    longer = train_softmax(X, y, *empty, epochs=13, **kw)             # the same steps, one epoch more
    assert not np.array_equal(head.W, longer.W)
    np.testing.assert_allclose(head.history.loss, longer.history.loss[:12])


def test_a_variance_weighted_penalty_is_the_plain_penalty_of_standardised_features():
    """l2_weighting="variance" on raw features has the optimum of the uniform penalty on standardised ones
    (l2 over the mean variance), so it does not care in which units each raw feature comes; the uniform
    penalty on raw features does."""
    rng = np.random.default_rng(8)
    X = rng.normal(size=(90, 4)).astype(np.float32)
    y = rng.integers(0, 3, 90)
    X[:, :3] += 0.8 * np.eye(3, dtype=np.float32)[y]
    X *= np.array([3.0, 1.0, 0.3, 1.0], np.float32)           # features in different units
    empty = (np.zeros((0, 4), np.float32), np.zeros(0, np.int64))
    # full-batch steps, small enough for the widest feature, long enough to converge: optima, not paths.
    # The last epoch's data loss is the optimum's (the returned weights are those of the lowest one)
    kw = dict(num_classes=3, epochs=800, batch_size=90, lr=0.05, schedule="constant", patience=None, seed=1)
    l2 = 0.05
    mean_var = float(X.var(axis=0, dtype=np.float64).mean())
    standardised = train_softmax(X, y, *empty, l2=l2 / mean_var, standardize=True, **kw).history.loss.iloc[-1]
    final = {w: train_softmax(X, y, *empty, l2=l2, l2_weighting=w, standardize=False, **kw).history.loss.iloc[-1]
             for w in ("variance", "uniform")}
    assert final["variance"] == pytest.approx(standardised, abs=1e-5)
    assert abs(final["uniform"] - standardised) > 1e-2
    with pytest.raises(UserError, match="l2_weighting"):
        train_softmax(X, y, *empty, num_classes=3, l2_weighting="per-class")


def test_train_softmax_validates_inputs():
    X, y = _blobs(n_per_class=5, classes=2, dim=4)
    with pytest.raises(UserError, match="schedule"):
        train_softmax(X, y, X, y, num_classes=2, schedule="step")
    with pytest.raises(ValueError, match="labels"):
        train_softmax(X, y + 5, X, y, num_classes=2)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UserError, match="NaN"):
        train_softmax(bad, y, X, y, num_classes=2)


# --------------------------------------------------------------------------- evaluate


def test_evaluate_hand_computed():
    probs = np.array(
        [
            [0.7, 0.2, 0.1],  # y=0 right
            [0.5, 0.4, 0.1],  # y=1 wrong
            [0.1, 0.1, 0.8],  # y=2 right
            [0.2, 0.7, 0.1],  # y=1 right
        ]
    )
    y = np.array([0, 1, 2, 1])
    m = evaluate(probs, y, 3)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["mean_per_class_accuracy"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["loss"] == pytest.approx(-np.mean(np.log([0.7, 0.4, 0.8, 0.7])))
    assert m["top5_accuracy"] == 1.0 and m["n"] == 4
    wide = np.full((2, 10), 0.01)
    wide[0, 9], wide[1, 0] = 0.91, 0.91
    wide[0, 3] = 0.0  # row 0's true class is the least likely: outside the top 5
    assert evaluate(wide / wide.sum(1, keepdims=True), np.array([3, 0]), 10)["top5_accuracy"] == 0.5


# --------------------------------------------------------------------------- export


def _fake_backbone(dim=8, size=16, seed=1):
    import keras

    inp = keras.Input((size, size, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inp)
    x = keras.layers.Conv2D(dim, 3, padding="same", activation="relu",
                            kernel_initializer=keras.initializers.GlorotUniform(seed=seed))(x)
    feats = keras.layers.GlobalAveragePooling2D(name="features")(x)
    return keras.Model(inp, feats, name="fake_backbone")


def test_export_reload_and_classify(tmp_path):
    backbone = _fake_backbone()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (40, 16, 16, 3), dtype=np.uint8)
    images[20:, :, :, 0] = 255  # class 1 is redder
    y = np.repeat([0, 1], 20)
    feats = np.asarray(backbone.predict(images.astype(np.float32), verbose=0))
    head = train_softmax(feats, y, feats, y, num_classes=2, epochs=20, batch_size=8, seed=0, patience=None)
    names = ["plain", "red things"]
    path = export_classifier(backbone, head, names, tmp_path / "clf.keras")
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["clf.keras"]

    model, loaded_names = load_classifier(path)
    assert loaded_names == names
    got = classify_with(model, loaded_names, images[:4], top_k=2)
    assert len(got) == 4 and all(len(r) == 2 for r in got)
    want = predict_proba(head, feats[:4])
    for row, p in zip(got, want, strict=True):
        (n1, p1), (n2, p2) = row
        assert p1 >= p2 and n1 == names[int(np.argmax(p))]
        assert p1 == pytest.approx(float(p.max()), abs=1e-4)
    with pytest.raises(UserError, match="expects 16x16"):
        classify_with(model, loaded_names, np.zeros((1, 8, 8, 3), np.uint8))
    with pytest.raises(UserError):
        load_classifier(tmp_path / "missing.keras")


def test_a_classifier_on_concatenated_backbones_takes_one_input_per_backbone(tmp_path):
    """``train.backbone = "a+b"``: two backbones of different input sizes (and the same layer names), one head
    on their concatenated features; the reloaded file gives the head's own probabilities."""
    a, b = _fake_backbone(dim=8, size=16, seed=1), _fake_backbone(dim=5, size=12, seed=2)
    rng = np.random.default_rng(0)
    big = rng.integers(0, 256, (30, 16, 16, 3), dtype=np.uint8)
    big[15:, :, :, 1] = 255
    small = big[:, 2:14, 2:14]
    y = np.repeat([0, 1], 15)
    feats = np.concatenate([np.asarray(a.predict(big.astype(np.float32), verbose=0)),
                            np.asarray(b.predict(small.astype(np.float32), verbose=0))], axis=1)
    head = train_softmax(feats, y, feats, y, num_classes=2, epochs=10, batch_size=8, seed=0, patience=None)
    path = export_classifier([a, b], head, ["plain", "green"], tmp_path / "clf.keras", backbone="a+b")
    model, names = load_classifier(path)
    assert [tuple(i.shape[1:3]) for i in model.inputs] == [(16, 16), (12, 12)]
    got = classify_with(model, names, [big[:6], small[:6]], top_k=2)
    for row, p in zip(got, predict_proba(head, feats[:6]), strict=True):
        assert row[0][0] == names[int(np.argmax(p))]
        assert row[0][1] == pytest.approx(float(p.max()), abs=1e-4)
    with pytest.raises(UserError, match="2 image input"):
        classify_with(model, names, big[:1])


def test_a_file_that_is_not_a_classifier_is_one_line(tmp_path):
    from tlreport.errors import UserError
    from tlreport.heads.export import load_classifier

    bogus = tmp_path / "classifier.keras"
    bogus.write_bytes(b"not a zip at all")
    with pytest.raises(UserError, match="is not a readable Keras classifier"):
        load_classifier(bogus)


def test_a_hand_edited_classifier_is_one_line(tmp_path):
    """A .keras file whose config.json was edited: not a model config at all, or class names that are not
    a list of strings, one per output."""
    import json
    import zipfile

    from tlreport.errors import UserError
    from tlreport.heads.export import load_classifier

    backbone = _fake_backbone()
    feats = np.asarray(backbone.predict(np.zeros((4, 16, 16, 3), np.float32), verbose=0))
    head = train_softmax(feats, np.array([0, 1, 0, 1]), feats, np.array([0, 1, 0, 1]), num_classes=2, epochs=2,
                         batch_size=2, seed=0, patience=None)
    good = export_classifier(backbone, head, ["a", "b"], tmp_path / "good.keras")

    def edited(name: str, edit):
        out = tmp_path / name
        with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
            for item in src.infolist():
                data = src.read(item)
                if item.filename == "config.json":
                    data = json.dumps(edit(json.loads(data))).encode()
                dst.writestr(item, data)
        return out

    def names(value):
        def edit(cfg):
            text = json.dumps(cfg).replace('"class_names": ["a", "b"]', '"class_names": ' + json.dumps(value))
            assert text != json.dumps(cfg)
            return json.loads(text)
        return edit

    for name, edit in [("list.keras", lambda cfg: []), ("five.keras", names(5)), ("short.keras", names(["a"]))]:
        with pytest.raises(UserError) as ei:
            load_classifier(edited(name, edit))
        assert "\n" not in str(ei.value) and name in str(ei.value)


# Ops whose GPU kernels raise Unimplemented when op determinism is enabled (TensorFlow's
# tensorflow/core/kernels: each checks OpDeterminismRequired() on the GPU).  The Python wrappers of the two
# cross-entropies route to deterministic compositions; the raw ops do not.
NO_DETERMINISTIC_GPU_KERNEL = {
    "SparseSoftmaxCrossEntropyWithLogits", "SoftmaxCrossEntropyWithLogits", "SparseTensorDenseMatMul",
    "UnsortedSegmentSum", "UnsortedSegmentProd", "UnsortedSegmentMax", "UnsortedSegmentMin",
    "SparseSegmentMeanGrad", "SparseSegmentSqrtNGrad", "SparseSegmentSumGrad", "ResizeNearestNeighborGrad",
    "AdjustContrastv2", "DepthwiseConv2dNativeBackpropFilter", "DepthwiseConv2dNativeBackpropInput",
    "FusedBatchNormGrad", "FusedBatchNormGradV2", "FusedBatchNormGradV3", "Bincount", "DenseBincount",
    "ScatterNd", "TensorScatterAdd", "CTCLoss", "CTCLossV2",
}


def _op_types(graph_def) -> set[str]:
    """Every op type of a graph, including those of the functions its loops and conditions call."""
    ops = {n.op for n in graph_def.node}
    for fn in graph_def.library.function:
        ops |= {n.op for n in fn.node_def}
    return ops


@pytest.mark.parametrize("mixed", [False, True])
@pytest.mark.parametrize("has_validation", [False, True])
def test_the_trainer_uses_only_ops_with_a_deterministic_gpu_kernel(mixed, has_validation):
    """A stand-in for a GPU run (none here): the trainer's whole graph, traced as it runs under
    enable_op_determinism, holds no op whose GPU kernel refuses to run deterministically.  The check itself
    catches the fused sparse cross-entropy the trainer used to call."""
    import tensorflow as tf

    from tlreport.heads.softmax import _sgd_program

    graph = _sgd_program(mixed, has_validation).get_concrete_function().graph.as_graph_def()
    ops = _op_types(graph)
    assert {"BatchMatMulV2", "StatelessWhile"} <= ops         # the real trainer, loops and all
    assert not ops & NO_DETERMINISTIC_GPU_KERNEL, ops & NO_DETERMINISTIC_GPU_KERNEL

    @tf.function(input_signature=[tf.TensorSpec([None, 3]), tf.TensorSpec([None], tf.int32)])
    def fused(z, y):
        return tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(features=z, labels=y)

    assert "SparseSoftmaxCrossEntropyWithLogits" in _op_types(fused.get_concrete_function().graph.as_graph_def())
    # and it runs with determinism required: the head trains as the grid trains it
    X, y = _blobs(n_per_class=10, classes=3, dim=6, sep=2.0, seed=1)
    empty = (X[:0], y[:0])
    head = train_softmax(X, y, *(empty if not has_validation else (X, y)), num_classes=3, epochs=3,
                         batch_size=8, seed=0, precision="bfloat16" if mixed else "float32")
    from tensorflow.python.framework.config import is_op_determinism_enabled

    assert np.isfinite(head.W).all() and is_op_determinism_enabled()
