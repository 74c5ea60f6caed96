"""The allocator setting (affinity.memory): mallopt takes it once per process, it removes the
page faults of memory freed and allocated again (counted, not timed), and the commands that
time or train models on the CPU make it."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest
import torch

import affinity.benchmark
import affinity.profiling._measure
from affinity.memory import keep_freed_memory

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
glibc_only = pytest.mark.skipif(not GLIBC, reason="glibc's mallopt")

#: batch-2 forwards of as_mlp_t, one thread: minor page faults of forwards 9-11 (the heap
#: grows to its high-water mark over the first ones)
FORWARDS = """
import resource, sys, torch
from affinity.memory import keep_freed_memory, set_malloc_thresholds
if sys.argv[1] == "keep":
    assert keep_freed_memory()
else:  # glibc's starting thresholds, fixed: every block over 128 KiB goes back when freed
    assert set_malloc_thresholds(128 * 1024, 128 * 1024)
from affinity.models import create_model
torch.set_num_threads(1)
model, x = create_model("as_mlp_t").eval(), torch.randn(2, 3, 224, 224)
with torch.inference_mode():
    for _ in range(8):
        model(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(3):
        model(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@glibc_only
def test_glibc_takes_the_thresholds_once_per_process() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # cached: mallopt is not called again
    assert keep_freed_memory.cache_info().hits >= 1  # type: ignore[attr-defined]


def _faults(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", FORWARDS, mode], check=True, capture_output=True, text=True, timeout=120
    ).stdout
    return int(out.split()[-1])


@glibc_only
def test_freed_memory_is_reused_without_page_faults() -> None:
    """Kept, the heap serves a forward's activations again. The control fixes glibc's starting
    thresholds, so the same forwards fault every block in again; glibc's own adaptive ones
    land anywhere between (~15,000-19,000 pages, or none, from one process to the next)."""
    returned, kept = _faults("returned"), _faults("keep")
    assert returned > 3 * 10_000  # ~58,000 a forward
    # 0 most times; ~590 when fragmentation grows the heap once more (up to ~2,900 seen at a
    # 4th forward): under a tenth of one forward's pages with the memory returned
    assert kept < 6_000


@pytest.mark.parametrize("where", ["benchmark", "profile"])
def test_cpu_timing_keeps_freed_memory(where: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    module = affinity.benchmark if where == "benchmark" else affinity.profiling._measure
    monkeypatch.setattr(module, "keep_freed_memory", lambda: calls.append(1) or True)
    if where == "benchmark":
        affinity.benchmark.benchmark("resmlp_s12", batch_size=1, img_size=32, repeats=1, warmup=0)
    else:
        model = torch.nn.Conv2d(3, 4, 3)
        affinity.profiling._measure.profile(model, img_size=16, timing=True, warmup=0, max_runs=3)
    assert calls == [1]
