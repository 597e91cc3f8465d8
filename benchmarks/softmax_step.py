"""Where a step of the grid's side-by-side softmax training goes, and what sharing a batch would buy.

Run by hand::

    .venv/bin/python benchmarks/softmax_step.py            # the concatenated backbone, D = 3840
    .venv/bin/python benchmarks/softmax_step.py --dim 1280

``SoftmaxSGDHead`` cross-validates 3 penalties x 3 folds for each of 5 splits, so at 30 images per
class one run of :func:`tlreport.heads.softmax.train_softmax_many` trains K = 45 heads, each on its
own copy of the fold's images in its own order: every step is a batched ``(K, B, D) x (K, D, C)``
matrix product.  The 3 penalties of a fold read the same images, so with one shared order per fold
the step would be ``(K/3, B, D) x (K/3, D, 3C)``: the same arithmetic in wider products.  Printed,
in one run, as GFLOP/s and ratios to today's layout: the forward product, the weight gradient, and
one elementwise update pass over the ``(K, D, C)`` weights (memory-bound; a momentum step makes
several).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def _seconds(fn, reps: int) -> float:
    fn()                                                      # trace and warm up
    t0 = time.perf_counter()
    for _ in range(reps):
        out = fn()
    out.numpy()
    return (time.perf_counter() - t0) / reps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dim", type=int, default=3840, help="feature width D (3840: three Lites side by side)")
    ap.add_argument("--heads", type=int, default=45, help="K heads in one run (45: 5 splits x 3 folds x 3 l2)")
    ap.add_argument("--share", type=int, default=3, help="heads that could share a batch (the l2 candidates)")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--classes", type=int, default=102)
    ap.add_argument("--reps", type=int, default=20)
    a = ap.parse_args()

    import tensorflow as tf

    B, D, C, K, L = a.batch, a.dim, a.classes, a.heads, a.share
    flops = 2 * K * B * D * C
    print(f"K={K} heads, batch {B}, D={D}, C={C}; one product = {flops / 1e9:.2f} GFLOP")
    rates = {}
    for label, groups, width in [("own batch per head (today)", K, C), (f"{L} heads share a batch", K // L, L * C)]:
        x = tf.random.normal((groups, B, D))
        w = tf.random.normal((groups, D, width))
        g = tf.random.normal((groups, B, width))
        fwd = tf.function(lambda x=x, w=w: tf.matmul(x, w))
        grad = tf.function(lambda x=x, g=g: tf.matmul(x, g, transpose_a=True))
        rates[label] = (flops / _seconds(fwd, a.reps) / 1e9, flops / _seconds(grad, a.reps) / 1e9)
    w = tf.Variable(tf.random.normal((K, D, C)))
    v = tf.Variable(tf.zeros((K, D, C)))
    update = tf.function(lambda: v.assign(0.9 * v - 0.01 * w, read_value=True))
    update_ms = _seconds(update, a.reps) * 1e3
    base = rates["own batch per head (today)"]
    print(f"{'layout':32s} {'forward':>9s} {'x base':>7s} {'dW':>9s} {'x base':>7s}")
    for label, (f, gr) in rates.items():
        print(f"{label:32s} {f:7.1f} GF {f / base[0]:6.2f}x {gr:7.1f} GF {gr / base[1]:6.2f}x")
    matmul_ms = (flops / base[0] + flops / base[1]) / 1e9 * 1e3
    print(f"one momentum-style pass over the (K, D, C) weights: {update_ms:.0f} ms "
          f"(the two products today: {matmul_ms:.0f} ms)")


if __name__ == "__main__":
    main()
