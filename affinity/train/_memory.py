"""glibc's allocator kept from handing a training step's memory back to the kernel.

A search model's step allocates and frees the same activations every step (0.5-2 MB each at
batch 64). glibc serves blocks over its mmap threshold by fresh ``mmap`` and returns the
heap's free top above its trim threshold; both thresholds adapt only up to a few MB, so each
step paid ~150-350 minor page faults re-touching memory it had just freed (the first write
into a fresh ``addmm`` output, ~0.6 ms of a 25 ms step for a (4096, 128) hidden layer in this
VM). With fixed, larger thresholds the freed blocks are reused from the heap. The numbers
computed do not change: torch aligns every CPU tensor to 64 bytes whichever way the block
was obtained.
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


@functools.cache
def keep_freed_memory() -> bool:
    """Set the thresholds once per process (glibc on Linux only); True when they were set."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: no mallopt
        return False
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    return mmap_set and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
