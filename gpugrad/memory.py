"""Memory accounting per device: live bytes of what gpugrad allocated, and the peak."""
from . import _device

__all__ = ["stats", "reset_peak", "TRACK_MIN_BYTES"]


def stats(device=None) -> dict:
    """``{"current_bytes", "peak_bytes", ...}`` for ``device`` (default: the default device).

    Counts every live array gpugrad allocated: tensor data, arrays saved for backward,
    gradients, optimizer state. On CuPy these are the memory pool's used bytes; on the
    CPU, arrays of at least ``TRACK_MIN_BYTES`` (1 KiB) each.
    """
    return _device.device(device).memory.stats()


def reset_peak(device=None):
    """Start a new peak from the current level."""
    _device.device(device).memory.reset_peak()


TRACK_MIN_BYTES = _device.TRACK_MIN_BYTES
