"""Small helpers shared by the op declarations. Rules run on Tensors (a recorded backward)
and on bare arrays (one that records nothing), so the helpers accept both."""
from __future__ import annotations

import numpy as np

from .. import _device
from .._tensor import Tensor, wrap


def raw(x):
    """The array behind a tensor, or the value itself (an array, a Python scalar)."""
    return x._data if isinstance(x, Tensor) else x


def xp_of(x):
    """The array module of a tensor or an array."""
    return x.device.xp if isinstance(x, Tensor) else _device.array_module(x)


def const_like(arr, like):
    """A freshly computed array as a constant beside ``like``: a tensor on its device if
    ``like`` is a tensor, the array itself if ``like`` is an array."""
    if _device.recording_thread is not None:
        _device.refuse_while_recording(
            "a derivative computed outside the kernels (a sign, mask or weight array)",
            "a replay would reuse the recorded one; this op's backward cannot be compiled yet")
    if isinstance(like, Tensor):
        return wrap(like.device.adopt(arr), like.device)
    return arr


def add_terms(*terms):
    """Sum of the terms that are not None (symbolic zeros), or None if all are."""
    total = None
    for t in terms:
        if t is not None:
            total = t if total is None else total + t
    return total


def shape_str(shape):
    return str(tuple(int(s) for s in shape))


def normalize_axes(axis, ndim):
    """A sorted tuple of non-negative axes; None means all."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = []
    for a in axes:
        a = int(a)
        if not -ndim <= a < max(ndim, 1):
            raise ValueError(f"axis {a} is out of range for a tensor of {ndim} dimension(s)")
        out.append(a % ndim if ndim else 0)
    if len(set(out)) != len(out):
        raise ValueError(f"repeated axis in {axis}")
    return tuple(sorted(out))


def keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def broadcast_shapes(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError("shapes " + " and ".join(shape_str(s) for s in shapes)
                         + " cannot be broadcast together") from None


def prod(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def elementwise_cost(flops_per_element):
    """A cost model: so many FLOPs per output element, every operand read once."""
    def cost(self, in_shapes, out_shape, p):
        n = prod(out_shape)
        return flops_per_element * n, n * (len(in_shapes) + 1)
    return cost
