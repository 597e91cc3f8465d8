"""``tiny_random``: a tiny convolutional network with seeded random weights, for tests and benchmarks.

It follows the same contract as every backbone (float32 RGB in ``[0, 255]`` at
``input_size``; outputs ``features`` and ``probs``), so the engine, the cache,
the pipeline and the reliability tests run the real code paths without
building or loading a real ImageNet network.  Its features are the channel
means of the image and 29 random 3x3 filters after ReLU, globally averaged:
enough to tell colours and textures apart, nothing like ImageNet features.
Its weights come from ``numpy`` with a fixed seed, so every machine builds
the same network; the seed is part of the spec, so it is part of every cache key.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tlreport.backbones.spec import BackboneSpec

RANDOM_FILTERS = 29


def seeded_weights(spec: BackboneSpec) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(conv kernel, conv bias, dense kernel, dense bias) drawn from the spec's seed."""
    rng = np.random.default_rng(spec.extra["seed"])
    conv_k = rng.normal(0, 0.3, (3, 3, 3, RANDOM_FILTERS)).astype(np.float32)
    conv_b = rng.normal(0, 0.1, (RANDOM_FILTERS,)).astype(np.float32)
    dense_k = rng.normal(0, 0.5, (spec.feature_dim, spec.num_classes)).astype(np.float32)
    dense_b = np.zeros((spec.num_classes,), np.float32)
    return conv_k, conv_b, dense_k, dense_b


def build(spec: BackboneSpec, *, cache_dir: Path, random_weights: bool = True,
          data_root: str | None = None):
    """Registry entry point; the weights are always the seeded random ones (``random_weights`` is moot)."""
    import keras

    if spec.feature_dim != RANDOM_FILTERS + 3:
        raise ValueError(f"{spec.name}: feature_dim must be {RANDOM_FILTERS + 3}")
    conv_k, conv_b, dense_k, dense_b = seeded_weights(spec)
    inputs = keras.Input((spec.input_size, spec.input_size, 3), dtype="float32")
    mean = np.asarray(spec.mean, np.float32)
    std = np.asarray(spec.std, np.float32)
    scaled = keras.layers.Rescaling(1.0 / std, offset=-mean / std, name="scale")(inputs)
    small = keras.layers.AveragePooling2D(4, name="downsample")(scaled)
    conv = keras.layers.Conv2D(RANDOM_FILTERS, 3, activation="relu", name="random_conv")
    texture = keras.layers.GlobalAveragePooling2D(name="texture")(conv(small))
    colour = keras.layers.GlobalAveragePooling2D(name="colour")(scaled)
    features = keras.layers.Concatenate(name="features")([colour, texture])
    dense = keras.layers.Dense(spec.num_classes, activation="softmax", name="probs")
    probs = dense(features)
    model = keras.Model(inputs, {"features": features, "probs": probs}, name=spec.name)
    conv.set_weights([conv_k, conv_b])
    dense.set_weights([dense_k, dense_b])
    return model
