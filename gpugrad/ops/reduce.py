"""Reductions: sum, mean, max, logsumexp."""
from __future__ import annotations

import numpy as np

from .._graph import Op, apply
from ._common import const_like, keepdims_shape, normalize_axes
from .shape import broadcast_to, reshape


def _reduce_cost(in_shapes, out_shape, p):
    n = int(np.prod(in_shapes[0]))
    return n, n + int(np.prod(out_shape))


def _expand(g, p):
    """g reshaped with the reduced axes kept, then broadcast back to the input shape."""
    axes, keepdims, in_shape = p
    if not keepdims:
        g = reshape(g, keepdims_shape(in_shape, axes))
    return broadcast_to(g, in_shape)


class Sum(Op):
    """out = sum of x over axes"""
    name = "sum"
    cost = staticmethod(_reduce_cost)

    def forward(dev, p, x):
        return x.sum(axis=p[0], keepdims=p[1])

    def vjp(g, ins, out, p, needs):
        return (_expand(g, p),)

    def jvp(ts, ins, out, p):
        return sum(ts[0], p[0], p[1])


def sum(x, axis=None, keepdims=False):
    """Sum over ``axis`` (None: all), as NumPy."""
    axes = normalize_axes(axis, x.ndim)
    return apply(Sum, (x,), (axes, bool(keepdims), x.shape))


def mean(x, axis=None, keepdims=False):
    """Mean over ``axis`` (None: all), as NumPy."""
    axes = normalize_axes(axis, x.ndim)
    count = int(np.prod([x.shape[a] for a in axes]))
    total = apply(Sum, (x,), (axes, bool(keepdims), x.shape))
    return total * (1.0 / count) if count else total * float("nan")


class Max(Op):
    """out = max of x over axes; ties share the gradient equally"""
    name = "max"
    save_inputs = True
    save_output = True
    cost = staticmethod(_reduce_cost)

    def forward(dev, p, x):
        if x.size == 0:
            raise ValueError("max of an empty tensor")
        return x.max(axis=p[0], keepdims=p[1])

    def vjp(g, ins, out, p, needs):
        return (_expand(g, p) * _max_mask(ins[0], out, p),)

    def jvp(ts, ins, out, p):
        return sum(ts[0] * _max_mask(ins[0], out, p), p[0], p[1])


def _max_mask(x, out, p):
    axes, keepdims, in_shape = p
    arr = x._data
    peak = out._data if keepdims else out._data.reshape(keepdims_shape(in_shape, axes))
    hit = (arr == peak).astype(arr.dtype)
    return const_like(hit / hit.sum(axis=axes, keepdims=True), x)


def max(x, axis=None, keepdims=False):
    """Largest value over ``axis`` (values only, as NumPy)."""
    axes = normalize_axes(axis, x.ndim)
    return apply(Max, (x,), (axes, bool(keepdims), x.shape))


class LogSumExp(Op):
    """out = log(sum(exp(x))) over axes, computed stably"""
    name = "logsumexp"
    save_inputs = True
    save_output = True
    cost = staticmethod(lambda i, o, p: (int(np.prod(i[0])) * 10, int(np.prod(i[0]))))

    def forward(dev, p, x):
        xp = dev.xp
        axes, keepdims, _ = p
        m = x.max(axis=axes, keepdims=True)
        m = xp.where(xp.isfinite(m), m, 0)
        out = xp.log(xp.exp(x - m).sum(axis=axes, keepdims=True)) + m
        return out if keepdims else out.reshape(tuple(
            s for i, s in enumerate(x.shape) if i not in axes))

    def vjp(g, ins, out, p, needs):
        return (_expand(g, p) * _softmax_weights(ins[0], out, p),)

    def jvp(ts, ins, out, p):
        return sum(ts[0] * _softmax_weights(ins[0], out, p), p[0], p[1])


def _softmax_weights(x, out, p):
    """exp(x - logsumexp(x)), differentiable in x (through out as well)."""
    from .elementwise import exp
    return exp(x - _expand(out, p))


def logsumexp(x, axis=None, keepdims=False):
    axes = normalize_axes(axis, x.ndim)
    return apply(LogSumExp, (x,), (axes, bool(keepdims), x.shape))
