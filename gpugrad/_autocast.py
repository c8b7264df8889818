"""The autocast state read by the op entry points (matmul, linear, softmax, ...).

``active`` counts the autocast regions open in any thread: the entry points test it
first (a module attribute read), so code outside autocast pays nothing more. The dtype
itself is per thread, as PyTorch's autocast state is.
"""
from __future__ import annotations

import threading

active = 0
_local = threading.local()
_lock = threading.Lock()


def low_dtype():
    """The dtype this thread's matmuls run in under autocast, or None."""
    if not active:
        return None
    return getattr(_local, "dtype", None)


def push(dtype):
    """Enter a region computing in ``dtype`` (None: autocast off inside); returns what to
    hand ``pop``."""
    global active
    previous = getattr(_local, "dtype", None)
    _local.dtype = dtype
    with _lock:
        active += 1
    return previous


def pop(previous):
    global active
    _local.dtype = previous
    with _lock:
        active -= 1
