"""Functions that make tensors."""
from __future__ import annotations

import operator

import numpy as np

from . import _device
from ._tensor import Tensor, wrap


def _shape(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    for s in shape:
        try:
            operator.index(s)
        except TypeError:
            raise TypeError(f"a shape takes integers, got {type(s).__name__} {s!r} in "
                            f"{tuple(shape)}") from None
    shape = tuple(operator.index(s) for s in shape)
    if any(s < 0 for s in shape):
        raise ValueError(f"negative dimension in shape {shape}")
    return shape


def _finish(arr, dev, requires_grad):
    t = wrap(dev.adopt(arr), dev)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _make(fill, shape, dtype, device, requires_grad, default=np.float32):
    dev = _device.device(device) if device is not None else _device.default_device()
    dtype = np.dtype(default if dtype is None else dtype)
    with dev.context():
        arr = fill(dev, _shape(shape), dtype)
    return _finish(arr, dev, requires_grad)


def tensor(data, dtype=None, device=None, requires_grad=False):
    """A new tensor holding a copy of ``data`` (list, NumPy or CuPy array, Tensor).
    Arrays keep their dtype; Python floats become float32."""
    return Tensor(data, dtype=dtype, device=device, requires_grad=requires_grad)


def zeros(*shape, dtype=None, device=None, requires_grad=False):
    return _make(lambda dev, s, d: dev.xp.zeros(s, d), shape, dtype, device, requires_grad)


def ones(*shape, dtype=None, device=None, requires_grad=False):
    return _make(lambda dev, s, d: dev.xp.ones(s, d), shape, dtype, device, requires_grad)


def empty(*shape, dtype=None, device=None, requires_grad=False):
    return _make(lambda dev, s, d: dev.xp.empty(s, d), shape, dtype, device, requires_grad)


def full(shape, fill_value, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        dtype = np.float32 if isinstance(fill_value, float) else np.asarray(fill_value).dtype
    shape = shape if isinstance(shape, (tuple, list)) else (shape,)
    return _make(lambda dev, s, d: dev.xp.full(s, fill_value, d), (shape,), dtype, device,
                 requires_grad)


def arange(start, stop=None, step=1, dtype=None, device=None, requires_grad=False):
    """Evenly spaced values; integers give int64, any float gives float32 (as PyTorch)."""
    if stop is None:
        start, stop = 0, start
    if dtype is None:
        dtype = np.float32 if any(isinstance(v, float) for v in (start, stop, step)) \
            else np.int64
    dev = _device.device(device) if device is not None else _device.default_device()
    with dev.context():
        arr = dev.xp.arange(start, stop, step, dtype=np.dtype(dtype))
    return _finish(arr, dev, requires_grad)


def _like(t, dtype, device):
    return (t.dtype if dtype is None else dtype), (t.device if device is None else device)


def zeros_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return zeros(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def ones_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return ones(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return full(t.shape, fill_value, dtype=dtype, device=device, requires_grad=requires_grad)


def randn(*shape, dtype=None, device=None, requires_grad=False):
    """Standard normal samples from the device's generator (see gg.manual_seed)."""
    return _make(lambda dev, s, d: dev.generator.normal(s, d), shape, dtype, device,
                 requires_grad)


def rand(*shape, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) from the device's generator."""
    return _make(lambda dev, s, d: dev.generator.uniform(s, d), shape, dtype, device,
                 requires_grad)
