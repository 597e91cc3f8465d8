"""TF-slim's Inception v4, written independently of tlreport: checkpoint names and shapes and a raw ``tf.nn`` forward pass.

The table follows TF-slim's ``nets/inception_v4.py``; :class:`SlimReference`
draws random values for every variable and evaluates the network with raw ops
and hand-written pooling, so the Keras model is checked against something
that does not share its code.  ``write_v1``/``write_v2`` save a checkpoint in
the format of the published archive.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

EPS = 1e-3
NUM_CLASSES = 1001

# ---- slim's blocks as data.  A branch is a list of steps:
#   (scope, out_channels, kh, kw, stride, padding)   slim.conv2d + batch_norm + relu
#   ("avg",) 3x3/1 SAME avg pool; ("max",) 3x3/2 VALID max pool
#   ("split", step_a, step_b)                         both convs on the same input, concatenated
C = tuple[str, int, int, int, int, str]


def c(scope: str, out: int, kh: int, kw: int, stride: int = 1, padding: str = "SAME") -> C:
    return (scope, out, kh, kw, stride, padding)


MIXED_3A = [[("max",)], [c("Conv2d_0a_3x3", 96, 3, 3, 2, "VALID")]]
MIXED_4A = [
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_1a_3x3", 96, 3, 3, 1, "VALID")],
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_0b_1x7", 64, 1, 7), c("Conv2d_0c_7x1", 64, 7, 1),
     c("Conv2d_1a_3x3", 96, 3, 3, 1, "VALID")],
]
MIXED_5A = [[c("Conv2d_1a_3x3", 192, 3, 3, 2, "VALID")], [("max",)]]
INCEPTION_A = [
    [c("Conv2d_0a_1x1", 96, 1, 1)],
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_0b_3x3", 96, 3, 3)],
    [c("Conv2d_0a_1x1", 64, 1, 1), c("Conv2d_0b_3x3", 96, 3, 3), c("Conv2d_0c_3x3", 96, 3, 3)],
    [("avg",), c("Conv2d_0b_1x1", 96, 1, 1)],
]
REDUCTION_A = [
    [c("Conv2d_1a_3x3", 384, 3, 3, 2, "VALID")],
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_0b_3x3", 224, 3, 3), c("Conv2d_1a_3x3", 256, 3, 3, 2, "VALID")],
    [("max",)],
]
INCEPTION_B = [
    [c("Conv2d_0a_1x1", 384, 1, 1)],
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_0b_1x7", 224, 1, 7), c("Conv2d_0c_7x1", 256, 7, 1)],
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_0b_7x1", 192, 7, 1), c("Conv2d_0c_1x7", 224, 1, 7),
     c("Conv2d_0d_7x1", 224, 7, 1), c("Conv2d_0e_1x7", 256, 1, 7)],
    [("avg",), c("Conv2d_0b_1x1", 128, 1, 1)],
]
REDUCTION_B = [
    [c("Conv2d_0a_1x1", 192, 1, 1), c("Conv2d_1a_3x3", 192, 3, 3, 2, "VALID")],
    [c("Conv2d_0a_1x1", 256, 1, 1), c("Conv2d_0b_1x7", 256, 1, 7), c("Conv2d_0c_7x1", 320, 7, 1),
     c("Conv2d_1a_3x3", 320, 3, 3, 2, "VALID")],
    [("max",)],
]
INCEPTION_C = [
    [c("Conv2d_0a_1x1", 256, 1, 1)],
    [c("Conv2d_0a_1x1", 384, 1, 1), ("split", c("Conv2d_0b_1x3", 256, 1, 3), c("Conv2d_0c_3x1", 256, 3, 1))],
    [c("Conv2d_0a_1x1", 384, 1, 1), c("Conv2d_0b_3x1", 448, 3, 1), c("Conv2d_0c_1x3", 512, 1, 3),
     ("split", c("Conv2d_0d_1x3", 256, 1, 3), c("Conv2d_0e_3x1", 256, 3, 1))],
    [("avg",), c("Conv2d_0b_1x1", 256, 1, 1)],
]
STEM = [c("Conv2d_1a_3x3", 32, 3, 3, 2, "VALID"), c("Conv2d_2a_3x3", 32, 3, 3, 1, "VALID"),
        c("Conv2d_2b_3x3", 64, 3, 3)]
BLOCKS = ([("Mixed_3a", MIXED_3A), ("Mixed_4a", MIXED_4A), ("Mixed_5a", MIXED_5A)]
          + [(f"Mixed_5{x}", INCEPTION_A) for x in "bcde"] + [("Mixed_6a", REDUCTION_A)]
          + [(f"Mixed_6{x}", INCEPTION_B) for x in "bcdefgh"] + [("Mixed_7a", REDUCTION_B)]
          + [(f"Mixed_7{x}", INCEPTION_C) for x in "bcd"])
# slim names the branches by position, except the Mixed_3a/5a pools which carry their own scope
POOL_SCOPES = {"max": "MaxPool", "avg": "AvgPool"}


class SlimReference:
    """Walks the table: ``init`` draws the checkpoint values, ``__call__`` runs raw TF ops on them."""

    def __init__(self, rng: np.random.Generator | None = None):
        self.rng = rng
        self.values: dict[str, np.ndarray] = {}

    def _conv(self, x, scope: str, step: C):
        _, out, kh, kw, stride, padding = step
        name = f"InceptionV4/{scope}"
        cin = int(x.shape[-1])
        if self.rng is not None and f"{name}/weights" not in self.values:
            r = self.rng
            self.values[f"{name}/weights"] = (r.standard_normal((kh, kw, cin, out)) *
                                             np.sqrt(2.0 / (kh * kw * cin))).astype(np.float32)
            self.values[f"{name}/BatchNorm/beta"] = (0.1 * r.standard_normal(out)).astype(np.float32)
            self.values[f"{name}/BatchNorm/moving_mean"] = (0.1 * r.standard_normal(out)).astype(np.float32)
            self.values[f"{name}/BatchNorm/moving_variance"] = r.uniform(0.5, 2.0, out).astype(np.float32)
        w = self.values[f"{name}/weights"]
        assert w.shape == (kh, kw, cin, out), name
        y = tf.nn.conv2d(x, w, strides=stride, padding=padding)
        mean = self.values[f"{name}/BatchNorm/moving_mean"]
        var = self.values[f"{name}/BatchNorm/moving_variance"]
        beta = self.values[f"{name}/BatchNorm/beta"]
        return tf.nn.relu((y - mean) / np.sqrt(var + EPS) + beta)

    @staticmethod
    def _avg_pool_same(x):
        """3x3 stride 1 SAME average, padded cells excluded (TF semantics), by explicit shifts."""
        h, w = int(x.shape[1]), int(x.shape[2])
        xp = tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]])
        ones = tf.pad(tf.ones_like(x[..., :1]), [[0, 0], [1, 1], [1, 1], [0, 0]])
        total = sum(xp[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
        count = sum(ones[:, i:i + h, j:j + w] for i in range(3) for j in range(3))
        return total / count

    @staticmethod
    def _max_pool_valid(x):
        ho, wo = (int(x.shape[1]) - 3) // 2 + 1, (int(x.shape[2]) - 3) // 2 + 1
        parts = [x[:, i:i + 2 * ho - 1:2, j:j + 2 * wo - 1:2] for i in range(3) for j in range(3)]
        return tf.reduce_max(tf.stack(parts), axis=0)

    def block(self, x, name: str, table):
        outs = []
        for b, branch in enumerate(table):
            y = x
            for step in branch:
                if step[0] == "max":
                    y = self._max_pool_valid(y)
                elif step[0] == "avg":
                    y = self._avg_pool_same(y)
                elif step[0] == "split":
                    y = tf.concat([self._conv(y, f"{name}/Branch_{b}/{s[0]}", s) for s in step[1:]], -1)
                else:
                    y = self._conv(y, f"{name}/Branch_{b}/{step[0]}", step)
            outs.append(y)
        return tf.concat(outs, -1)

    def __call__(self, images: np.ndarray, until: str | None = None) -> dict[str, np.ndarray]:
        x = tf.constant((images - 127.5) / 127.5, tf.float32)
        for step in STEM:
            x = self._conv(x, step[0], step)
        for name, table in BLOCKS:
            x = self.block(x, name, table)
            if name == until:
                return {"net": x.numpy()}
        feats = tf.reduce_mean(x, axis=[1, 2]).numpy()
        if self.rng is not None and "InceptionV4/Logits/Logits/weights" not in self.values:
            self.values["InceptionV4/Logits/Logits/weights"] = (
                0.01 * self.rng.standard_normal((1536, NUM_CLASSES))).astype(np.float32)
            self.values["InceptionV4/Logits/Logits/biases"] = (
                0.1 * self.rng.standard_normal(NUM_CLASSES)).astype(np.float32)
        logits = feats.astype(np.float64) @ self.values["InceptionV4/Logits/Logits/weights"] \
            + self.values["InceptionV4/Logits/Logits/biases"]
        e = np.exp(logits - logits.max(1, keepdims=True))
        return {"features": feats, "probs": e / e.sum(1, keepdims=True)}


def aux_values(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """slim's AuxLogits head at 299: 17x17x1024 -> avgpool 5/3 -> 1x1x128 -> 5x5x768 VALID -> FC."""
    out = {}
    for scope, shape in (("Conv2d_1b_1x1", (1, 1, 1024, 128)), ("Conv2d_2a", (5, 5, 128, 768))):
        out[f"InceptionV4/AuxLogits/{scope}/weights"] = rng.standard_normal(shape).astype(np.float32)
        for leaf in ("beta", "moving_mean", "moving_variance"):
            out[f"InceptionV4/AuxLogits/{scope}/BatchNorm/{leaf}"] = rng.random(shape[-1]).astype(np.float32)
    out["InceptionV4/AuxLogits/Aux_logits/weights"] = rng.standard_normal((768, NUM_CLASSES)).astype(np.float32)
    out["InceptionV4/AuxLogits/Aux_logits/biases"] = rng.standard_normal(NUM_CLASSES).astype(np.float32)
    return out


def write_v1(path: Path, values: dict[str, np.ndarray]) -> str:
    """A V1 (single-file) checkpoint, the format of inception_v4_2016_09_09.tar.gz."""
    names = sorted(values)
    tf.raw_ops.Save(filename=str(path), tensor_names=names, data=[tf.constant(values[n]) for n in names])
    return str(path)


def write_v2(prefix: Path, values: dict[str, np.ndarray]) -> str:
    names = sorted(values)
    tf.raw_ops.SaveV2(prefix=str(prefix), tensor_names=names, shape_and_slices=[""] * len(names),
                      tensors=[tf.constant(values[n]) for n in names])
    return str(prefix)
