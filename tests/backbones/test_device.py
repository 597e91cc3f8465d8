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
