"""Small helpers shared by the op declarations."""
from __future__ import annotations

import numpy as np

from .._tensor import Tensor, wrap


def raw(x):
    """The array behind a tensor, or the value itself for a Python scalar."""
    return x._data if isinstance(x, Tensor) else x


def const_like(arr, like):
    """A constant tensor on ``like``'s device around a freshly computed array."""
    return wrap(arr, like.device)


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
