"""The allocator setting the training loop makes (affinity.train._memory); its effect (no page
faults per step) is measured by benchmarks/trials_per_hour.py, not timed here."""

from __future__ import annotations

import platform
import sys

import pytest

from affinity.train._memory import keep_freed_memory


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_glibc_takes_the_thresholds_once_per_process() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # cached: mallopt is not called again
    assert keep_freed_memory.cache_info().hits >= 1  # type: ignore[attr-defined]
