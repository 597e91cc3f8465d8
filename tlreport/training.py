"""The new softmax head: splitting, training, evaluation and export.

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

import hashlib
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlreport.errors import UserError

TRAIN, VAL, TEST = 0, 1, 2
PART_NAMES = ("train", "val", "test")
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]
_EPS = 1e-7  # Keras' backend epsilon, used to clip probabilities in the loss

# --------------------------------------------------------------------------- split


def _rank_key(seed: int, sha: str) -> str:
    return hashlib.sha256(f"{seed}:{sha}".encode()).hexdigest()


def split_counts(n: int, fractions: Sequence[float]) -> list[int]:
    """Images per part for a class of ``n`` images (cumulative rounding).

    The cut after part ``k`` sits at ``round(n * (f_0 + ... + f_k))`` (halves
    round up), so the counts add up to ``n`` exactly, each is within one image
    of ``n * f_k``, and every cut moves by at most one when ``n`` grows by one.

    >>> split_counts(10, (0.6, 0.2, 0.2))
    [6, 2, 2]
    >>> split_counts(31, (0.6, 0.2, 0.2))
    [19, 6, 6]
    """
    cuts = [0]
    acc = 0.0
    for f in fractions[:-1]:
        acc += f
        cuts.append(min(n, int(math.floor(n * acc + 0.5 + 1e-9))))
    cuts.append(n)
    return [b - a for a, b in zip(cuts[:-1], cuts[1:], strict=True)]


def _check_fractions(fractions: Sequence[float]) -> tuple[float, ...]:
    fr = tuple(float(f) for f in fractions)
    if len(fr) < 1 or any(f < 0 or not math.isfinite(f) for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise UserError(
            f"split fractions must be non-negative and add up to 1. Received: fractions={tuple(fractions)}"
        )
    return fr


def split_by_hash(
    shas: Sequence[str],
    labels: np.ndarray,
    fractions: Sequence[float] = (0.6, 0.2, 0.2),
    *,
    seed: int = 0,
) -> np.ndarray:
    """Assign every image to exactly one part: 0 train, 1 validation, 2 test.

    Method (stratified, seeded, stable):

    1. Within each class, images are ranked by ``sha256(f"{seed}:{image_sha}")``
       -- a pseudo-random order that depends only on the seed and the image's
       own content hash, never on file order or on the other images.
    2. The ranked list is cut into consecutive blocks whose sizes come from
       :func:`split_counts` (cumulative rounding): per class, the counts are
       exact (they add up to the class size and each is within one image of
       ``n * fraction``), unlike TF ``retrain.py``'s hash-percentage rule whose
       counts only match the fractions on average.

    Why cumulative rounding rather than largest-remainder quotas: both give
    counts within one image of the ideal, but the cumulative cuts are monotone
    in ``n`` (largest remainder is not -- the Alabama paradox), so adding one
    image to a class moves **at most two** existing images (one per cut) to a
    different part; images in other classes never move.

    Parameters
    ----------
    shas : content hashes of the images (hex strings), aligned with ``labels``.
    labels : integer (or any hashable) class label per image.
    fractions : fraction of each class per part; non-negative, summing to 1.
    seed : changes the ranking, hence the split.

    Returns
    -------
    ``np.ndarray`` of ``int8`` part ids, one per image.

    A part can be empty for a very small class (a class of 3 images gets
    2 train, 0 validation, 1 test with the default fractions).
    """
    fr = _check_fractions(fractions)
    labels = np.asarray(labels)
    if len(shas) != len(labels):
        raise ValueError(f"shas and labels differ in length: {len(shas)} != {len(labels)}")
    parts = np.full(len(labels), -1, dtype=np.int8)
    keys = np.array([_rank_key(seed, s) for s in shas], dtype=object)
    for cls in np.unique(labels) if len(labels) else []:
        idx = np.flatnonzero(labels == cls)
        # stable sort: identical files (same sha) keep their manifest order
        ranked = idx[np.argsort(keys[idx], kind="stable")]
        start = 0
        for part, count in enumerate(split_counts(len(ranked), fr)):
            parts[ranked[start : start + count]] = part
            start += count
    return parts


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
    patience: int | None = 20,
    seed: int = 0,
    standardize: bool = True,
    jit_compile: bool = False,
) -> TrainedHead:
    """Train ``Dense(num_classes, softmax)`` on features with SGD + momentum.

    Cross-entropy (Keras ``SparseCategoricalCrossentropy`` on the Dense logits,
    the same function as categorical cross-entropy after a softmax) plus
    ``l2 * sum(W**2)`` (Keras' ``L2`` regulariser), minimised by
    ``keras.optimizers.SGD(lr, momentum)`` over shuffled mini-batches
    (the last, smaller batch included, as ``model.fit`` does).

    ``schedule="cosine"`` decays the learning rate to 0 over ``epochs``;
    ``"constant"`` keeps it.  After each epoch the validation loss is checked;
    training stops after ``patience`` epochs without improvement (``None``
    disables it) and the best epoch's weights are returned.  ``loss`` and
    ``accuracy`` in the history are the means over the epoch's batches (as
    Keras reports them); all losses are the data term only, without the L2
    penalty, so they are comparable with :func:`evaluate`.

    Defaults (standardised features, lr 0.05, momentum 0.9, batch 128, cosine
    over 60 epochs, l2 1e-4, patience 20) were picked on Caltech-101-sized
    synthetic problems (``benchmarks/train_head.py``): standardising makes one
    learning rate fit every backbone's feature scale, batch 128 keeps the
    matrix products efficient, and the cosine decay converges in ~50 epochs
    where the seed's constant rate ran 200.

    Each epoch runs as one ``tf.function``.  ``jit_compile=True`` compiles it
    with XLA; on a 2-core CPU that was slower at every size measured, compile
    time aside (Caltech-101's 5,482 x 1280 training set: 6.5 s vs 4.9 s for
    40 epochs), so it is off by default.

    The same inputs and ``seed`` give byte-identical ``W``, ``b`` and history.
    This is :func:`train_softmax_many` with one problem.
    """
    return train_softmax_many(
        [(Xtr, ytr, Xva, yva)], seeds=[seed], num_classes=num_classes, lr=lr, momentum=momentum,
        schedule=schedule, batch_size=batch_size, epochs=epochs, l2=l2, patience=patience,
        standardize=standardize, jit_compile=jit_compile,
    )[0]


def train_softmax_many(
    problems: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
    *,
    seeds: Sequence[int],
    num_classes: int,
    lr: float = 0.05,
    momentum: float = 0.9,
    schedule: str = "cosine",
    batch_size: int = 128,
    epochs: int = 60,
    l2: float = 1e-4,
    patience: int | None = 20,
    standardize: bool = True,
    jit_compile: bool = False,
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
    (the folds of one protocol setting do).
    """
    import keras
    import tensorflow as tf

    if schedule not in ("cosine", "constant"):
        raise UserError(f"schedule must be 'cosine' or 'constant'. Received: schedule={schedule!r}")
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
    K = len(data)

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

    bs = min(int(batch_size), n)
    full_steps, rest = divmod(n, bs)
    steps = full_steps + (rest > 0)

    init = np.stack([keras.initializers.GlorotUniform(seed=int(s))((d, num_classes), dtype="float32")
                     for s in seeds])
    kernel = keras.Variable(init, dtype="float32", name="kernel")
    bias = keras.Variable(np.zeros((K, 1, num_classes), np.float32), dtype="float32", name="bias")
    params = [kernel, bias]
    if schedule == "cosine":
        rate: Any = keras.optimizers.schedules.CosineDecay(lr, decay_steps=steps * epochs)
    else:
        rate = lr
    opt = keras.optimizers.SGD(learning_rate=rate, momentum=momentum)
    opt.build(params)
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    X_t = tf.constant(Xs)
    y_t = tf.constant(np.stack([p[1] for p in data]))
    Xv_t = tf.constant(Xvs)
    yv_t = tf.constant(np.stack([p[3] for p in data]).reshape(K, nv))
    l2_t = tf.constant(float(l2), tf.float32)
    has_val = nv > 0

    def logits_of(x: Any) -> Any:
        return tf.matmul(x, kernel.value) + bias.value

    def step(idx: Any) -> tuple[Any, Any]:
        xb = tf.gather(X_t, idx, batch_dims=1)          # (K, B, D)
        yb = tf.gather(y_t, idx, batch_dims=1)          # (K, B)
        with tf.GradientTape() as tape:
            logits = logits_of(xb)
            data_loss = tf.reduce_mean(loss_fn(yb, logits), axis=1)          # (K,): each head's mean
            loss = tf.reduce_sum(data_loss) + l2_t * tf.reduce_sum(tf.square(kernel.value))
        grads = tape.gradient(loss, [kernel.value, bias.value])
        opt.apply(grads, params)
        k = tf.cast(tf.shape(idx)[1], tf.float32)
        hit = tf.equal(tf.argmax(logits, 2, output_type=tf.int32), yb)
        return data_loss * k, tf.reduce_sum(tf.cast(hit, tf.float32), axis=1)

    @tf.function(jit_compile=jit_compile, reduce_retracing=True)
    def run_epoch(perm: Any) -> tuple[Any, Any, Any, Any]:
        tot_loss = tf.zeros([K])
        tot_correct = tf.zeros([K])
        for i in tf.range(full_steps):
            a, c = step(tf.slice(perm, [0, i * bs], [K, bs]))  # static batch shape: XLA-friendly
            tot_loss += a
            tot_correct += c
        if rest:
            a, c = step(perm[:, full_steps * bs :])
            tot_loss += a
            tot_correct += c
        if has_val:
            vl = logits_of(Xv_t)
            val_loss = tf.reduce_mean(loss_fn(yv_t, vl), axis=1)
            val_acc = tf.reduce_mean(tf.cast(tf.equal(tf.argmax(vl, 2, output_type=tf.int32), yv_t), tf.float32),
                                     axis=1)
        else:
            val_loss = tf.fill([K], float("nan"))
            val_acc = tf.fill([K], float("nan"))
        return tot_loss / n, tot_correct / n, val_loss, val_acc

    rngs = [np.random.default_rng(int(s)) for s in seeds]
    rows: list[list[tuple[int, float, float, float, float]]] = [[] for _ in range(K)]
    best = [(math.inf, 0, init[k].copy(), np.zeros(num_classes, np.float32)) for k in range(K)]
    waited = [0] * K
    active = [True] * K
    for epoch in range(1, epochs + 1):
        perm = tf.constant(np.stack([r.permutation(n).astype(np.int32) for r in rngs]))
        out = [t.numpy() for t in run_epoch(perm)]
        W = b = None
        for k in range(K):
            if not active[k]:
                continue  # stopped early: it trains on with the others, but its result is kept
            loss, acc, vloss, vacc = (float(o[k]) for o in out)
            rows[k].append((epoch, loss, acc, vloss, vacc))
            if not math.isfinite(loss):
                raise UserError(f"training diverged at epoch {epoch} (loss {loss}); lower the learning rate (lr={lr})")
            monitored = vloss if has_val else loss
            if monitored < best[k][0]:
                if W is None:
                    W, b = kernel.numpy(), bias.numpy()
                best[k] = (monitored, epoch, W[k].copy(), b[k, 0].copy())
                waited[k] = 0
            else:
                waited[k] += 1
                if patience is not None and waited[k] >= patience:
                    active[k] = False
        if not any(active):
            break
    seconds = (time.perf_counter() - t0) / K
    heads = []
    for k in range(K):
        history = pd.DataFrame(rows[k], columns=HISTORY_COLUMNS)
        history["epoch"] = history["epoch"].astype(int)
        hp = dict(
            lr=lr, momentum=momentum, schedule=schedule, batch_size=bs, epochs=epochs, l2=l2,
            patience=patience, seed=int(seeds[k]), standardize=standardize, jit_compile=jit_compile,
        )
        heads.append(TrainedHead(W=best[k][2], b=best[k][3], mean=stats[k][0], std=stats[k][1], history=history,
                                 best_epoch=int(best[k][1]), seconds=seconds, params=hp))
    return heads


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


def evaluate(probs: np.ndarray, y: np.ndarray, num_classes: int) -> dict[str, float]:
    """Accuracy, mean per-class accuracy, cross-entropy, top-5 accuracy and ``n``.

    Mean per-class accuracy averages the recall of the classes present in ``y``
    (the Caltech protocol's number).  The loss clips probabilities at 1e-7 as
    Keras does.  Top-5 becomes top-``num_classes`` when there are fewer classes.
    """
    probs = np.asarray(probs, dtype=np.float64)
    y = np.asarray(y).astype(np.int64)
    if probs.ndim != 2 or probs.shape != (len(y), num_classes):
        raise ValueError(f"probs must be ({len(y)}, {num_classes}); got {probs.shape}")
    n = len(y)
    if n == 0:
        nan = float("nan")
        return dict(accuracy=nan, mean_per_class_accuracy=nan, loss=nan, top5_accuracy=nan, n=0)
    pred = probs.argmax(axis=1)
    hit = pred == y
    present = np.unique(y)
    per_class = np.array([hit[y == c].mean() for c in present])
    p_true = np.clip(probs[np.arange(n), y], _EPS, 1.0 - _EPS)
    k = min(5, num_classes)
    topk = np.argpartition(-probs, k - 1, axis=1)[:, :k] if k < num_classes else np.tile(np.arange(num_classes), (n, 1))
    top5 = (topk == y[:, None]).any(axis=1)
    return dict(
        accuracy=float(hit.mean()),
        mean_per_class_accuracy=float(per_class.mean()),
        loss=float(-np.log(p_true).mean()),
        top5_accuracy=float(top5.mean()),
        n=int(n),
    )


# --------------------------------------------------------------------------- export

_HEAD_LAYER_NAME = "new_softmax"
_LABELED_DENSE: Any = None


def _labeled_dense_class() -> Any:
    """The registered ``LabeledDense`` layer class (created on first use, TF imported lazily)."""
    global _LABELED_DENSE
    if _LABELED_DENSE is not None:
        return _LABELED_DENSE
    import keras

    @keras.saving.register_keras_serializable(package="tlreport", name="LabeledDense")
    class LabeledDense(keras.layers.Dense):
        """A ``Dense`` softmax classifier that carries its class names in its config."""

        def __init__(self, units: int, class_names: Sequence[str] = (), backbone: str = "", **kwargs: Any):
            kwargs.setdefault("activation", "softmax")
            super().__init__(units, **kwargs)
            self.class_names = [str(c) for c in class_names]
            self.backbone = str(backbone)
            if self.class_names and len(self.class_names) != units:
                raise ValueError(f"{len(self.class_names)} class names for {units} units")

        def get_config(self) -> dict[str, Any]:
            return {**super().get_config(), "class_names": list(self.class_names), "backbone": self.backbone}

    _LABELED_DENSE = LabeledDense
    return LabeledDense


def _features_output(backbone: Any) -> Any:
    struct = getattr(backbone, "output", None)
    if isinstance(struct, dict) and "features" in struct:   # the registry's {"features", "probs"} models
        return struct["features"]
    outs = list(backbone.outputs)
    if len(outs) == 1:
        return outs[0]
    names = list(getattr(backbone, "output_names", []) or [])
    for i, t in enumerate(outs):
        label = names[i] if i < len(names) else getattr(t, "name", "")
        if label == "features" or "features" in str(label):
            return t
    raise ValueError(f"backbone has {len(outs)} outputs and none is named 'features': {names}")


def export_classifier(
    backbone_model: Any, head: TrainedHead, class_names: Sequence[str], path: str | os.PathLike, *,
    backbone: str = "",
) -> Path:
    """Write ONE ``.keras`` file: the backbone followed by the new softmax layer.

    The head is a ``Dense(num_classes, softmax)`` subclass, ``LabeledDense``
    (registered as ``tlreport>LabeledDense``), whose config also stores the
    class names, so :func:`load_classifier` needs no side file.  The
    standardisation is folded into its weights.  The file is written
    atomically.  The backbone must output (N, D) features (one output, or one
    named ``features``).
    """
    import keras

    path = Path(path)
    if path.suffix != ".keras":
        raise UserError(f"the classifier file must end in .keras. Received: path={str(path)!r}")
    if len(class_names) != head.num_classes:
        raise ValueError(f"{len(class_names)} class names for a head with {head.num_classes} classes")
    feats = _features_output(backbone_model)
    if len(feats.shape) != 2 or feats.shape[-1] != head.W.shape[0]:
        raise ValueError(f"backbone features have shape {feats.shape}; the head expects (None, {head.W.shape[0]})")
    layer = _labeled_dense_class()(head.num_classes, class_names=class_names, backbone=backbone,
                                   name=_HEAD_LAYER_NAME)
    probs = layer(feats)
    model = keras.Model(backbone_model.inputs, probs, name="tlreport_classifier")
    layer.set_weights(list(head.folded()))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".keras", dir=path.parent)
    os.close(fd)
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_classifier(path: str | os.PathLike, *, custom_objects: dict[str, Any] | None = None) -> tuple[Any, list[str]]:
    """Load a file written by :func:`export_classifier`: ``(model, class_names)``."""
    import keras

    path = Path(path)
    if not path.is_file():
        raise UserError(f"no classifier file at {path}")
    objs = {"LabeledDense": _labeled_dense_class(), **(custom_objects or {})}
    model = keras.saving.load_model(path, custom_objects=objs, compile=False)
    for layer in model.layers:
        names = getattr(layer, "class_names", None)
        if layer.name == _HEAD_LAYER_NAME and names:
            return model, list(names)
    raise UserError(f"{path} is not a tlreport classifier (no '{_HEAD_LAYER_NAME}' layer with class names)")


def classify_with(
    model: Any, class_names: Sequence[str], images: np.ndarray, top_k: int = 5
) -> list[list[tuple[str, float]]]:
    """Top-``k`` ``(class name, probability)`` per image, most likely first.

    ``images`` is a uint8 batch ``(N, H, W, 3)`` already at the model's input
    size; it is handed to the model as float32 in [0, 255] (the backbones
    normalise inside the model).
    """
    images = np.asarray(images)
    if images.ndim == 3:
        images = images[None]
    want = tuple(model.inputs[0].shape[1:3])
    if None not in want and tuple(images.shape[1:3]) != want:
        raise UserError(f"images are {images.shape[1]}x{images.shape[2]}; the model expects {want[0]}x{want[1]}")
    probs = np.asarray(model.predict(images.astype(np.float32), verbose=0), dtype=np.float64)
    k = max(1, min(int(top_k), len(class_names)))
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return [[(str(class_names[j]), float(p[j])) for j in row] for p, row in zip(probs, order, strict=True)]


def classify_files(path: str | os.PathLike, images: Sequence[str | os.PathLike], *, top_k: int = 5
                   ) -> list[tuple[Path, list[tuple[str, float]]]]:
    """Classify image files with an exported classifier, preprocessed as its backbone expects.

    The backbone's name is stored in the file's head layer; its registered spec
    gives the resize/crop, so a photo of any size can be passed.
    """
    from tlreport.backbones import get_spec
    from tlreport.datasets import BadImage, load_prepared

    model, names = load_classifier(path)
    head = next(layer for layer in model.layers if layer.name == _HEAD_LAYER_NAME)
    if not getattr(head, "backbone", ""):
        raise UserError(f"{path} does not record its backbone; export it again with tlreport build")
    spec = get_spec(head.backbone)
    batch = []
    for p in images:
        p = Path(p)
        if not p.is_file():
            raise UserError(f"image not found: {p}")
        try:
            batch.append(load_prepared(p, spec))
        except BadImage as e:
            raise UserError(f"cannot decode image {p}: {e}") from None
    tops = classify_with(model, names, np.stack(batch), top_k=top_k)
    return [(Path(p), t) for p, t in zip(images, tops, strict=True)]
