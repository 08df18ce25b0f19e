"""Giving the memory a finished stage freed back to the system.

glibc's malloc keeps much of what a stage frees in its heaps rather than returning it: allocations below
its mmap threshold (which grows to 32 MB as large blocks are freed) come from heaps that shrink only from
the top, and each thread has its own. Torch's training tensors and the executor's batches are such
allocations: after the recipe's fine-tuning step on EfficientNet-Lite0 3.0 GB stayed resident, all but
0.55 GB of it free, and ``malloc_trim(0)`` handed that back. Resident memory then follows what the run
holds, not the most any stage ever held.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable


def release_free_memory() -> None:
    """Return the C heap's free memory to the system (glibc's ``malloc_trim(0)``); a no-op elsewhere."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        return ctypes.CDLL(name).malloc_trim if name else None
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to trim
        return None
