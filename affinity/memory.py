"""glibc's allocator kept from handing a step's memory back to the kernel.

A model's forward (and a training step) allocates and frees the same activations every call.
glibc serves blocks over its mmap threshold by fresh ``mmap`` and returns the heap's free top
above its trim threshold; both thresholds adapt only up to a few MB, so each call paid minor
page faults re-touching memory it had just freed, ~2.9 µs each in this VM:

- a search model's training step, batch 64: ~150-350 faults (the first write into a fresh
  ``addmm`` output, ~0.6 ms of a 25 ms step for a (4096, 128) hidden layer);
- a batch-8 forward, one thread: repmlpnet_t224 12,500-21,700 faults (35-63 ms of ~950 ms),
  as_mlp_t 4,600-8,700, swin_t 2,350, deit_s 0-2,300; none with the thresholds below.

With fixed, larger thresholds the freed blocks are reused from the heap. Training, the
search, ``affinity profile``'s latency and ``affinity benchmark`` on the CPU set them (once
per process); a script timing models on the CPU can call ``keep_freed_memory()`` itself. The
numbers computed do not change: torch aligns every CPU tensor to 64 bytes whichever way the
block was obtained. The cost: up to ``TRIM_THRESHOLD`` of freed memory stays with the process.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

#: ``mallopt`` parameters (glibc's malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: blocks up to this size come from the heap (glibc's own adaptive ceiling on 64-bit)
MMAP_THRESHOLD = 32 * 2**20
#: free memory at the heap's top kept up to this size
TRIM_THRESHOLD = 128 * 2**20


def set_malloc_thresholds(mmap_threshold: int, trim_threshold: int) -> bool:
    """Fix glibc's mmap and trim thresholds (which stops their adaptation); True when both were
    set, False off glibc (other platforms, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, mmap_threshold))
    return mmap_set and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))


@functools.cache
def keep_freed_memory() -> bool:
    """Set ``MMAP_THRESHOLD`` and ``TRIM_THRESHOLD`` once per process; True when they were set."""
    return set_malloc_thresholds(MMAP_THRESHOLD, TRIM_THRESHOLD)
