"""Giving a closed local model's memory back to the operating system.

Freeing a model's tensors and ONNX Runtime's sessions hands their memory to the C
library, not to the system: glibc keeps the free pages of its heap and arenas for later
allocations, and a process that loads and unloads models (an endpoint deleted, updated or
scaled to zero) keeps the high mark of all of them. ``return_free_memory`` asks glibc to
give its free pages back (``malloc_trim``); elsewhere it does nothing.

It knows no model: the local backend calls it once its model and threads are gone.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache
from typing import Any, Callable


@lru_cache(maxsize=1)
def _malloc_trim() -> Callable[[int], Any] | None:
    """glibc's ``malloc_trim``; None on a C library without it (musl, macOS)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError):
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def return_free_memory() -> None:
    """Give the C library's free pages back to the system, where it can."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
