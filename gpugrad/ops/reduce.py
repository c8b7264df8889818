"""Reductions: sum, mean, max, min, logsumexp."""
from __future__ import annotations

from collections import namedtuple

from .. import _autocast
from .._autograd.graph import Linear, Op, apply, primitive
from .._tensor import Tensor, wrap
from ._amp import to_float32
from ._common import const_like, dim_args, keepdims_shape, normalize_axes, prod, raw, xp_of
from .elementwise import cast, exp, maximum, minimum, neg
from .shape import broadcast_to, getitem, reshape

# what max(dim) and min(dim) return, as PyTorch's torch.return_types.max / .min
MaxResult = namedtuple("max", ("values", "indices"))
MinResult = namedtuple("min", ("values", "indices"))

_PARAMS = ("axes", "keepdims", "in_shape")


def _reduce_cost(self, in_shapes, out_shape, p):
    n = prod(in_shapes[0])
    return n, n + prod(out_shape)


def _expand(g, p):
    """g reshaped with the reduced axes kept, then broadcast back to the input shape."""
    if not p.keepdims:
        g = reshape(g, keepdims_shape(p.in_shape, p.axes))
    return broadcast_to(g, p.in_shape)


@primitive
class Sum(Linear):
    """out = sum of x over axes"""
    name = "sum"
    params = _PARAMS
    cost = _reduce_cost

    def forward(self, dev, p, x, out=None):
        return x.sum(axis=p.axes, keepdims=p.keepdims, out=out)

    def vjp(self, g, ins, out, p, needs):
        return (_expand(g, p),)


def sum(x, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None):
    """Sum over ``dim`` (None: all); ``axis``/``keepdims`` are accepted as aliases."""
    dim, keepdim = dim_args("sum", dim, keepdim, axis, keepdims)
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    axes = normalize_axes(dim, x.ndim)
    return apply(Sum, (x,), Sum.Params(axes, keepdim, x.shape))


def mean(x, dim=None, keepdim=False, *, axis=None, keepdims=None, dtype=None):
    """Mean over ``dim`` (None: all); an integer tensor needs ``dtype`` (as PyTorch)."""
    dim, keepdim = dim_args("mean", dim, keepdim, axis, keepdims)
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    if raw(x).dtype.kind not in "fcV":      # V: bfloat16
        raise TypeError(f"mean(): could not infer output dtype. Input dtype must be either a "
                        f"floating point or complex dtype. Got: {raw(x).dtype} (pass "
                        "dtype=gg.float32 or convert with .float())")
    axes = normalize_axes(dim, x.ndim)
    count = prod(x.shape[a] for a in axes)
    total = apply(Sum, (x,), Sum.Params(axes, keepdim, x.shape))
    return total * (1.0 / count) if count else total * float("nan")


@primitive
class Max(Op):
    """out = max of x over axes; ties share the gradient equally"""
    name = "max"
    params = _PARAMS
    save_inputs = True
    save_output = True
    cost = _reduce_cost

    def forward(self, dev, p, x, out=None):
        if x.size == 0:
            raise ValueError("max of an empty tensor")   # x: an array
        return x.max(axis=p.axes, keepdims=p.keepdims, out=out)

    def vjp(self, g, ins, out, p, needs):
        return (_expand(g, p) * _max_mask(ins[0], out, p),)

    def jvp(self, ts, ins, out, p):
        return sum(ts[0] * _max_mask(ins[0], out, p), p.axes, p.keepdims)


def _max_mask(x, out, p):
    arr = raw(x)
    peak = raw(out)
    if not p.keepdims:
        peak = peak.reshape(keepdims_shape(p.in_shape, p.axes))
    hit = (arr == peak).astype(arr.dtype)
    return const_like(hit / hit.sum(axis=p.axes, keepdims=True), x)


def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The largest value (as PyTorch): ``max(x)`` the value over all elements (ties share
    the gradient); ``max(x, dim)`` a named pair ``(values, indices)`` whose gradient goes
    to the returned index; ``max(x, other_tensor)`` the elementwise maximum."""
    if isinstance(dim, Tensor):
        return maximum(x, dim)
    dim, keepdim = dim_args("max", dim, keepdim, axis, keepdims)
    if dim is None:
        return apply(Max, (x,), Max.Params(tuple(range(x.ndim)), False, x.shape))
    return _pick_along(x, dim, keepdim, "argmax", MaxResult)


def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The smallest value: as ``max``, with ``(values, indices)`` for a ``dim``."""
    if isinstance(dim, Tensor):
        return minimum(x, dim)
    dim, keepdim = dim_args("min", dim, keepdim, axis, keepdims)
    if dim is None:
        if raw(x).dtype.kind in "bu":
            return _constant_result(x, raw(x).min())
        return neg(apply(Max, (neg(x),), Max.Params(tuple(range(x.ndim)), False, x.shape)))
    return _pick_along(x, dim, keepdim, "argmin", MinResult)


def _constant_result(x, value):
    xp = xp_of(x)
    return const_like(xp.asarray(value), x)


def _pick_along(x, dim, keepdim, arg, result):
    """The values at the arg-extreme positions along one dim, and those positions."""
    if not isinstance(dim, int):
        raise TypeError(f"max/min: dim must be an int, got {type(dim).__name__}")
    ndim = x.ndim
    axis = normalize_axes(dim, ndim)[0]
    arr = raw(x)
    xp = xp_of(x)
    if ndim == 0:
        return result(x, const_like(xp.zeros((), dtype="int64"), x))
    if arr.shape[axis] == 0:
        raise IndexError(f"max/min(): Expected reduction dim {axis} to have non-zero size, "
                         f"shape {tuple(arr.shape)}")
    idx = getattr(xp, arg)(arr, axis=axis, keepdims=True)
    index = tuple(idx if k == axis else
                  xp.arange(s).reshape((s,) + (1,) * (ndim - k - 1))
                  for k, s in enumerate(arr.shape))
    values = getitem(x, index, False)
    if not keepdim:
        squeezed = tuple(s for k, s in enumerate(arr.shape) if k != axis)
        values = reshape(values, squeezed)
        idx = idx.reshape(squeezed)
    if isinstance(x, Tensor):
        idx = wrap(x.device.adopt(idx.astype("int64", copy=False)), x.device)
    return result(values, idx)


@primitive
class LogSumExp(Op):
    """out = log(sum(exp(x))) over axes, computed stably"""
    name = "logsumexp"
    params = _PARAMS
    save_inputs = True
    save_output = True

    def cost(self, in_shapes, out_shape, p):
        n = prod(in_shapes[0])
        return 10 * n, n

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        m = x.max(axis=p.axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        value = xp.log(xp.exp(x - m).sum(axis=p.axes, keepdims=True)) + m
        if not p.keepdims:
            value = value.reshape(tuple(s for i, s in enumerate(x.shape) if i not in p.axes))
        if out is None:
            return value
        out[...] = value
        return out

    def vjp(self, g, ins, out, p, needs):
        return (_expand(g, p) * _softmax_weights(ins[0], out, p),)

    def jvp(self, ts, ins, out, p):
        return sum(ts[0] * _softmax_weights(ins[0], out, p), p.axes, p.keepdims)


def _softmax_weights(x, out, p):
    """exp(x - logsumexp(x)), differentiable in x (through out as well)."""
    return exp(x - _expand(out, p))


def logsumexp(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """log(sum(exp(x))) over ``dim`` (None: all), computed stably."""
    dim, keepdim = dim_args("logsumexp", dim, keepdim, axis, keepdims)
    if _autocast.active:
        x = to_float32(x)
    axes = normalize_axes(dim, x.ndim)
    return apply(LogSumExp, (x,), LogSumExp.Params(axes, keepdim, x.shape))
