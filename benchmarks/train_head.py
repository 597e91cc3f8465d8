"""Benchmark: the seed's ``model.fit`` head versus tlreport's fast trainer.

Both train ``Dense(num_classes, softmax)`` with cross-entropy and
``SGD(momentum=0.9)`` on the same features.  The reference is the plain Keras
loop of the seed (200 epochs, batch 32, lr 0.01, no early stopping); the fast
trainer runs with its defaults.  Prints seconds, the ratio, and the accuracy of
both on a held-out part.

    python benchmarks/train_head.py                 # synthetic, Caltech-101 sized
    python benchmarks/train_head.py --features f.npz  # arrays X, y (and optionally split)

Synthetic data: 102 classes, 5,487 training, 1,829 validation and 1,829 test
rows of 1280 non-negative features built from class centres in a 96-d latent
space (ReLU of a random projection), overlapped enough that the head does not
reach 100 %.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TF's C++ log lines out of the table


def synthetic(
    n_train: int = 5487, n_other: int = 1829, classes: int = 102, dim: int = 1280, *, noise: float = 1.6, seed: int = 0
) -> tuple[np.ndarray, ...]:
    """Train/val/test features and labels that look like pooled ReLU features."""
    rng = np.random.default_rng(seed)
    latent = 96
    centres = rng.normal(size=(classes, latent))
    proj = rng.normal(size=(latent, dim)) / np.sqrt(latent)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, classes, n)
        z = centres[y] + noise * rng.normal(size=(n, latent))
        x = np.maximum(z @ proj + 0.3 * rng.normal(size=(n, dim)), 0.0)
        return x.astype(np.float32), y.astype(np.int32)

    return (*draw(n_train), *draw(n_other), *draw(n_other))


def load_npz(path: str, seed: int) -> tuple[np.ndarray, ...]:
    """``X``, ``y`` (and optional ``split`` 0/1/2) from an .npz; else a 60/20/20 split."""
    from tlreport.datasets.splits import split_by_hash

    d = np.load(path)
    X, y = d["X"].astype(np.float32), d["y"].astype(np.int32)
    if "split" in d:
        part = d["split"]
    else:
        part = split_by_hash([str(i) for i in range(len(y))], y, seed=seed)
    return tuple(a for p in (0, 1, 2) for a in (X[part == p], y[part == p]))


def keras_fit(Xtr, ytr, Xva, yva, classes: int, epochs: int, batch: int, seed: int):
    """The seed's head and loop: Dense softmax, SGD(0.01, momentum 0.9), model.fit."""
    import keras

    keras.utils.set_random_seed(seed)
    model = keras.Sequential([keras.Input((Xtr.shape[1],)), keras.layers.Dense(classes, activation="softmax")])
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    t0 = time.perf_counter()
    model.fit(Xtr, ytr, validation_data=(Xva, yva), epochs=epochs, batch_size=batch, verbose=0)
    return model, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--features", help=".npz with X, y (and optionally split)")
    ap.add_argument("--epochs", type=int, default=200, help="epochs of the model.fit reference")
    ap.add_argument("--batch", type=int, default=32, help="batch size of the model.fit reference")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=1.6, help="synthetic class overlap")
    ap.add_argument("--skip-fit", action="store_true", help="only time the fast trainer")
    args = ap.parse_args(argv)

    from tlreport.heads.metrics import evaluate
    from tlreport.heads.softmax import predict_proba, train_softmax

    if args.features:
        Xtr, ytr, Xva, yva, Xte, yte = load_npz(args.features, args.seed)
    else:
        Xtr, ytr, Xva, yva, Xte, yte = synthetic(noise=args.noise, seed=args.seed)
    classes = int(max(ytr.max(), yva.max(), yte.max())) + 1
    print(f"data: train {Xtr.shape}, val {len(yva)}, test {len(yte)}, {classes} classes")

    head = train_softmax(Xtr, ytr, Xva, yva, num_classes=classes, seed=args.seed)
    fast = evaluate(predict_proba(head, Xte), yte, classes)
    print(
        f"fast trainer: {head.seconds:6.1f} s  {len(head.history)} epochs (best {head.best_epoch})  "
        f"test acc {fast['accuracy']:.4f}  loss {fast['loss']:.4f}  params {head.params}"
    )
    if args.skip_fit:
        return
    model, secs = keras_fit(Xtr, ytr, Xva, yva, classes, args.epochs, args.batch, args.seed)
    ref = evaluate(np.asarray(model.predict(Xte, verbose=0)), yte, classes)
    print(
        f"model.fit   : {secs:6.1f} s  {args.epochs} epochs, batch {args.batch}  "
        f"test acc {ref['accuracy']:.4f}  loss {ref['loss']:.4f}"
    )
    print(f"speed-up (model.fit seconds / fast seconds): {secs / head.seconds:.1f}x")


if __name__ == "__main__":
    main()
