"""This machine's CPU: its feature flags, and whether it does bf16 arithmetic natively."""

from __future__ import annotations

import functools
from pathlib import Path


@functools.cache
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (Linux ``/proc/cpuinfo``; empty elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})  # native bf16 arithmetic: AVX-512 BF16 or AMX


def cpu_has_bf16() -> bool:
    """AVX-512 BF16 or AMX on this CPU."""
    return bool(cpu_flags() & BF16_FLAGS)
