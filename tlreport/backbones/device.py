"""Which device TensorFlow runs the backbones on, in words for the build's log and the post.

A CPU-only TensorFlow (the default install, ``tensorflow-cpu``) always says
``CPU (N cores)``; a GPU-enabled one (see docs/getting-started.md, *On an NVIDIA GPU*) names the
GPUs it sees.  Extraction splits each batch across every GPU of the machine
(:func:`extraction_devices`); a CPU split into logical devices
(``tf.config.set_logical_device_configuration``, how the tests run the
multi-device path without a GPU) is split across those the same way.
"""

from __future__ import annotations

import os


def cpu_only() -> str:
    """What :func:`compute_device` says for the machine's CPU, used whole: ``CPU (2 cores)``."""
    return f"CPU ({os.cpu_count()} cores)"


def compute_device() -> str:
    """``GPU:0 (NVIDIA H200)``, ``GPU:0, GPU:1 (...)`` or ``CPU (2 cores)``; imports TensorFlow."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        n = len(tf.config.list_logical_devices("CPU"))
        return cpu_only() + (f", batches split over {n} logical devices" if n > 1 else "")
    names = []
    for i, gpu in enumerate(gpus):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", "")
        except (RuntimeError, ValueError):
            name = ""
        names.append(f"GPU:{i}" + (f" ({name})" if name else ""))
    return ", ".join(names)


def extraction_devices() -> list[str]:
    """The devices a batch of images is split across: every logical GPU, else every logical CPU
    (one, unless the CPU was split into several); imports TensorFlow."""
    import tensorflow as tf

    gpus = tf.config.list_logical_devices("GPU")
    return [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
