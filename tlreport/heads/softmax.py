"""The new softmax layer's trainer: SGD with momentum on cached features, many heads side by side.

This is the post's "Transfer Learning" step.  Bottleneck features of a frozen
backbone arrive as ``float32`` matrices ``(N, D)``; a single
``Dense(num_classes, softmax)`` layer is trained on them with cross-entropy and
Keras' SGD with momentum, exactly the head of the seed notebook.  What differs
from the seed is only *how fast* and *how reproducibly* it is trained:

* the whole training set lives in memory as one tensor and the whole run,
  every epoch and every mini-batch of a seeded permutation, is ONE TensorFlow
  function, traced once per process (``model.fit`` pays Python overhead per
  batch, and a new graph per model);
* each problem's seed alone draws its initial weights and shuffles, and every
  op runs deterministically, so the weights and the history are byte-identical
  between runs (the global seeds, :func:`seed_everything`, are set only when
  nothing set them, since setting TensorFlow's also empties its kernel cache);
* features are standardised with the training set's mean/std (folded back into
  the Dense weights for export, so the exported head reads raw features).

TensorFlow and Keras are imported inside the functions that need them, so
importing this module is cheap.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tlreport.errors import UserError
from tlreport.heads.base import _softmax

if TYPE_CHECKING:
    import pandas as pd

TRAIN, VAL, TEST = 0, 1, 2
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
_EPS = 1e-7  # Keras' backend epsilon, used to clip probabilities in the loss


# --------------------------------------------------------------------------- training


@dataclass
class TrainedHead:
    """A trained softmax head.

    ``W`` (D, C) and ``b`` (C,) act on *standardised* features
    ``(x - mean) / std``; :meth:`folded` gives the equivalent weights on raw
    features (what :func:`export_classifier` writes).  ``history`` has one row
    per epoch run (columns :data:`HISTORY_COLUMNS`); the weights are those of
    ``best_epoch`` (lowest validation loss), not necessarily the last one.
    """

    W: np.ndarray
    b: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    history: pd.DataFrame
    best_epoch: int
    seconds: float
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return int(self.W.shape[1])

    def folded(self) -> tuple[np.ndarray, np.ndarray]:
        """``(W', b')`` with ``softmax(x @ W' + b')`` equal to the head on raw ``x``."""
        W = (self.W.astype(np.float64) / self.std.astype(np.float64)[:, None]).astype(np.float32)
        b = (self.b.astype(np.float64) - self.mean.astype(np.float64) @ W.astype(np.float64)).astype(
            np.float32
        )
        return W, b


def seed_everything(seed: int, *, deterministic_ops: bool = True) -> None:
    """Seed Python, NumPy, Keras and TF at once; optionally make TF ops deterministic.

    The one place where tlreport touches global random state.
    """
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(int(seed))
    if deterministic_ops:
        tf.config.experimental.enable_op_determinism()


def _as_xy(X: np.ndarray, y: np.ndarray, name: str, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    X = np.ascontiguousarray(X, dtype=np.float32)
    y = np.asarray(y).astype(np.int32, copy=False)
    if X.ndim != 2 or y.ndim != 1 or len(X) != len(y):
        raise ValueError(f"{name}: expected X (N, D) and y (N,), got {X.shape} and {y.shape}")
    if len(y) and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{name}: labels must lie in [0, {num_classes}); got [{y.min()}, {y.max()}]")
    if not np.isfinite(X).all():
        raise UserError(f"{name}: features contain NaN or infinite values")
    return X, y


def train_softmax(
    Xtr: np.ndarray,
    ytr: np.ndarray,
    Xva: np.ndarray,
    yva: np.ndarray,
    *,
    num_classes: int,
    lr: float = 0.05,
    momentum: float = 0.9,
    schedule: str = "cosine",
    batch_size: int = 128,
    epochs: int = 60,
    l2: float = 1e-4,
    l2_weighting: str = "uniform",
    patience: int | None = 20,
    seed: int = 0,
    standardize: bool = True,
    precision: str = "float32",
) -> TrainedHead:
    """Train ``Dense(num_classes, softmax)`` on features with SGD + momentum.

    Cross-entropy on the Dense logits plus ``l2 * sum(W**2)`` (Keras' ``L2``
    regulariser; see ``l2_weighting``), minimised by the steps of
    ``keras.optimizers.SGD(lr, momentum)`` over shuffled mini-batches (tested
    step for step against a Keras loop).  Each epoch visits every image once in
    ``ceil(n / batch_size)`` batches whose sizes differ by at most one:
    ``model.fit`` would end on a runt of a few images, which at full step size
    and momentum hurts small training sets.

    ``schedule="cosine"`` decays the learning rate to 0 over ``epochs``;
    ``"constant"`` keeps it.  After each epoch the validation loss is checked;
    training stops after ``patience`` epochs without improvement (``None``
    disables it) and the best epoch's weights are returned.  Without
    validation images nothing is monitored: every epoch runs and the last
    epoch's weights are returned (a fixed budget).  ``loss`` and ``accuracy``
    in the history are the means over the epoch's batches (as Keras reports
    them); all losses are the data term only, comparable with :func:`evaluate`.

    ``standardize`` trains on features standardised by the training set's mean
    and std, so one learning rate fits every backbone's feature scale.
    ``l2_weighting="variance"`` weights each feature's row of ``W`` in the
    penalty by that feature's variance over the training images (over the mean
    variance, so ``l2`` keeps its scale): the plain L2 penalty of a head on
    standardised features, written for raw ones -- the prior of ``logreg``,
    while SGD keeps the raw features' geometry.  With ``standardize=True`` the
    two weightings agree.

    ``precision="bfloat16"`` runs the step's two matrix products on bfloat16
    copies of the features and the weights, accumulating in float32; the
    weights, their momentum and every update stay float32.

    The same inputs and ``seed`` give byte-identical ``W``, ``b`` and history.
    This is :func:`train_softmax_many` with one problem.  Why the defaults are
    what they are: docs/performance.md.
    """
    return train_softmax_many(
        [(Xtr, ytr, Xva, yva)], seeds=[seed], num_classes=num_classes, lr=lr, momentum=momentum,
        schedule=schedule, batch_size=batch_size, epochs=epochs, l2=l2, l2_weighting=l2_weighting,
        patience=patience, standardize=standardize, precision=precision,
    )[0]


def train_softmax_many(
    problems: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    seeds: Sequence[int],
    num_classes: int,
    l2: float | Sequence[float] = 1e-4,
    **kwargs: Any,
) -> list[TrainedHead]:
    """Train ``K`` independent heads of :func:`train_softmax` side by side, one per problem.

    ``problems[k]`` is ``(Xtr, ytr, Xva, yva)`` and is trained with ``seeds[k]``
    exactly as :func:`train_softmax` would train it alone: its own initial
    weights, its own shuffles, its own early stopping and best epoch.  The
    heads are stacked into one ``(K, D, C)`` kernel so that each step runs one
    batched matrix product for all of them; the loss is the *sum* of the
    per-head losses, so every head's gradient is its own, and SGD's update is
    elementwise, so the heads never interact.  This pays TensorFlow's per-step
    overhead once for ``K`` heads: the Zeiler & Fergus grid trains its 5 folds
    of a setting in one run (``benchmarks/grid.py``).

    All training sets must have the same shape, and all validation sets too
    (the folds of one protocol setting do).  ``l2`` is one value for every
    head or one per problem.  Every other keyword is :func:`train_softmax`'s.
    """
    K = len(problems)
    l2s = [float(v) for v in l2] if isinstance(l2, Sequence) else [float(l2)] * K
    if len(l2s) != K:
        raise ValueError(f"l2 must be one value >= 0, or one per problem; got {l2!r} for {K} problems")
    heads = _train_side_by_side(problems, seeds=seeds, num_classes=num_classes, l2=[[v] for v in l2s], **kwargs)
    return [row[0] for row in heads]


def train_softmax_penalties(
    problems: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    seeds: Sequence[int],
    num_classes: int,
    l2s: Sequence[float],
    **kwargs: Any,
) -> list[list[TrainedHead]]:
    """Train each problem once per penalty in ``l2s``, side by side: ``heads[k][j]`` is
    ``train_softmax(*problems[k], seed=seeds[k], l2=l2s[j])``.

    The heads of one problem share its initial weights and its shuffles (both
    come from the problem's seed), so they differ only in their penalty.  That is
    what comparing penalties wants (a paired comparison), and it is
    cheaper: a problem's images are stored and gathered once per step for all
    its penalties, and its ``L`` heads sit side by side in one ``(D, L*C)``
    kernel, so each step's products are ``L`` times wider instead of ``L`` times
    as many (``benchmarks/softmax_step.py``).
    """
    grid = [float(v) for v in l2s]
    if not grid:
        raise ValueError("l2s: need at least one penalty")
    return _train_side_by_side(problems, seeds=seeds, num_classes=num_classes, l2=[grid] * len(problems), **kwargs)


def _train_side_by_side(
    problems: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    seeds: Sequence[int],
    num_classes: int,
    l2: Sequence[Sequence[float]],
    lr: float = 0.05,
    momentum: float = 0.9,
    schedule: str = "cosine",
    batch_size: int = 128,
    epochs: int = 60,
    l2_weighting: str = "uniform",
    patience: int | None = 20,
    standardize: bool = True,
    precision: str = "float32",
) -> list[list[TrainedHead]]:
    """``K`` problems x ``L`` penalties (``l2[k][j]``): ``K * L`` heads in one ``(K, D, L*C)`` kernel.

    Problem ``k``'s heads share its data, its initial weights and its shuffles
    (``seeds[k]``); head ``(k, j)`` is the columns ``j*C .. (j+1)*C`` of kernel ``k``.
    """
    import keras
    import tensorflow as tf

    if schedule not in ("cosine", "constant"):
        raise UserError(f"schedule must be 'cosine' or 'constant'. Received: schedule={schedule!r}")
    if l2_weighting not in ("uniform", "variance"):
        raise UserError(f"l2_weighting must be 'uniform' or 'variance'. Received: l2_weighting={l2_weighting!r}")
    if precision not in ("float32", "bfloat16"):
        raise UserError(f"precision must be 'float32' or 'bfloat16'. Received: precision={precision!r}")
    if batch_size < 1 or epochs < 1:
        raise UserError(f"batch_size and epochs must be >= 1. Received: {batch_size=}, {epochs=}")
    if num_classes < 2:
        raise UserError(f"need at least 2 classes. Received: num_classes={num_classes}")
    if not problems or len(problems) != len(seeds):
        raise ValueError(f"need one seed per problem: {len(problems)} problems, {len(seeds)} seeds")
    data = []
    for k, (Xtr, ytr, Xva, yva) in enumerate(problems):
        tag = "" if len(problems) == 1 else f" (problem {k})"
        Xtr, ytr = _as_xy(Xtr, ytr, "train" + tag, num_classes)
        Xva, yva = _as_xy(Xva, yva, "validation" + tag, num_classes)
        if len(Xtr) == 0:
            raise UserError("the training set is empty" + tag)
        if len(Xva) and Xva.shape[1] != Xtr.shape[1]:
            raise ValueError(f"train and validation feature widths differ{tag}: {Xtr.shape[1]} != {Xva.shape[1]}")
        data.append((Xtr, ytr, Xva, yva))
    n, d = data[0][0].shape
    nv = len(data[0][2])
    if any(p[0].shape != (n, d) or len(p[2]) != nv for p in data):
        raise ValueError("train_softmax_many: every problem needs the same train and validation shapes")
    K, L, C = len(data), len(l2[0]), num_classes
    l2_kl = np.asarray(l2, np.float64)
    if l2_kl.shape != (K, L) or not np.isfinite(l2_kl).all() or (l2_kl < 0).any():
        raise ValueError(f"every l2 must be a finite value >= 0, one row of {L} per problem; got {l2!r} "
                         f"for {K} problems")

    t0 = time.perf_counter()
    # deterministic kernels.  The run draws nothing from TensorFlow's global seed, but under op determinism
    # an unseeded random op raises, so the seed is set once if nothing set one: setting it empties
    # TensorFlow's kernel cache, and when every call set it the traced program paid its set-up again each
    # time (0.3 s a call, 40% of a small run)
    from tensorflow.python.eager import context

    if context.global_seed() is None:
        seed_everything(int(seeds[0]))
    tf.config.experimental.enable_op_determinism()
    stats = []
    for Xtr, *_ in data:
        if standardize:
            mean = Xtr.mean(axis=0, dtype=np.float64).astype(np.float32)
            std = Xtr.std(axis=0, dtype=np.float64).astype(np.float32)
            std[std < 1e-6] = 1.0  # constant features: leave them unscaled
        else:
            mean = np.zeros(d, np.float32)
            std = np.ones(d, np.float32)
        stats.append((mean, std))
    Xs = np.stack([(p[0] - m) / s for p, (m, s) in zip(data, stats, strict=True)])
    Xvs = (np.stack([(p[2] - m) / s for p, (m, s) in zip(data, stats, strict=True)]) if nv
           else np.zeros((K, 0, d), np.float32))

    # ceil(n / batch_size) batches of near-equal size, not full batches and a runt: with momentum 0.9 a
    # 2-image last batch (130 images at batch 128) takes a full-size step on a noisy gradient every epoch,
    # which cost the 13-class subset 4 points at 10 images per class
    batch = min(int(batch_size), n)
    steps = -(-n // batch)
    bs, n_big = divmod(n, steps)                   # n_big batches of bs + 1 images, the rest of bs

    # a problem's L heads start from the same weights: its seed's, as train_softmax would draw them
    init = np.stack([np.tile(keras.initializers.GlorotUniform(seed=int(s))((d, C), dtype="float32"), (1, L))
                     for s in seeds])                                                     # (K, D, L*C)
    # every epoch's shuffle up front, drawn as an epoch-by-epoch loop would draw them: (epochs, K, n)
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    perms = np.stack([np.stack([r.permutation(n).astype(np.int32) for r in rngs]) for _ in range(epochs)])
    # the penalty's gradient, d/dW of l2 * sum(w_d * W**2), is 2 * l2 * w_d * W: the outer product of a
    # per-feature weight (K, D, 1) and a per-column 2 * l2 (K, 1, L*C)
    penalty_cols = 2.0 * np.repeat(l2_kl.astype(np.float32), C, axis=1)[:, None, :]
    penalty_rows = (_variance_weights(Xs)[:, :, None] if l2_weighting == "variance"
                    else np.ones((K, d, 1), np.float32))
    mixed = precision == "bfloat16"
    run = _sgd_program(mixed, nv > 0)
    out = run(tf.constant(Xs.astype(tf.bfloat16.as_numpy_dtype) if mixed else Xs),
              tf.constant(np.stack([p[1] for p in data])),
              tf.constant(Xvs), tf.constant(np.stack([p[3] for p in data]).reshape(K, nv)),
              tf.constant(perms), tf.constant(_learning_rates(lr, schedule, steps * epochs)),
              tf.constant(init), tf.constant(penalty_rows), tf.constant(penalty_cols),
              tf.constant(momentum, tf.float32), tf.constant(bs, tf.int32), tf.constant(n_big, tf.int32),
              tf.constant(steps, tf.int32), tf.constant(L, tf.int32),
              tf.constant(epochs + 1 if patience is None else int(patience), tf.int32))   # None: never stops
    W_last, b_last, W_best, b_best, history, best_epoch, stop_epoch = (t.numpy() for t in out)

    seconds = (time.perf_counter() - t0) / (K * L)
    import pandas as pd  # not at import time: the config schema reads the head registry

    heads: list[list[TrainedHead]] = [[] for _ in range(K)]
    for k in range(K):
        for j in range(L):
            ran = int(stop_epoch[k, j])                # the epochs this head trained before it stopped
            rows = history[:ran, :, k, j]              # (epochs, 4): loss, accuracy, val_loss, val_accuracy
            bad = np.flatnonzero(~np.isfinite(rows[:, 0]))
            if bad.size:
                raise UserError(f"training diverged at epoch {bad[0] + 1} (loss {rows[bad[0], 0]}); "
                                f"lower the learning rate (lr={lr})")
            cols = slice(j * C, (j + 1) * C)
            if nv:
                W, b, best = W_best[k][:, cols], b_best[k, 0, cols], int(best_epoch[k, j])
            else:
                # a fixed budget (the grid's heads): the weights the whole schedule ends on, as the head
                # describes itself.  Keeping the epoch of the lowest training loss instead picked epochs
                # 92-97 of 100 on small problems in bfloat16
                W, b, best = W_last[k][:, cols], b_last[k, 0, cols], ran
            history_kj = pd.DataFrame(rows.astype(np.float64), columns=HISTORY_COLUMNS[1:])
            history_kj.insert(0, "epoch", np.arange(1, ran + 1))
            hp = dict(lr=lr, momentum=momentum, schedule=schedule, batch_size=batch, epochs=epochs,
                      l2=float(l2_kl[k, j]), l2_weighting=l2_weighting, patience=patience, seed=int(seeds[k]),
                      standardize=standardize, precision=precision)
            heads[k].append(TrainedHead(W=W.copy(), b=b.copy(), mean=stats[k][0], std=stats[k][1],
                                        history=history_kj, best_epoch=best, seconds=seconds, params=hp))
    return heads


def _learning_rates(lr: float, schedule: str, total_steps: int) -> np.ndarray:
    """The rate of every step, ``(total_steps,)`` float32: Keras' ``CosineDecay(lr, total_steps)``
    (to 0 at the last step) or ``lr`` throughout."""
    if schedule == "constant":
        return np.full(total_steps, lr, np.float32)
    fraction = np.arange(total_steps, dtype=np.float32) / np.float32(total_steps)
    return (np.float32(lr) * (np.float32(0.5) * (np.float32(1.0) + np.cos(np.float32(math.pi) * fraction))
                              )).astype(np.float32)


@functools.cache
def _sgd_program(mixed: bool, has_validation: bool) -> Any:
    """The whole training run, every epoch and every step, as one TensorFlow function.

    Traced once per process for each precision and with or without validation
    images, whatever the shapes: a grid's many small fits pay no graph building,
    and the loop never returns to Python between steps.  Every op in it has a
    deterministic GPU kernel under ``enable_op_determinism`` (the cross-entropy's
    gradient is written as softmax minus one-hot, not taken from the fused
    sparse op, whose GPU kernel refuses to run deterministically).
    """
    import tensorflow as tf

    f32, i32 = tf.float32, tf.int32
    images = tf.bfloat16 if mixed else f32
    spec = tf.TensorSpec

    @tf.function(autograph=False, input_signature=[
        spec([None, None, None], images), spec([None, None], i32),        # X (K, n, D), y (K, n)
        spec([None, None, None], f32), spec([None, None], i32),           # validation X (K, nv, D), y
        spec([None, None, None], i32), spec([None], f32),                 # shuffles (E, K, n), rates
        spec([None, None, None], f32),                                    # initial kernel (K, D, L*C)
        spec([None, None, 1], f32), spec([None, 1, None], f32),           # penalty rows and columns
        spec([], f32), spec([], i32), spec([], i32), spec([], i32), spec([], i32), spec([], i32),
    ])
    def run(X, y, Xv, yv, perms, rates, init, penalty_rows, penalty_cols, momentum, bs, n_big, steps, L, patience):
        K, LC = tf.shape(init)[0], tf.shape(init)[2]
        C = LC // L
        n = tf.shape(X)[1]
        epochs = tf.shape(perms)[0]
        penalty = penalty_rows * penalty_cols                              # (K, D, L*C)

        def logits_of(x, W, b):
            """(K, B, D) -> (K, B, L, C): every head's logits, a problem's L heads on the same images."""
            if mixed and x.dtype == tf.bfloat16:
                z = tf.cast(tf.matmul(x, tf.cast(W, tf.bfloat16)), f32) + b
            else:
                z = tf.matmul(x, W) + b
            return tf.reshape(z, tf.concat([tf.shape(z)[:2], [L, C]], axis=0))

        def scores(yb, z):
            """Per-image cross-entropy, hits and the one-hot labels, each (K, B, L[, C])."""
            yl = tf.repeat(yb[:, :, None], L, axis=2)
            onehot = tf.one_hot(yl, C, dtype=f32)
            logp = tf.nn.log_softmax(z)
            hit = tf.cast(tf.equal(tf.argmax(z, 3, output_type=i32), yl), f32)
            return -tf.reduce_sum(onehot * logp, axis=3), hit, onehot, logp

        def step(state, idx):
            W, b, vW, vb, it, tot_loss, tot_hit = state
            xb = tf.gather(X, idx, batch_dims=1)                           # (K, B, D)
            yb = tf.gather(y, idx, batch_dims=1)                           # (K, B)
            z = logits_of(xb, W, b)                                        # (K, B, L, C)
            per_image, hit, onehot, logp = scores(yb, z)
            batch_f = tf.cast(tf.shape(idx)[1], f32)
            # d(mean cross-entropy)/d logits = (softmax - one-hot) / B: each head's loss is its batch mean
            dz = tf.reshape((tf.exp(logp) - onehot) / batch_f, [K, -1, LC])
            if mixed:
                g = tf.cast(tf.matmul(xb, tf.cast(dz, tf.bfloat16), transpose_a=True), f32)
            else:
                g = tf.matmul(xb, dz, transpose_a=True)                    # (K, D, L*C)
            rate = rates[it]
            # Keras' SGD with momentum: velocity = momentum * velocity - rate * grad; weights += velocity
            vW = momentum * vW - rate * (g + penalty * W)
            vb = momentum * vb - rate * tf.reduce_sum(dz, axis=1, keepdims=True)
            return (W + vW, b + vb, vW, vb, it + 1, tot_loss + tf.reduce_sum(per_image, axis=1),
                    tot_hit + tf.reduce_sum(hit, axis=1))

        def epoch_body(e, W, b, vW, vb, it, best, history, active):
            perm = perms[e]
            zeros = tf.zeros([K, L])
            state = (W, b, vW, vb, it, zeros, zeros)
            state = tf.while_loop(lambda i, s: i < n_big,
                                  lambda i, s: (i + 1, step(s, perm[:, i * (bs + 1):(i + 1) * (bs + 1)])),
                                  (0, state))[1]
            start = n_big * (bs + 1)
            state = tf.while_loop(lambda i, s: i < steps - n_big,
                                  lambda i, s: (i + 1, step(s, perm[:, start + i * bs:start + (i + 1) * bs])),
                                  (0, state))[1]
            W, b, vW, vb, it, tot_loss, tot_hit = state
            n_f = tf.cast(n, f32)
            if has_validation:
                v_loss, v_hit, _, _ = scores(yv, logits_of(Xv, W, b))
                val_loss, val_acc = tf.reduce_mean(v_loss, axis=1), tf.reduce_mean(v_hit, axis=1)
            else:
                val_loss = val_acc = tf.fill([K, L], float("nan"))
            history = history.write(e, tf.stack([tot_loss / n_f, tot_hit / n_f, val_loss, val_acc]))
            best_loss, best_epoch, stop_epoch, waited, W_best, b_best = best
            ran = tf.fill([K, L], e + 1)
            if has_validation:
                improved = active & (val_loss < best_loss)
                best_loss = tf.where(improved, val_loss, best_loss)
                best_epoch = tf.where(improved, ran, best_epoch)
                columns = tf.reshape(tf.repeat(improved[:, :, None], C, axis=2), [K, 1, LC])
                W_best = tf.where(columns, W, W_best)
                b_best = tf.where(columns, b, b_best)
                waited = tf.where(improved, 0, tf.where(active, waited + 1, waited))
                still = active & (improved | (waited < patience))   # a head stops after `patience` worse epochs
            else:
                still = active
            stop_epoch = tf.where(active, ran, stop_epoch)
            return (e + 1, W, b, vW, vb, it, (best_loss, best_epoch, stop_epoch, waited, W_best, b_best),
                    history, still)

        b0 = tf.zeros([K, 1, LC])
        ints = tf.zeros([K, L], i32)
        best = (tf.fill([K, L], float("inf")), ints, ints, ints, init, b0)
        history = tf.TensorArray(f32, size=epochs, element_shape=tf.TensorShape([4, None, None]))
        loop = (0, init, b0, tf.zeros_like(init), b0, 0, best, history, tf.fill([K, L], True))
        e, W, b, _, _, _, best, history, _ = tf.while_loop(
            lambda e, *rest: (e < epochs) & tf.reduce_any(rest[-1]), epoch_body, loop)
        _, best_epoch, stop_epoch, _, W_best, b_best = best
        # (epochs run, 4, K, L): the rows past the last epoch run are never read
        return W, b, W_best, b_best, history.stack()[:e], best_epoch, stop_epoch

    return run


def _variance_weights(Xs: np.ndarray) -> np.ndarray:
    """``(K, D)``: each feature's variance over a problem's training rows, over the mean variance.

    A feature constant on the training images gets weight 1 (not 0): its inputs
    give no gradient, so only the penalty keeps its weights from staying at their
    random start, and a test image may well have a different value there.
    """
    v = np.stack([x.var(axis=0, dtype=np.float64) for x in Xs])       # (K, D), one problem at a time
    mean = v.mean(axis=1, keepdims=True)
    mean[mean <= 0] = 1.0
    w = v / mean
    w[v <= 1e-12 * mean] = 1.0
    return w.astype(np.float32)


# --------------------------------------------------------------------------- evaluation


def predict_proba(head: TrainedHead, X: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, C)`` of ``head`` on raw features ``X``."""
    X = np.asarray(X, dtype=np.float32)
    z = ((X - head.mean) / head.std).astype(np.float64) @ head.W.astype(np.float64) + head.b
    return _softmax(z).astype(np.float32)
