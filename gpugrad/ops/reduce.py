"""Reductions: sum, mean, max, logsumexp."""
from __future__ import annotations

from .. import _autocast
from .._autograd.graph import Linear, Op, apply, primitive
from ._amp import to_float32
from ._common import const_like, keepdims_shape, normalize_axes, prod, raw
from .elementwise import exp
from .shape import broadcast_to, reshape

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


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all), as NumPy."""
    if _autocast.active:
        x = to_float32(x)
    axes = normalize_axes(axis, x.ndim)
    return apply(Sum, (x,), Sum.Params(axes, bool(keepdims), x.shape))


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (None: all), as NumPy."""
    if _autocast.active:
        x = to_float32(x)
    axes = normalize_axes(axis, x.ndim)
    count = prod(x.shape[a] for a in axes)
    total = apply(Sum, (x,), Sum.Params(axes, bool(keepdims), x.shape))
    scale = 1.0 / count if count else float("nan")
    if x.dtype.kind == "V":
        # bfloat16: ml_dtypes makes bfloat16 times a Python float a float32; a typed
        # scalar keeps the dtype
        scale = x.dtype.type(scale)
    return total * scale


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
            raise ValueError("max of an empty tensor")
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


def max(x, axis=None, keepdims=False):
    """Largest value over ``axis`` (values only, as NumPy)."""
    axes = normalize_axes(axis, x.ndim)
    return apply(Max, (x,), Max.Params(axes, bool(keepdims), x.shape))


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


def logsumexp(x, axis=None, keepdims=False):
    if _autocast.active:
        x = to_float32(x)
    axes = normalize_axes(axis, x.ndim)
    return apply(LogSumExp, (x,), LogSumExp.Params(axes, bool(keepdims), x.shape))
