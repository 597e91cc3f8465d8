"""Where a step of the grid's side-by-side softmax training goes, and what the shared layout buys.

Run by hand::

    .venv/bin/python benchmarks/softmax_step.py            # the concatenated backbone, D = 3840
    .venv/bin/python benchmarks/softmax_step.py --dim 1280

``SoftmaxSGDHead`` cross-validates 3 penalties x 3 folds for each of 5 splits: at 30 images per class
45 heads.  Trained apart, every step is a batched ``(K, B, D) x (K, D, C)`` product, each head on its
own copy of the fold's images in its own order; the 3 penalties of a fold read the same images, so
:func:`tlreport.heads.softmax.train_softmax_penalties` gives them one order and one kernel, and the
step is ``(K/3, B, D) x (K/3, D, 3C)``: the same arithmetic in wider products.  Printed, in one run:

1. GFLOP/s of the forward product and the weight gradient in both layouts, as ratios;
2. one elementwise pass over the ``(K, D, C)`` weights (memory-bound);
3. one whole step of the shared layout, as ratios to Keras' SGD on a taped penalty: TensorFlow's fused
   momentum op with the penalty's gradient written out (the trainer before), and the trainer now (the
   cross-entropy's gradient from one fused op, the momentum step one XLA pass) in float32 and with
   bfloat16 products.  Intel Xeon with AMX, 2 cores: at D = 3840 70.2, 59.5 and 39.1 ms against Keras'
   102.4 (1.46x, 1.72x, 2.62x); at D = 1280 23.8, 22.7 and 15.0 ms against 33.1.
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
    for label, groups, width in [("own batch per head (before)", K, C), (f"{L} heads share a batch (now)", K // L, L * C)]:
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
    base = rates["own batch per head (before)"]
    print(f"{'layout':32s} {'forward':>9s} {'x base':>7s} {'dW':>9s} {'x base':>7s}")
    for label, (f, gr) in rates.items():
        print(f"{label:32s} {f:7.1f} GF {f / base[0]:6.2f}x {gr:7.1f} GF {gr / base[1]:6.2f}x")
    matmul_ms = (flops / base[0] + flops / base[1]) / 1e9 * 1e3
    print(f"one momentum-style pass over the (K, D, C) weights: {update_ms:.0f} ms "
          f"(the two products, heads apart: {matmul_ms:.0f} ms)")
    _whole_steps(K // L, B, D, L * C, a.reps)


def _whole_steps(G: int, B: int, D: int, width: int, reps: int) -> None:
    """One whole training step of the shared layout, (G, B, D) x (G, D, width), done four ways: Keras'
    SGD with momentum on a taped ``l2 * sum(w * W**2)`` (the first trainer); TensorFlow's fused
    Keras-momentum op with the penalty's gradient written out (the trainer before); and the trainer now,
    the cross-entropy's gradient from one fused op (no tape) and the momentum step one XLA pass, with
    float32 and with bfloat16 products (``experiments.precision``)."""
    import keras
    import tensorflow as tf

    rng = tf.random.Generator.from_seed(0)
    x = rng.normal((G, B, D))
    y = rng.uniform((G, B), 0, width, dtype=tf.int32)
    l2w = tf.abs(rng.normal((G, D, width))) * 1e-3
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    kernel_k = keras.Variable(rng.normal((G, D, width)) * 0.01)
    opt = keras.optimizers.SGD(learning_rate=0.03, momentum=0.9)
    opt.build([kernel_k])

    @tf.function
    def keras_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.matmul(x, kernel_k.value)) + tf.reduce_sum(l2w * tf.square(kernel_k.value))
        opt.apply(tape.gradient(loss, [kernel_k.value]), [kernel_k])
        return loss

    kernel_f = tf.Variable(kernel_k.numpy())
    velocity = tf.Variable(tf.zeros_like(kernel_f))
    grad_w = 2.0 * l2w

    @tf.function
    def fused_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, tf.matmul(x, kernel_f))
        g = tape.gradient(loss, kernel_f) + grad_w * kernel_f
        tf.raw_ops.ResourceApplyKerasMomentum(var=kernel_f.handle, accum=velocity.handle, lr=tf.constant(0.03),
                                              grad=g, momentum=tf.constant(0.9), use_nesterov=False)
        return loss

    def trainer_step(precision: str):
        """The trainer's step (tlreport/heads/softmax.py, ``_train_side_by_side``) on these shapes."""
        mixed = precision == "bfloat16"
        xs = tf.cast(x, tf.bfloat16) if mixed else x
        kernel = tf.Variable(kernel_k.numpy())
        kernel_bf16 = tf.Variable(tf.cast(kernel, tf.bfloat16)) if mixed else None
        vel = tf.Variable(tf.zeros_like(kernel))

        @tf.function(jit_compile=True)
        def update(g):
            vel.assign(0.9 * vel - 0.03 * (tf.cast(g, tf.float32) + grad_w * kernel))
            kernel.assign_add(vel)
            if mixed:
                kernel_bf16.assign(tf.cast(kernel, tf.bfloat16))

        @tf.function
        def step():
            z = tf.cast(tf.matmul(xs, kernel_bf16), tf.float32) if mixed else tf.matmul(xs, kernel)
            loss, dz = tf.raw_ops.SparseSoftmaxCrossEntropyWithLogits(
                features=tf.reshape(z, [-1, width]), labels=tf.reshape(y, [-1]))
            dz = tf.reshape(dz, [G, B, width]) / B
            update(tf.matmul(xs, tf.cast(dz, tf.bfloat16) if mixed else dz, transpose_a=True))
            return tf.reduce_mean(loss)

        return step

    steps = {"Keras SGD, taped penalty": keras_step, "fused op, penalty gradient (before)": fused_step,
             "no tape, XLA update, float32 (now)": trainer_step("float32"),
             "no tape, XLA update, bfloat16 (now)": trainer_step("bfloat16")}
    times = {label: [] for label in steps}
    for _ in range(3):                                       # interleaved
        for label, fn in steps.items():
            times[label].append(_seconds(fn, reps))
    median = {label: sorted(v)[1] for label, v in times.items()}
    k = median["Keras SGD, taped penalty"]
    print(f"a whole step, {G} problems x (batch {B}, D={D}) x {width} columns (the penalties side by side):")
    for label, t in median.items():
        print(f"  {label:38s} {t * 1e3:7.1f} ms   {k / t:.2f}x")


if __name__ == "__main__":
    main()
