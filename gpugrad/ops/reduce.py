"""Reductions and scans: sum, mean, nansum, nanmean, max, min, logsumexp; amax, amin,
argmax, argmin, prod, any, all, var, std, norm; cumsum, cumprod, logcumsumexp."""
from __future__ import annotations

import math
from collections import namedtuple

import numpy as np

from .. import _autocast
from .._autograd.graph import Elementwise, Linear, Op, apply, primitive
from .._tensor import Tensor, wrap
from ._amp import to_float32
from ._common import (
    computed,
    const_like,
    dim_args,
    elementwise_cost,
    keepdims_shape,
    normalize_axes,
    raw,
    refuse_host_work,
    xp_of,
)
from ._common import prod as numel
from ._derivative import not_nan, peak_share, tie_share, zero_scan
from .elementwise import abs, cast, exp, log, maximum, minimum, sqrt, to_float, where
from .linalg import nuclear_norm
from .math import sign
from .select import _pad_constant, clone, flip
from .shape import BroadcastTo, Reshape, broadcast_to, getitem, reshape

# what max(dim) and min(dim) return, as PyTorch's torch.return_types.max / .min
MaxResult = namedtuple("max", ("values", "indices"))
MinResult = namedtuple("min", ("values", "indices"))

_PARAMS = ("axes", "keepdims", "in_shape")


def _reduce_cost(self, in_shapes, out_shape, p):
    n = numel(in_shapes[0])
    return n, n + numel(out_shape)


def _expand(g, p):
    """g reshaped with the reduced axes kept, then broadcast back to the input shape: the
    primitives themselves, the shapes being valid by construction (a 0-d g, the reduction
    of everything, broadcasts as it is)."""
    shape = g.shape
    if not p.keepdims and shape:
        kept = keepdims_shape(p.in_shape, p.axes)
        g = apply(Reshape, (g,), Reshape.Params(kept, shape))
        shape = kept
    if shape == p.in_shape:
        return g
    return apply(BroadcastTo, (g,), BroadcastTo.Params(p.in_shape, shape))


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
    axes = _axes(x, dim)
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
    axes = _axes(x, dim)
    count = numel(x.shape[a] for a in axes)
    total = apply(Sum, (x,), Sum.Params(axes, keepdim, x.shape))
    return total * (1.0 / count) if count else total * float("nan")


@primitive
class NanZeroed(Elementwise):
    """out = x with its NaNs replaced by 0: what nansum and nanmean sum. Differentiated as
    PyTorch's nansum: the VJP multiplies the cotangent by the mask, so that an infinite
    one (an all-NaN slice's mean sends 1 / 0) gives NaN at the NaNs, where a selection
    would hide it behind a 0; the JVP selects (0 at the NaNs)"""
    name = "nan_zeroed"
    save_inputs = True
    broadcasting = False
    cost = elementwise_cost(2)

    def forward(self, dev, p, x, out=None):
        value = dev.xp.where(x == x, x, x.dtype.type(0))
        if out is None:
            return value
        out[...] = value
        return out

    def partials(self, ins, out, p, needs):
        return (cast(not_nan(ins[0]), raw(ins[0]).dtype),)

    def jvp(self, ts, ins, out, p):
        return where(not_nan(ins[0]), ts[0], 0)


def nansum(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Sum over ``dim`` (None: all) with NaNs counted as zero; the gradient is 0 at the
    NaNs. Integers and bools sum as int64 (as PyTorch), NaN-free by nature."""
    dim, keepdim = dim_args("nansum", dim, keepdim, axis, keepdims)
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    elif raw(x).dtype.kind in "biu":
        x = cast(x, np.int64)
    if raw(x).dtype.kind in "fcV":
        x = apply(NanZeroed, (x,))
    return apply(Sum, (x,), Sum.Params(_axes(x, dim), keepdim, x.shape))


def nanmean(x, dim=None, keepdim=False, *, dtype=None, axis=None, keepdims=None):
    """Mean over ``dim`` of the elements that are not NaN (NaN where all are); the
    gradient is g / (their count) at them, 0 at the NaNs (NaN over an all-NaN slice, as
    PyTorch's). Floating point only (as PyTorch, which checks the input's dtype before
    ``dtype`` applies)."""
    dim, keepdim = dim_args("nanmean", dim, keepdim, axis, keepdims)
    if raw(x).dtype.kind not in "fcV":
        raise TypeError(f"nanmean(): expected input to have floating point or complex dtype "
                        f"but got {raw(x).dtype}")
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    axes = _axes(x, dim)
    total = apply(Sum, (apply(NanZeroed, (x,)),), Sum.Params(axes, keepdim, x.shape))
    count = apply(Sum, (cast(not_nan(x), raw(x).dtype),), Sum.Params(axes, keepdim, x.shape))
    return total / count


@primitive
class Max(Op):
    """out = max of x over axes; ties share the gradient equally"""
    name = "max"
    params = _PARAMS
    save_inputs = True
    save_output = True
    cost = _reduce_cost

    def forward(self, dev, p, x, out=None):
        _check_nonempty(x.shape, p.axes, self.name)
        return x.max(axis=p.axes, keepdims=p.keepdims, out=out)

    def vjp(self, g, ins, out, p, needs):
        return (_expand(g, p) * _max_mask(ins[0], out, p),)

    def jvp(self, ts, ins, out, p):
        return sum(ts[0] * _max_mask(ins[0], out, p), p.axes, p.keepdims)


def _check_nonempty(shape, axes, what):
    """PyTorch's rule: reducing over a dimension of size 0 has no value (reducing an empty
    tensor over its other dimensions gives an empty result)."""
    for a in axes:
        if shape[a] == 0:
            raise ValueError(f"{what}(): Expected reduction dim {a} to have non-zero size "
                             f"(input shape {tuple(shape)})")


def _max_mask(x, out, p):
    return peak_share(x, out, p.axes, keepdims_shape(p.in_shape, p.axes))


def max(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The largest value (as PyTorch): ``max(x)`` the value over all elements (ties share
    the gradient); ``max(x, dim)`` a named pair ``(values, indices)`` whose gradient goes
    to the returned index; ``max(x, other_tensor)`` the elementwise maximum."""
    if isinstance(dim, Tensor):
        return maximum(x, dim)
    dim, keepdim = dim_args("max", dim, keepdim, axis, keepdims)
    if dim is None:
        return apply(MaxAll, (x,), Max.Params(tuple(range(x.ndim)), False, x.shape))
    return _pick_along(x, dim, keepdim, "argmax", MaxResult)


def min(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The smallest value: as ``max``, with ``(values, indices)`` for a ``dim``."""
    if isinstance(dim, Tensor):
        return minimum(x, dim)
    dim, keepdim = dim_args("min", dim, keepdim, axis, keepdims)
    if dim is None:
        if raw(x).dtype.kind in "bu":
            return _constant_result(x, raw(x).min())
        return apply(MinAll, (x,), Min.Params(tuple(range(x.ndim)), False, x.shape))
    return _pick_along(x, dim, keepdim, "argmin", MinResult)


def _constant_result(x, value):
    xp = xp_of(x)
    return const_like(xp.asarray(value), x)


def _pick_along(x, dim, keepdim, arg, result):
    """The values at the arg-extreme positions along one dim, and those positions."""
    if not isinstance(dim, int):
        raise TypeError(f"max/min: dim must be an int, got {type(dim).__name__}")
    refuse_host_work(f"{arg[3:]}(dim) (its positions)")
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
        n = numel(in_shapes[0])
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
    if x.dtype.kind not in "fcV":
        x = to_float(x)          # integers become the default float, as in PyTorch
    axes = _axes(x, dim)
    return apply(LogSumExp, (x,), LogSumExp.Params(axes, keepdim, x.shape))


# -- PyTorch's signatures: dim=, keepdim= (axis=, keepdims= accepted as aliases) ---------------


def _alias(dim, keepdim, axis, keepdims, what):
    if axis is not None:
        if dim is not None and dim != axis:
            raise TypeError(f"{what}(): got both dim={dim} and its alias axis={axis}")
        dim = axis
    if keepdims is not None:
        keepdim = keepdims
    return dim, bool(keepdim)


def _axes(x, dim):
    """The reduced axes; a 0-d tensor takes dim 0 or -1 and reduces over nothing."""
    if x.ndim == 0:
        for d in (() if dim is None else (dim,) if isinstance(dim, int) else dim):
            if int(d) not in (0, -1):
                raise IndexError(f"Dimension out of range (expected to be in range of [-1, 0],"
                                 f" but got {d})")
        return ()
    return normalize_axes(dim, x.ndim)


def _one_axis(x, dim, what):
    if not isinstance(dim, (int, np.integer)):
        raise TypeError(f"{what}(): dim must be an integer, got {type(dim).__name__}")
    axes = _axes(x, int(dim))
    return axes[0] if axes else None


def _floating_only(x, what):
    if x.dtype.kind not in "fcV":
        raise TypeError(f"{what}(): expected a floating point tensor as input, got dtype "
                        f"{x.dtype}")


# -- extremes -----------------------------------------------------------------------------------
@primitive
class Min(type(Max)):
    """out = min of x over axes; ties share the gradient equally"""
    name = "amin"

    def forward(self, dev, p, x, out=None):
        _check_nonempty(x.shape, p.axes, self.name)
        return x.min(axis=p.axes, keepdims=p.keepdims, out=out)


class _WholeExtreme:
    """``max(x)``/``min(x)`` over all elements, which PyTorch differentiates apart from
    ``amax``/``amin``: the gradient split evenly among the elements equal to the result, a
    NaN counting as equal to a NaN (its evenly_distribute_backward: the NaNs share it),
    where amax's gives every element of a slice that holds a NaN a NaN gradient"""

    def vjp(self, g, ins, out, p, needs):
        return (g * tie_share(ins[0], out),)

    def jvp(self, ts, ins, out, p):
        return sum(ts[0] * tie_share(ins[0], out), p.axes, p.keepdims)


@primitive
class MaxAll(_WholeExtreme, type(Max)):
    name = "max_all"


@primitive
class MinAll(_WholeExtreme, type(Min)):
    name = "min_all"


def amax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Largest value over ``dim`` (None: all); ties share the gradient equally."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "amax")
    axes = _axes(x, dim)
    return apply(Max, (x,), Max.Params(axes, keepdim, x.shape))


def amin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Smallest value over ``dim`` (None: all); ties share the gradient equally."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "amin")
    axes = _axes(x, dim)
    return apply(Min, (x,), Min.Params(axes, keepdim, x.shape))


def _arg_extreme(x, dim, keepdim, what, pick):
    xp = x.device.xp
    arr = raw(x)
    if dim is None:
        _check_nonempty(arr.shape, tuple(range(arr.ndim)), what)
        flat = pick(xp, arr.reshape(-1), 0).astype(np.int64)
        out = flat.reshape((1,) * arr.ndim) if keepdim else flat.reshape(())
    else:
        axis = _one_axis(x, dim, what)
        if axis is None:
            out = xp.zeros((), dtype=np.int64)
        else:
            _check_nonempty(arr.shape, (axis,), what)
            out = pick(xp, arr, axis).astype(np.int64)
            if keepdim:
                out = xp.expand_dims(out, axis)
    return computed(out, x.device)


def argmax(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The index of the largest value (of the flattened tensor when dim is None)."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "argmax")
    return _arg_extreme(x, dim, keepdim, "argmax", lambda xp, a, ax: xp.argmax(a, axis=ax))


def argmin(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """The index of the smallest value (of the flattened tensor when dim is None)."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "argmin")
    return _arg_extreme(x, dim, keepdim, "argmin", lambda xp, a, ax: xp.argmin(a, axis=ax))



# -- logical reductions -------------------------------------------------------------------------
def _logical(x, dim, keepdim, what):
    xp = x.device.xp
    axes = _axes(x, dim)
    out = getattr(xp, what)(raw(x), axis=axes, keepdims=keepdim)
    if x.dtype == np.uint8:
        out = out.astype(np.uint8)          # PyTorch keeps uint8
    return computed(xp.asarray(out), x.device)


def any(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Whether any element (over ``dim``) is nonzero, as a bool tensor."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "any")
    return _logical(x, dim, keepdim, "any")


def all(x, dim=None, keepdim=False, *, axis=None, keepdims=None):
    """Whether every element (over ``dim``) is nonzero, as a bool tensor."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "all")
    return _logical(x, dim, keepdim, "all")


# -- products -----------------------------------------------------------------------------------
_AXIS_PARAMS = ("axis", "keepdims", "in_shape")


def _expand_axis(g, p):
    if not p.keepdims:
        g = reshape(g, keepdims_shape(p.in_shape, (p.axis,)))
    return broadcast_to(g, p.in_shape)


def _shift_in(x, axis, value):
    """x moved one place along ``axis``, ``value`` entering first and the last dropping
    out (an exclusive scan from an inclusive one)."""
    widths = [(0, 0)] * x.ndim
    widths[axis] = (1, -1)
    return _pad_constant(x, tuple(widths), value)


def _others_product(x, axis):
    """The product of all the other entries along ``axis``, exact with zeros."""
    left = cumprod(_shift_in(x, axis, 1), axis)
    right = flip(cumprod(_shift_in(flip(x, axis), axis, 1), axis), axis)
    return left * right


@primitive
class Prod(Op):
    """out = product of x along one axis"""
    name = "prod"
    params = _AXIS_PARAMS
    save_inputs = True
    cost = _reduce_cost

    def forward(self, dev, p, x, out=None):
        return x.prod(axis=p.axis, keepdims=p.keepdims, out=out)

    def vjp(self, g, ins, out, p, needs):
        return (_expand_axis(g, p) * _others_product(ins[0], p.axis),)

    def jvp(self, ts, ins, out, p):
        return sum(ts[0] * _others_product(ins[0], p.axis), p.axis, p.keepdims)


def prod(x, dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None):
    """The product of the elements (along ``dim`` when given); its gradient is exact
    where some are zero."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "prod")
    if dtype is not None:
        x = cast(x, dtype)
    elif x.dtype.kind in "biu":
        x = cast(x, np.int64)              # PyTorch multiplies integers in int64
    if dim is None:
        ndim = x.ndim
        if ndim != 1:
            x = reshape(x, (-1,))
        out = apply(Prod, (x,), Prod.Params(0, False, x.shape))
        # keepdim over every dim keeps them all, of size 1 (as sum, amax, mean, ...)
        return reshape(out, (1,) * ndim) if keepdim else out
    axis_ = _one_axis(x, dim, "prod")
    if axis_ is None:
        return clone(x)
    return apply(Prod, (x,), Prod.Params(axis_, keepdim, x.shape))


# -- scans --------------------------------------------------------------------------------------
def _scan_cost(self, in_shapes, out_shape, p):
    n = numel(out_shape)
    return n, 2 * n


def _reverse_cumsum(g, axis):
    return flip(cumsum(flip(g, axis), axis), axis)


@primitive
class Cumsum(Linear):
    """out[..., j, ...] = sum of x[..., :j + 1, ...] along an axis"""
    name = "cumsum"
    params = ("axis",)
    cost = _scan_cost

    def forward(self, dev, p, x, out=None):
        return dev.xp.cumsum(x, axis=p.axis, out=out)

    def vjp(self, g, ins, out, p, needs):
        return (_reverse_cumsum(g, p.axis),)


def _scan_axis(x, dim, what):
    if dim is None:
        raise TypeError(f"{what}() missing required argument 'dim'")
    return _one_axis(x, dim, what)


def cumsum(x, dim=None, dtype=None, *, axis=None):
    """Running sums along ``dim`` (integers and bools sum as int64, as PyTorch)."""
    dim, _ = _alias(dim, False, axis, None, "cumsum")
    if dtype is not None:
        x = cast(x, dtype)
    elif x.dtype.kind in "biu":
        x = cast(x, np.int64)
    axis_ = _scan_axis(x, dim, "cumsum")
    if axis_ is None:
        return clone(x)
    return apply(Cumsum, (x,), Cumsum.Params(axis_))


@primitive
class Cumprod(Op):
    """out[..., j, ...] = product of x[..., :j + 1, ...] along an axis; its derivatives
    are exact where x has zeros"""
    name = "cumprod"
    params = ("axis",)
    save_inputs = True
    save_output = True
    cost = _scan_cost

    def forward(self, dev, p, x, out=None):
        return dev.xp.cumprod(x, axis=p.axis, out=out)

    def _parts(self, x, out, axis):
        """Masks of the zeros (constants), x with its zeros made 1, the exclusive
        products, and the products after the first zero of each line."""
        before = zero_scan(x, axis, "before")               # no zero up to here
        first = zero_scan(x, axis, "first")                 # the first zero of its line
        zero = zero_scan(x, axis, "zero")
        safe = where(zero, 1, x)
        exclusive = _shift_in(out, axis, 1)
        after = cumprod(where(zero_scan(x, axis, "before_or_first"), 1, x), axis)
        return zero, before, first, safe, exclusive, after

    def vjp(self, g, ins, out, p, needs):
        x = ins[0]
        zero, before, first, safe, exclusive, after = self._parts(x, out, p.axis)
        regular = _reverse_cumsum(g * out, p.axis) / safe
        at_first = exclusive * _reverse_cumsum(g * after, p.axis)
        return (where(zero, where(first, at_first, 0), regular),)

    def jvp(self, ts, ins, out, p):
        x = ins[0]
        t = ts[0]
        zero, before, first, safe, exclusive, after = self._parts(x, out, p.axis)
        regular = out * cumsum(t / safe, p.axis)
        from_first = cumsum(where(first, t * exclusive, 0), p.axis) * after
        return where(before, regular, from_first)


def cumprod(x, dim=None, dtype=None, *, axis=None):
    """Running products along ``dim``."""
    dim, _ = _alias(dim, False, axis, None, "cumprod")
    if dtype is not None:
        x = cast(x, dtype)
    elif x.dtype.kind in "biu":
        x = cast(x, np.int64)
    axis_ = _scan_axis(x, dim, "cumprod")
    if axis_ is None:
        return clone(x)
    return apply(Cumprod, (x,), Cumprod.Params(axis_))


def _signed_logs(v):
    """log|v| where v > 0 and where v < 0, a hugely negative float elsewhere: v split in
    two positive parts, in log space (a quarter of the lowest float, so that adding x or
    out to it cannot overflow)."""
    lowest = float(np.finfo(raw(v).dtype).min) / 4
    log_abs = log(where(v == 0, 1, abs(v)))
    return where(v > 0, log_abs, lowest), where(v < 0, log_abs, lowest)


@primitive
class LogCumSumExp(Op):
    """out[..., j, ...] = log of the sum of exp(x[..., :j + 1, ...]), computed stably"""
    name = "logcumsumexp"
    params = ("axis",)
    save_inputs = True
    save_output = True

    def cost(self, in_shapes, out_shape, p):
        n = numel(out_shape)
        return 10 * n, 2 * n

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        accumulate = getattr(xp.logaddexp, "accumulate", None)
        if accumulate is not None and xp is np:
            return accumulate(x, axis=p.axis, out=out)
        top = x.max(axis=p.axis, keepdims=True)
        top = xp.where(xp.isfinite(top), top, 0)
        value = xp.log(xp.cumsum(xp.exp(x - top), axis=p.axis)) + top
        if out is None:
            return value
        out[...] = value
        return out

    def vjp(self, g, ins, out, p, needs):
        # sum over j >= k of g_j exp(x_k - out_j), with g split by sign so that every
        # sum is a log-sum-exp (PyTorch's formula)
        x = ins[0]
        pos, neg = _signed_logs(g)

        def reverse_lcse(v):
            return flip(logcumsumexp(flip(v, p.axis), p.axis), p.axis)
        return (exp(reverse_lcse(pos - out) + x) - exp(reverse_lcse(neg - out) + x),)

    def jvp(self, ts, ins, out, p):
        x = ins[0]
        pos, neg = _signed_logs(ts[0])
        return (exp(logcumsumexp(pos + x, p.axis) - out)
                - exp(logcumsumexp(neg + x, p.axis) - out))


def logcumsumexp(x, dim=None, *, axis=None):
    """log(cumsum(exp(x))) along ``dim``, without overflow."""
    dim, _ = _alias(dim, False, axis, None, "logcumsumexp")
    _floating_only(x, "logcumsumexp")
    axis_ = _scan_axis(x, dim, "logcumsumexp")
    if axis_ is None:
        return clone(x)
    return apply(LogCumSumExp, (x,), LogCumSumExp.Params(axis_))


# -- moments --------------------------------------------------------------------------------------
def _moments(x, dim, unbiased, keepdim, correction, axis, keepdims, what):
    if _autocast.active:
        x = to_float32(x)
    if isinstance(dim, bool):                  # the legacy var(x, unbiased)
        dim, unbiased = None, dim
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, what)
    if x.dtype.kind not in "fcV":
        raise TypeError(f"{what}(): std and var only support floating point and complex "
                        f"dtypes, got {x.dtype}")
    if unbiased is not None and correction is not None:
        raise TypeError(f"{what}(): give correction= or unbiased=, not both")
    c = (1 if unbiased is None or unbiased else 0) if correction is None else correction
    axes = _axes(x, dim)
    n = numel(x.shape[a] for a in axes)
    total = apply(Sum, (x,), Sum.Params(axes, True, x.shape))
    mean = total * (1.0 / n) if n else total * math.nan
    centred = x - mean
    squares = apply(Sum, (centred * centred,), Sum.Params(axes, keepdim, x.shape))
    # PyTorch clamps the divisor at 0: inf, or nan where the squares sum to 0
    factor = 1.0 / (n - c) if n - c > 0 else math.inf
    var = squares * factor
    if not keepdim:
        mean = reshape(mean, var.shape)
    return var, mean


def var(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None):
    """The variance over ``dim`` with ``correction`` (1 by default: Bessel's)."""
    return _moments(x, dim, unbiased, keepdim, correction, axis, keepdims, "var")[0]


def std(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=None):
    """The standard deviation over ``dim`` with ``correction`` (1 by default)."""
    return sqrt(_moments(x, dim, unbiased, keepdim, correction, axis, keepdims, "std")[0])


def var_mean(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
             keepdims=None):
    """(var, mean) over ``dim``."""
    return _moments(x, dim, unbiased, keepdim, correction, axis, keepdims, "var_mean")


def std_mean(x, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
             keepdims=None):
    """(std, mean) over ``dim``."""
    v, m = _moments(x, dim, unbiased, keepdim, correction, axis, keepdims, "std_mean")
    return sqrt(v), m


# -- norms --------------------------------------------------------------------------------------
@primitive
class Norm(Op):
    """out = (sum |x|^p)^(1/p) over axes (p finite, not 0 or 1); the gradient is 0 where
    the norm is 0, as PyTorch"""
    name = "norm"
    params = ("p", "axes", "keepdims", "in_shape")
    save_inputs = True
    save_output = True

    def cost(self, in_shapes, out_shape, p):
        n = numel(in_shapes[0])
        return 3 * n, n + numel(out_shape)

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        if p.p == 2:
            value = xp.sqrt(xp.sum(x * x, axis=p.axes, keepdims=p.keepdims))
        else:
            value = xp.sum(xp.abs(x) ** p.p, axis=p.axes, keepdims=p.keepdims) ** (1 / p.p)
        if out is None:
            return value
        out[...] = value
        return out

    def _factor(self, x, out, p):
        """d out / d x (out broadcast back to x's shape)."""
        full = out if p.keepdims else reshape(out, keepdims_shape(p.in_shape, p.axes))
        safe = where(full == 0, 1, full)
        if p.p == 2:
            return x / safe
        return sign(x) * (abs(x) / safe) ** (p.p - 1)

    def vjp(self, g, ins, out, p, needs):
        g = g if p.keepdims else reshape(g, keepdims_shape(p.in_shape, p.axes))
        return (g * self._factor(ins[0], out, p),)

    def jvp(self, ts, ins, out, p):
        return sum(ts[0] * self._factor(ins[0], out, p), p.axes, p.keepdims)


def norm(x, p="fro", dim=None, keepdim=False, dtype=None, *, axis=None, keepdims=None):
    """The vector p-norm over ``dim`` (all elements when None): p = 2 or 'fro' (default),
    1, inf, -inf, 0 or any other number; or the nuclear norm, p='nuc', of the matrices over
    the two dims ``dim`` (of a 2-D x when None), as torch.norm."""
    dim, keepdim = _alias(dim, keepdim, axis, keepdims, "norm")
    if _autocast.active:
        x = to_float32(x)
    _floating_only(x, "norm")
    if dtype is not None:
        x = cast(x, dtype)
    if p == "nuc":
        if dim is None:
            if x.ndim != 2:
                raise ValueError(f"norm(): p='nuc' without dim needs a 2-D tensor, got shape "
                                 f"{tuple(x.shape)} (give the two matrix dims as dim=)")
            dim = (0, 1)
        if isinstance(dim, (int, np.integer)) or len(dim) != 2:
            raise ValueError(f"norm(): p='nuc' needs dim to be a 2-tuple, got {dim!r}")
        return nuclear_norm(x, tuple(dim), keepdim)
    if p == "fro":
        if dim is not None and not isinstance(dim, (int, np.integer)) and len(dim) > 2:
            raise ValueError(f"norm(): p='fro' takes at most two dims (a matrix norm), got "
                             f"dim={tuple(dim)!r}")
        p = 2
    elif isinstance(p, str):
        raise ValueError(f"norm(): p={p!r} is not supported (numbers, inf, 'fro' and 'nuc' "
                         "are)")
    axes = _axes(x, dim)
    if p == math.inf:
        return apply(Max, (abs(x),), Max.Params(axes, keepdim, x.shape))
    if p == -math.inf:
        return apply(Min, (abs(x),), Min.Params(axes, keepdim, x.shape))
    if p == 1:
        return apply(Sum, (abs(x),), Sum.Params(axes, keepdim, x.shape))
    if p == 0:
        nonzero = const_like(xp_of(x).not_equal(raw(x), 0).astype(x.dtype), x)
        return apply(Sum, (nonzero,), Sum.Params(axes, keepdim, x.shape))
    return apply(Norm, (x,), Norm.Params(float(p), axes, keepdim, tuple(x.shape)))

