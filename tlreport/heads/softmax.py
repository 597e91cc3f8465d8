"""The new softmax layer's trainer: SGD with momentum on cached features, many heads side by side.

This is the post's "Transfer Learning" step.  Bottleneck features of a frozen
backbone arrive as ``float32`` matrices ``(N, D)``; a single
``Dense(num_classes, softmax)`` layer is trained on them with cross-entropy and
Keras' SGD with momentum, exactly the head of the seed notebook.  What differs
from the seed is only *how fast* and *how reproducibly* it is trained:

* the whole training set lives in memory as one tensor and each epoch is ONE
  ``tf.function`` that loops over mini-batches of a seeded
  permutation (the reference ``model.fit`` pays Python overhead per batch);
* one seed, set in one place (:func:`seed_everything`), makes the weights and
  the history byte-identical between runs;
* features are standardised with the training set's mean/std (folded back into
  the Dense weights for export, so the exported head reads raw features).

TensorFlow and Keras are imported inside the functions that need them, so
importing this module is cheap.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tlreport.errors import UserError

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
    jit_compile: bool = False,
    precision: str = "float32",
) -> TrainedHead:
    """Train ``Dense(num_classes, softmax)`` on features with SGD + momentum.

    Cross-entropy (Keras ``SparseCategoricalCrossentropy`` on the Dense logits,
    the same function as categorical cross-entropy after a softmax) plus
    ``l2 * sum(W**2)`` (Keras' ``L2`` regulariser; see ``l2_weighting`` below), minimised by
    the steps of ``keras.optimizers.SGD(lr, momentum)`` (TensorFlow's fused Keras-momentum
    update, tested step for step against Keras) over shuffled mini-batches.  Each
    epoch visits every image once in ``ceil(n / batch_size)`` batches whose
    sizes differ by at most one (``model.fit`` would end on a smaller batch;
    a runt of a few images, at full step size and momentum, hurt small
    training sets).

    ``schedule="cosine"`` decays the learning rate to 0 over ``epochs``;
    ``"constant"`` keeps it.  After each epoch the validation loss is checked;
    training stops after ``patience`` epochs without improvement (``None``
    disables it) and the best epoch's weights are returned.  Without
    validation images nothing is monitored: every epoch runs and the last
    epoch's weights are returned (a fixed budget).  ``loss`` and
    ``accuracy`` in the history are the means over the epoch's batches (as
    Keras reports them); all losses are the data term only, without the L2
    penalty, so they are comparable with :func:`evaluate`.

    Defaults (standardised features, lr 0.05, momentum 0.9, batch 128, cosine
    over 60 epochs, l2 1e-4, patience 20) were picked on Caltech-101-sized
    synthetic problems (``benchmarks/train_head.py``): standardising makes one
    learning rate fit every backbone's feature scale, batch 128 keeps the
    matrix products efficient, and the cosine decay converges in ~50 epochs
    where the seed's constant rate ran 200.

    ``l2_weighting="variance"`` weights each input feature's row of ``W`` in
    the penalty by that feature's variance over the training images (divided
    by the mean variance, so ``l2`` keeps its scale): ``l2 * sum(v_d / mean(v)
    * W_d**2)``.  That is the plain L2 penalty of a head on standardised
    features, written for raw ones: the prior of ``logreg``, while SGD keeps
    the raw features' geometry (see :class:`~tlreport.heads.softmax_sgd.SoftmaxSGDHead`).  With
    ``standardize=True`` every variance is 1 and the two weightings agree.

    Each epoch runs as one ``tf.function``.  ``jit_compile=True`` compiles it
    with XLA; on a 2-core CPU that was slower at every size measured, compile
    time aside (Caltech-101's 5,482 x 1280 training set: 6.5 s vs 4.9 s for
    40 epochs), so it is off by default.

    ``precision="bfloat16"`` runs the step's two matrix products (logits and the
    weight gradient) on bfloat16 copies of the features and the weights,
    accumulating in float32 (mixed precision); the weights, their momentum and
    every update stay float32.  With AMX the products ran 5x as fast (the whole
    grid 1.52x); without native bf16 TensorFlow emulates them, and AVX-512 BF16
    alone was not measured, so :func:`tlreport.heads.softmax_sgd.auto_precision`
    picks bf16 on AMX only.

    The same inputs and ``seed`` give byte-identical ``W``, ``b`` and history.
    This is :func:`train_softmax_many` with one problem.
    """
    return train_softmax_many(
        [(Xtr, ytr, Xva, yva)], seeds=[seed], num_classes=num_classes, lr=lr, momentum=momentum,
        schedule=schedule, batch_size=batch_size, epochs=epochs, l2=l2, l2_weighting=l2_weighting,
        patience=patience, standardize=standardize, jit_compile=jit_compile, precision=precision,
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
    what cross-validating the penalty wants (a paired comparison), and it is
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
    jit_compile: bool = False,
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
    seed_everything(int(seeds[0]))
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
    kernel = tf.Variable(init, name="kernel")
    bias = tf.Variable(np.zeros((K, 1, L * C), np.float32), name="bias")
    velocity = [tf.Variable(tf.zeros_like(v)) for v in (kernel, bias)]   # Keras SGD's momentums, zero at first
    iterations = tf.Variable(0, dtype=tf.int64)
    if schedule == "cosine":
        rate: Any = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs)
    else:
        rate = lambda _: tf.constant(lr, tf.float32)  # noqa: E731
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    # products in bfloat16 (mixed precision): the images and a bf16 copy of the kernel feed the matrix
    # products, which accumulate in float32; the weights, their momentum and every update stay float32
    mixed = precision == "bfloat16"
    X_t = tf.constant(Xs.astype(tf.bfloat16.as_numpy_dtype) if mixed else Xs)
    y_t = tf.constant(np.stack([p[1] for p in data]))
    Xv_t = tf.constant(Xvs)
    yv_t = tf.constant(np.stack([p[3] for p in data]).reshape(K, nv))
    kernel_bf16 = tf.Variable(tf.cast(init, tf.bfloat16), name="kernel_bf16") if mixed else None
    # the penalty's gradient, d/dW of l2 * sum(w_d * W**2), is 2 * l2 * w_d * W: written out rather than
    # taped (the loss reported is the data term alone, so the penalty's value is never needed), as the
    # outer product of a per-feature weight (K, D, 1) and a per-column 2 * l2 (K, 1, L*C)
    penalty_cols = tf.constant(2.0 * np.repeat(l2_kl.astype(np.float32), C, axis=1)[:, None, :])  # (K, 1, L*C)
    penalty_rows = tf.constant(_variance_weights(Xs)[:, :, None] if l2_weighting == "variance"
                               else np.ones((K, d, 1), np.float32))                              # (K, D, 1)
    momentum_t = tf.constant(momentum, tf.float32)
    has_val = nv > 0

    def logits_of(x: Any) -> Any:
        """(K, B, D) -> (K, B, L, C): every head's logits, a problem's L heads on the same images."""
        if mixed and x.dtype == tf.bfloat16:
            z = tf.cast(tf.matmul(x, kernel_bf16), tf.float32) + bias
        else:
            z = tf.matmul(x, kernel) + bias
        return tf.reshape(z, tf.concat([tf.shape(z)[:2], [L, C]], axis=0))

    def scores(y: Any, logits: Any) -> tuple[Any, Any]:
        """Per-image cross-entropy and hits, (K, B, L) each."""
        y = tf.repeat(y[:, :, None], L, axis=2)
        hit = tf.cast(tf.equal(tf.argmax(logits, 3, output_type=tf.int32), y), tf.float32)
        return loss_fn(y, logits), hit

    @tf.function(jit_compile=True)
    def update_kernel(g_data: Any, rate_t: Any) -> None:
        """Keras' SGD step on the kernel (velocity = momentum * velocity - rate * grad; kernel += velocity),
        its gradient the data term's plus the penalty's, in one fused pass (XLA) that also refreshes the
        kernel's bf16 copy in mixed precision.  The (K, D, L*C) kernel is the largest tensor of a step and
        this pass is bound by memory: about half of a bf16 step of the grid's cross-validation on the Xeon
        (docs/performance.md, *bf16 in the experiment grid*).  In float32 the grid took as long as with separate ops."""
        grad = tf.cast(g_data, tf.float32) + (penalty_rows * penalty_cols) * kernel
        velocity[0].assign(momentum_t * velocity[0] - rate_t * grad)
        kernel.assign_add(velocity[0])
        if mixed:
            kernel_bf16.assign(tf.cast(kernel, tf.bfloat16))

    def step(idx: Any) -> tuple[Any, Any]:
        xb = tf.gather(X_t, idx, batch_dims=1)          # (K, B, D)
        yb = tf.gather(y_t, idx, batch_dims=1)          # (K, B)
        logits = logits_of(xb)                          # (K, B, L, C)
        shape = tf.shape(logits)
        yl = tf.repeat(yb[:, :, None], L, axis=2)
        # the cross-entropy and its gradient d loss / d logits (softmax - one-hot) from one fused op: what
        # Keras' sparse cross-entropy computes and its tape differentiates, without the tape
        per_image, dlogits = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
            features=tf.reshape(logits, [-1, C]), labels=tf.reshape(yl, [-1]))
        per_image = tf.reshape(per_image, shape[:3])                                 # (K, B, L)
        hit = tf.cast(tf.equal(tf.argmax(logits, 3, output_type=tf.int32), yl), tf.float32)
        batch_f = tf.cast(shape[1], tf.float32)
        dz = tf.reshape(dlogits, [shape[0], shape[1], L * C]) / batch_f   # each head's loss is its batch mean
        if mixed:
            g_kernel = tf.matmul(xb, tf.cast(dz, tf.bfloat16), transpose_a=True)    # (K, D, L*C)
        else:
            g_kernel = tf.matmul(xb, dz, transpose_a=True)
        g_bias = tf.reduce_sum(dz, axis=1, keepdims=True)                          # (K, 1, L*C)
        rate_t = tf.cast(rate(iterations), tf.float32)
        update_kernel(g_kernel, rate_t)
        tf.raw_ops.ResourceApplyKerasMomentum(var=bias.handle, accum=velocity[1].handle, lr=rate_t, grad=g_bias,
                                              momentum=momentum_t, use_nesterov=False)
        iterations.assign_add(1)
        return tf.reduce_mean(per_image, axis=1) * batch_f, tf.reduce_sum(hit, axis=1)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def run_epoch(perm: Any) -> tuple[Any, Any, Any, Any]:
        tot_loss = tf.zeros([K, L])
        tot_correct = tf.zeros([K, L])
        for i in tf.range(n_big):
            a, c = step(tf.slice(perm, [0, i * (bs + 1)], [K, bs + 1]))  # static batch shapes: XLA-friendly
            tot_loss += a
            tot_correct += c
        for i in tf.range(steps - n_big):
            a, c = step(tf.slice(perm, [0, n_big * (bs + 1) + i * bs], [K, bs]))
            tot_loss += a
            tot_correct += c
        if has_val:
            v_loss, v_hit = scores(yv_t, logits_of(Xv_t))
            val_loss, val_acc = tf.reduce_mean(v_loss, axis=1), tf.reduce_mean(v_hit, axis=1)
        else:
            val_loss = tf.fill([K, L], float("nan"))
            val_acc = tf.fill([K, L], float("nan"))
        return tot_loss / n, tot_correct / n, val_loss, val_acc

    rngs = [np.random.default_rng(int(s)) for s in seeds]
    heads_kl = [(k, j) for k in range(K) for j in range(L)]        # head h is (k, j) = divmod(h, L)
    rows: list[list[tuple[int, float, float, float, float]]] = [[] for _ in heads_kl]
    best = [(math.inf, 0, init[k][:, :C].copy(), np.zeros(C, np.float32)) for k, _ in heads_kl]
    waited = [0] * len(heads_kl)
    active = [True] * len(heads_kl)
    for epoch in range(1, epochs + 1):
        perm = tf.constant(np.stack([r.permutation(n).astype(np.int32) for r in rngs]))
        out = [t.numpy() for t in run_epoch(perm)]
        W = b = None
        for h, (k, j) in enumerate(heads_kl):
            if not active[h]:
                continue  # stopped early: it trains on with the others, but its result is kept
            loss, acc, vloss, vacc = (float(o[k, j]) for o in out)
            rows[h].append((epoch, loss, acc, vloss, vacc))
            if not math.isfinite(loss):
                raise UserError(f"training diverged at epoch {epoch} (loss {loss}); lower the learning rate (lr={lr})")
            if not has_val:
                continue  # nothing held out to monitor: the last epoch's weights are kept, below
            if vloss < best[h][0]:
                if W is None:
                    W, b = kernel.numpy(), bias.numpy()
                cols = slice(j * C, (j + 1) * C)
                best[h] = (vloss, epoch, W[k][:, cols].copy(), b[k, 0, cols].copy())
                waited[h] = 0
            else:
                waited[h] += 1
                if patience is not None and waited[h] >= patience:
                    active[h] = False
        if not any(active):
            break
    if not has_val:
        # a fixed budget (the grid's heads): the weights the whole schedule ends on, as the head describes
        # itself.  Keeping the epoch of the lowest training loss instead picked epochs 92-97 of 100 on small
        # problems in bfloat16
        W, b = kernel.numpy(), bias.numpy()
        for h, (k, j) in enumerate(heads_kl):
            cols = slice(j * C, (j + 1) * C)
            best[h] = (rows[h][-1][1], rows[h][-1][0], W[k][:, cols].copy(), b[k, 0, cols].copy())
    seconds = (time.perf_counter() - t0) / len(heads_kl)
    import pandas as pd  # not at import time: the config schema reads the head registry

    heads: list[list[TrainedHead]] = [[] for _ in range(K)]
    for h, (k, j) in enumerate(heads_kl):
        history = pd.DataFrame(rows[h], columns=HISTORY_COLUMNS)
        history["epoch"] = history["epoch"].astype(int)
        hp = dict(
            lr=lr, momentum=momentum, schedule=schedule, batch_size=batch, epochs=epochs, l2=float(l2_kl[k, j]),
            l2_weighting=l2_weighting,
            patience=patience, seed=int(seeds[k]), standardize=standardize, jit_compile=jit_compile,
            precision=precision,
        )
        heads[k].append(TrainedHead(W=best[h][2], b=best[h][3], mean=stats[k][0], std=stats[k][1],
                                    history=history, best_epoch=int(best[h][1]), seconds=seconds, params=hp))
    return heads


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


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def predict_proba(head: TrainedHead, X: np.ndarray) -> np.ndarray:
    """Class probabilities ``(N, C)`` of ``head`` on raw features ``X``."""
    X = np.asarray(X, dtype=np.float32)
    z = ((X - head.mean) / head.std).astype(np.float64) @ head.W.astype(np.float64) + head.b
    return _softmax(z).astype(np.float32)
