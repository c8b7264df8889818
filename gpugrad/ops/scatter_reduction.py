"""scatter_reduce, as PyTorch: src reduced into x at index along a dim with "sum", "prod",
"mean", "amax" or "amin", x's own value taking part or not (``include_self``).

One primitive does the forward in its kernel (ufunc ``at`` on the index, which is a
parameter, as scatter_add's is: gg.compile replays it with the step's index); its
derivatives are PyTorch's (derivatives.yaml, scatter_reduce_backward) written with ops,
their masks and weights computed by a piecewise-constant op of their own, so that they
too are recorded and replayed, and differentiable again (prod's through itself).
"""
from __future__ import annotations

import numpy as np

from .._autograd.graph import Op, apply, primitive
from .._tensor import Tensor
from ._common import prod as numel
from ._common import shape_str
from ._derivative import _Derivative, zero_mask, zeros_of
from .elementwise import where
from .select import ScatterAdd, _along, _check_gather, _dim, _index_of, _into
from .shape import getitem, reshape

REDUCES = ("sum", "prod", "mean", "amax", "amin")
# names PyTorch also takes, undocumented
_ALIASES = {"max": "amax", "min": "amin"}


def _identity(reduce, dtype):
    """The value a slot starts from when x's own value takes no part."""
    if reduce in ("sum", "mean"):
        return 0
    if reduce == "prod":
        return 1
    if dtype.kind == "b":
        return reduce == "amin"
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min if reduce == "amax" else info.max
    return -np.inf if reduce == "amax" else np.inf


_UFUNCS = {"sum": "add", "mean": "add", "prod": "multiply", "amax": "maximum",
           "amin": "minimum"}


def _reduce_at(xp, how, target, index, values):
    """target[index] = how(target[index], values), repeated indices each applied: the
    ufunc's ``at`` where the array module has it, else in rounds of distinct positions."""
    ufunc = getattr(xp, how)
    at = getattr(ufunc, "at", None)
    if at is not None:
        try:
            return at(target, index, values)
        except (NotImplementedError, TypeError):
            pass
    _reduce_in_rounds(xp, ufunc, target, index, values)


def _reduce_in_rounds(xp, ufunc, target, index, values):
    """The same without ``at``: the writes sorted by position and applied one rank of
    each position's run at a time, so that no round writes a position twice (as many
    rounds as the most repeated position has writes; reading that count syncs)."""
    flat = xp.ravel_multi_index(tuple(xp.broadcast_to(i, values.shape).reshape(-1)
                                      for i in index), target.shape)
    vals = values.reshape(-1)
    order = xp.argsort(flat, kind="stable")
    flat, vals = flat[order], vals[order]
    n = flat.size
    if n == 0:
        return
    starts = xp.ones(n, dtype=bool)
    starts[1:] = flat[1:] != flat[:-1]
    rank = xp.arange(n) - xp.flatnonzero(starts)[xp.cumsum(starts) - 1]
    view = target.reshape(-1)
    for r in range(int(rank.max()) + 1):
        pick = rank == r
        spots = flat[pick]
        view[spots] = ufunc(view[spots], vals[pick])


@primitive
class ScatterReduce(Op):
    """out = x with src reduced in at index (``reduce``: sum, prod, mean, amax, amin),
    x's value taking part where ``include_self``"""
    name = "scatter_reduce"
    params = ("index", "reduce", "include_self")
    save_inputs = True
    save_output = True

    def cost(self, in_shapes, out_shape, p):
        return numel(in_shapes[1]), 2 * numel(out_shape) + numel(in_shapes[1])

    def forward(self, dev, p, x, src, out=None):
        xp = dev.xp
        out = x.copy() if out is None else _into(out, x)
        if not p.include_self:
            out[p.index] = _identity(p.reduce, x.dtype)
        _reduce_at(xp, _UFUNCS[p.reduce], out, p.index, src)
        if p.reduce == "mean":
            count = _count(xp, x.shape, p)
            if out.dtype.kind in "fcV":
                xp.divide(out, count, out=out)
            else:
                xp.floor_divide(out, count, out=out)      # PyTorch rounds down
        return out

    def vjp(self, g, ins, out, p, needs):
        f_self, f_src = _factors(ins, out, p, needs)
        gx = gs = None
        if needs[0]:
            gx = _masked(g if f_self is None else g * f_self, ins[0], p)
        if needs[1]:
            picked = getitem(g, p.index, False)
            gs = picked if f_src is None else picked * f_src
        return gx, gs

    def jvp(self, ts, ins, out, p):
        t_self, t_src = ts
        f_self, f_src = _factors(ins, out, p, (t_self is not None, t_src is not None))
        total = None
        if t_self is not None:
            total = _masked(t_self if f_self is None else t_self * f_self, ins[0], p)
        if t_src is not None:
            part = t_src if f_src is None else t_src * f_src
            spread = apply(ScatterAdd, (zeros_of(ins[0]), part), ScatterAdd.Params(p.index))
            total = spread if total is None else total + spread
        return total


def _count(xp, shape, p):
    """How many values each slot of the result reduces (at least 1)."""
    count = xp.full(shape, 1 if p.include_self else 0, dtype=np.int64)
    shape = np.broadcast_shapes(*(i.shape for i in p.index))
    _reduce_at(xp, "add", count, p.index, xp.ones(shape, dtype=np.int64))
    return xp.maximum(count, 1, out=count)


@primitive
class ScatterWeights(_Derivative):
    """Piecewise-constant arrays of scatter_reduce's derivatives (``which``): "kept" (bool,
    x's slots that no src reaches), "count" (values per slot, in x's dtype), "share_self"
    and "share_src" (amax/amin: 1 / the number of values that attain the result, at x's
    and at src's, x's own only where it takes part), "single_zero" (bool, at src: the one
    zero among the src values of its slot)"""
    name = "scatter_reduce_weights"
    params = ("index", "include_self", "which")

    def forward(self, dev, p, x, src=None, result=None, out=None):
        xp = dev.xp
        which = p.which
        if which == "kept":
            value = xp.ones(x.shape, dtype=bool)
            value[p.index] = False
        elif which == "count":
            value = _count(xp, x.shape, p).astype(x.dtype)
        elif which == "single_zero":
            zeros = xp.zeros(x.shape, dtype=np.int64)
            is_zero = src == 0
            _reduce_at(xp, "add", zeros, p.index, is_zero.astype(np.int64))
            value = is_zero & (zeros[p.index] == 1)
        else:
            hit_self = x == result
            if not p.include_self:
                hit_self[p.index] = False
            hit_src = src == result[p.index]
            count = hit_self.astype(x.dtype)
            _reduce_at(xp, "add", count, p.index, hit_src.astype(x.dtype))
            with np.errstate(invalid="ignore", divide="ignore"):
                if which == "share_self":
                    value = hit_self / count
                else:
                    value = hit_src / count[p.index]
            value = value.astype(x.dtype, copy=False)
        if out is None:
            return value
        out[...] = value
        return out


def _weights(which, p, *arrays):
    return apply(ScatterWeights, arrays, ScatterWeights.Params(p.index, p.include_self, which))


def _masked(part, x, p):
    """``part`` with x's slots that src reaches zeroed when x takes no part there."""
    if p.include_self:
        return part
    return where(_weights("kept", p, x), part, 0)


def _factors(ins, out, p, needs):
    """(d out / d x, d out[index] / d src) as arrays to multiply by (None: 1)."""
    x, src = ins
    if p.reduce == "sum":
        return None, None
    if p.reduce == "mean":
        inverse = 1 / _weights("count", p, x)
        return inverse, (getitem(inverse, p.index, False) if needs[1] else None)
    if p.reduce in ("amax", "amin"):
        return (_weights("share_self", p, x, src, out) if needs[0] else None,
                _weights("share_src", p, x, src, out) if needs[1] else None)
    # prod: the product of the others, exact where there are zeros (PyTorch's formula)
    f_self = f_src = None
    if needs[0]:
        safe = where(zero_mask(x), 1, x)
        f_self = apply(ScatterReduce, (safe, src), p) / safe
    if needs[1]:
        single = _weights("single_zero", p, x, src)
        without = apply(ScatterReduce, (x, where(single, 1, src)), p)
        f_src = where(single, getitem(without, p.index, False),
                      getitem(out, p.index, False) / where(zero_mask(src), 1, src))
    return f_self, f_src


def scatter_reduce(x, dim, index, src, reduce, *, include_self=True):
    """x with the values of ``src`` reduced in at ``index`` along ``dim``, as
    torch.scatter_reduce: ``reduce`` is "sum", "prod", "mean", "amax" or "amin"; with
    ``include_self=False`` x's own value takes no part where src reaches it. "mean" counts
    x's value when it takes part, and divides integers rounding down. Gradients are
    PyTorch's: for amax/amin split evenly among the values that attain the result."""
    name = _ALIASES.get(reduce, reduce) if isinstance(reduce, str) else reduce
    if name not in REDUCES:
        raise ValueError(f"scatter_reduce(): reduce argument must be either sum, prod, mean, "
                         f"amax or amin, got {reduce!r}")
    if not isinstance(src, Tensor):
        raise TypeError(f"scatter_reduce(): src must be a Tensor, got {type(src).__name__}")
    if src.dtype != x.dtype:
        raise TypeError(f"scatter_reduce(): expected self.dtype to be equal to src.dtype, got "
                        f"{x.dtype} and {src.dtype}")
    d = _dim(dim, x.ndim)
    arr = _index_of(index, x)
    _check_gather(x, d, arr, "scatter_reduce")
    if src.ndim != arr.ndim or any(a > s for a, s in zip(arr.shape, src.shape)):
        raise ValueError(f"scatter_reduce(): index of shape {shape_str(arr.shape)} does not "
                         f"fit src of shape {shape_str(src.shape)}")
    if src.shape != arr.shape:
        src = getitem(src, tuple(slice(0, n) for n in arr.shape), True)
    if x.ndim == 0:
        out = apply(ScatterReduce, (reshape(x, (1,)), reshape(src, (-1,))),
                    ScatterReduce.Params((arr.reshape(-1),), name, bool(include_self)))
        return reshape(out, ())
    return apply(ScatterReduce, (x, src),
                 ScatterReduce.Params(_along(arr, d, x.device.xp), name, bool(include_self)))
