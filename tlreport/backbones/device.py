"""Which device TensorFlow runs the backbones on, in words for the build's log and the post.

A CPU-only TensorFlow (the default install, ``tensorflow-cpu``) always says
``CPU (N cores)``; a GPU-enabled one (see the README's GPU install) names the
GPUs it sees, and TensorFlow places the backbone on the first of them.
"""

from __future__ import annotations

import os


def compute_device() -> str:
    """``GPU:0 (NVIDIA H200)``, ``GPU:0, GPU:1 (...)`` or ``CPU (2 cores)``; imports TensorFlow."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return f"CPU ({os.cpu_count()} cores)"
    names = []
    for i, gpu in enumerate(gpus):
        try:
            name = tf.config.experimental.get_device_details(gpu).get("device_name", "")
        except (RuntimeError, ValueError):
            name = ""
        names.append(f"GPU:{i}" + (f" ({name})" if name else ""))
    return ", ".join(names)
