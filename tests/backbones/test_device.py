"""The build says which device it extracts features on."""

from __future__ import annotations

import os

import pytest

from tlreport.backbones.device import compute_device

tf = pytest.importorskip("tensorflow")


def test_a_cpu_only_tensorflow_says_cpu_and_its_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: [])
    assert compute_device() == f"CPU ({os.cpu_count()} cores)"


def test_gpus_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [tf.config.PhysicalDevice(name=f"/physical_device:GPU:{i}", device_type="GPU") for i in range(2)]
    monkeypatch.setattr(tf.config, "list_physical_devices", lambda kind=None: fake if kind == "GPU" else [])
    monkeypatch.setattr(tf.config.experimental, "get_device_details",
                        lambda d: {"device_name": "NVIDIA H200"} if d is fake[0] else {})
    assert compute_device() == "GPU:0 (NVIDIA H200), GPU:1"


MULTI_DEVICE = r"""
import sys
import numpy as np
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from tlreport.backbones import get_spec, load_model
from tlreport.backbones.device import compute_device, extraction_devices
from tlreport.features.extract import batch_function

spec = get_spec("tiny_random")
model = load_model(spec, cache_dir=sys.argv[1])
x = np.random.default_rng(0).integers(0, 256, (7, spec.input_size, spec.input_size, 3), dtype=np.uint8)
devices = extraction_devices()
assert devices == ["/device:CPU:0", "/device:CPU:1"], devices
assert compute_device().endswith(", batches split over 2 logical devices"), compute_device()
split = batch_function(model, spec)                      # the default: every logical device
one = batch_function(model, spec, devices=devices[:1])
for batch in (x, x[:1]):                                 # 4 + 3 rows, and 1 + 0
    a, b = split(batch), one(batch)
    assert a.shape == (len(batch), spec.feature_dim), a.shape
    np.testing.assert_allclose(a, b, atol=1e-5)
print("ok")
"""


@pytest.mark.slow     # seconds: kept out of the quick tier (pytest -m 'not slow')
def test_batches_split_over_logical_devices_give_the_features_of_one_device(tmp_path) -> None:
    """The multi-device path (every GPU of a machine) on a CPU split into two logical devices."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-c", MULTI_DEVICE, str(tmp_path)], capture_output=True, text=True,
                       timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", CUDA_VISIBLE_DEVICES=""))
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-2000:]
