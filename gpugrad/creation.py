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


def empty_like(t, dtype=None, device=None, requires_grad=False):
    dtype, device = _like(t, dtype, device)
    return empty(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def rand_like(t, dtype=None, device=None, requires_grad=False):
    """Uniform samples in [0, 1) shaped like t (its float dtype unless given)."""
    dtype, device = _like(t, dtype, device)
    return rand(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randn_like(t, dtype=None, device=None, requires_grad=False):
    """Standard normal samples shaped like t (its float dtype unless given)."""
    dtype, device = _like(t, dtype, device)
    return randn(t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randint(low, high=None, size=None, dtype=None, device=None, requires_grad=False):
    """Integers drawn uniformly from [low, high) (``randint(high, size)`` starts at 0);
    int64 unless ``dtype`` says otherwise."""
    if size is None and isinstance(high, (tuple, list)):
        low, high, size = 0, low, high          # randint(high, size)
    if high is None or size is None:
        raise TypeError("randint() needs high and size: randint(low=0, high, size)")
    low, high = operator.index(low), operator.index(high)
    if low >= high:
        raise ValueError(f"randint: expected low < high, got low={low}, high={high}")
    return _make(lambda dev, s, d: dev.generator.integers(low, high, s, d), (size,), dtype,
                 device, requires_grad, default=np.int64)


def randint_like(t, low=0, high=None, dtype=None, device=None, requires_grad=False):
    if high is None:
        low, high = 0, low
    dtype, device = _like(t, dtype, device)
    return randint(low, high, t.shape, dtype=dtype, device=device, requires_grad=requires_grad)


def randperm(n, dtype=None, device=None, requires_grad=False):
    """A random permutation of 0..n-1 (int64 unless ``dtype`` says otherwise)."""
    n = operator.index(n)

    def fill(dev, s, d):
        return dev.xp.argsort(dev.generator.uniform((n,), np.float64)).astype(d)
    return _make(fill, (n,), dtype, device, requires_grad, default=np.int64)


def eye(n, m=None, dtype=None, device=None, requires_grad=False):
    """The n x m identity matrix (m = n unless given)."""
    n = operator.index(n)
    m = n if m is None else operator.index(m)
    return _make(lambda dev, s, d: dev.xp.eye(n, m, dtype=d), (n, m), dtype, device,
                 requires_grad)


def linspace(start, end, steps, dtype=None, device=None, requires_grad=False):
    """``steps`` evenly spaced values from start to end, both included (float32 unless
    ``dtype`` says otherwise)."""
    steps = operator.index(steps)
    if steps < 0:
        raise ValueError(f"linspace: number of steps must be non-negative, got {steps}")
    start, end = _number(start, "start"), _number(end, "end")
    return _make(lambda dev, s, d: _linspace(dev.xp, start, end, steps, d), (steps,), dtype,
                 device, requires_grad)


def _linspace(xp, start, end, steps, dtype):
    values = xp.linspace(start, end, steps, dtype=np.float64)
    if np.dtype(dtype).kind in "iu":
        values = xp.trunc(values)              # PyTorch rounds toward zero
    return values.astype(dtype)


def logspace(start, end, steps, base=10.0, dtype=None, device=None, requires_grad=False):
    """base ** linspace(start, end, steps)."""
    steps = operator.index(steps)
    start, end = _number(start, "start"), _number(end, "end")

    def fill(dev, s, d):
        values = float(base) ** dev.xp.linspace(start, end, steps, dtype=np.float64)
        if np.dtype(d).kind in "iu":
            values = dev.xp.trunc(values)
        return values.astype(d)
    return _make(fill, (steps,), dtype, device, requires_grad)


def _number(value, what):
    if isinstance(value, Tensor):
        if value.numel() != 1:
            raise ValueError(f"{what} must be a number or a one-element tensor, got shape "
                             f"{tuple(value.shape)}")
        return value.item()
    return value


def from_numpy(array):
    """A CPU tensor sharing memory with the NumPy array: writes to either show in both."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy expects a numpy.ndarray, got {type(array).__name__}")
    if array.dtype.kind not in "biufc":
        raise TypeError(f"can't convert a NumPy array of dtype {array.dtype}: the only "
                        "supported types are numbers and bool")
    if not array.dtype.isnative:
        raise TypeError(f"from_numpy: the array's byte order ({array.dtype}) is not the "
                        "machine's; convert it with array.astype(array.dtype.newbyteorder('='))")
    dev = _device.device("cpu")
    return wrap(dev.adopt(array), dev)
