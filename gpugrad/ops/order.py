"""Order statistics and distinct values, as PyTorch: median, nanmedian, mode; unique,
unique_consecutive.

``median(x)`` over all elements is a primitive (its kernel sorts; its gradient is split
evenly among the elements equal to the result, PyTorch's rule), so a compiled step replays
it. Along a dim the positions are computed on the host from the data, as ``max(dim)``'s
are: the values are gathered at them (the gradient goes to the returned index), and
gg.compile refuses them while recording. ``unique``'s shape depends on the data: computed
on the host, refused while recording, and not differentiable (as in PyTorch, where the
result requires grad and backward raises).
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from .._autograd.graph import Op, apply, primitive
from ._common import computed, raw, refuse_host_work, xp_of
from ._derivative import tie_share
from .select import _dim, clone, gather
from .shape import reshape

# torch.return_types.median / .nanmedian / .mode
MedianResult = namedtuple("median", ("values", "indices"))
NanMedianResult = namedtuple("nanmedian", ("values", "indices"))
ModeResult = namedtuple("mode", ("values", "indices"))


def _numeric_only(x, what):
    if x.dtype == np.bool_:
        raise TypeError(f"{what}(): not implemented for dtype bool (as in PyTorch); convert "
                        "with .int() or .float()")


def _is_float(arr):
    return arr.dtype.kind in "fcV"


# -- median over all elements ---------------------------------------------------------------
@primitive
class Median(Op):
    """out = the lower median of all elements of x (NaN if any is NaN; with ``skip_nan``
    the lower median of those that are not, NaN if none is); the gradient is split evenly
    among the elements equal to it"""
    name = "median"
    params = ("skip_nan",)
    save_inputs = True
    save_output = True

    def cost(self, in_shapes, out_shape, p):
        n = int(np.prod(in_shapes[0]))
        return n * max(int(np.log2(max(n, 2))), 1), n

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        flat = x.reshape(-1)
        n = flat.size
        if n == 0:
            value = xp.full((), np.nan if _is_float(x) else 0, dtype=x.dtype)
        elif not _is_float(x):
            value = xp.partition(flat, (n - 1) // 2)[(n - 1) // 2]
        else:
            ordered = xp.sort(flat)                      # NaNs last
            valid = xp.count_nonzero(flat == flat)
            if p.skip_nan:
                at = xp.maximum(valid - 1, 0) // 2       # all NaN: position 0, a NaN
            else:
                at = xp.where(valid < n, n - 1, (n - 1) // 2)   # any NaN: a NaN
            value = xp.take(ordered, at)
        if out is None:
            return xp.asarray(value, dtype=x.dtype)
        out[...] = value
        return out

    def vjp(self, g, ins, out, p, needs):
        return (g * tie_share(ins[0], out),)

    def jvp(self, ts, ins, out, p):
        from .reduce import sum
        return sum(ts[0] * tie_share(ins[0], out))


def _selection_along(x, dim, what, refused):
    """(array, its module, the dim, the dim's size) for a statistic that picks one element
    along ``dim`` with positions computed on the host (gg.compile refuses it while
    recording: ``refused`` names it), or None for a 0-d x (its own value, at index 0)."""
    refuse_host_work(refused)
    d = _dim(dim, x.ndim)
    if x.ndim == 0:
        return None
    arr = raw(x)
    n = arr.shape[d]
    if n == 0:
        raise IndexError(f"{what}(): Expected reduction dim {d} to have non-zero size "
                         f"(input shape {tuple(arr.shape)})")
    return arr, xp_of(x), d, n


def _median(x, dim, keepdim, skip_nan, what, result):
    _numeric_only(x, what)
    if dim is None:
        return apply(Median, (x,), Median.Params(bool(skip_nan)))
    along = _selection_along(x, dim, what, f"{what}(dim) (its positions)")
    if along is None:
        return result(clone(x), _zero_index(x))
    arr, xp, d, n = along
    order = xp.argsort(arr, axis=d, kind="stable")      # NaNs last, ties in index order
    k = (n - 1) // 2
    if _is_float(arr):
        valid = (arr == arr).sum(axis=d, keepdims=True)
        if skip_nan:
            at = xp.maximum(valid - 1, 0) // 2
        else:
            at = xp.where(valid < n, valid, k)          # a NaN: the first one
    else:
        at = xp.full(order.shape[:d] + (1,) + order.shape[d + 1:], k, dtype=np.int64)
    idx = xp.take_along_axis(order, at, axis=d).astype(np.int64, copy=False)
    return _pick(x, d, idx, keepdim, result)


def _zero_index(x):
    return computed(xp_of(x).zeros((), dtype=np.int64), x.device)


def _pick(x, d, idx, keepdim, result):
    """The values of x at the positions ``idx`` (kept dims) along ``d`` and the positions:
    a value-selecting reduction, whose gradient goes to the picked elements."""
    indices = computed(idx, x.device)
    values = gather(x, d, indices)
    if not keepdim:
        shape = tuple(s for k, s in enumerate(values.shape) if k != d)
        values = reshape(values, shape)
        indices = reshape(indices, shape)
    return result(values, indices)


def median(x, dim=None, keepdim=False):
    """The lower median: ``median(x)`` of all elements (NaN if any is NaN; the gradient
    split evenly among the elements equal to it), ``median(x, dim)`` a named pair
    ``(values, indices)`` along ``dim`` whose gradient goes to the returned index. Among
    ties the index is that of the median in a stable sort, as PyTorch's CPU gives it
    (PyTorch documents it as unspecified)."""
    return _median(x, dim, keepdim, False, "median", MedianResult)


def nanmedian(x, dim=None, keepdim=False):
    """``median`` ignoring NaNs: the lower median of the values that are not NaN (NaN
    where all are)."""
    return _median(x, dim, keepdim, True, "nanmedian", NanMedianResult)


# -- mode -------------------------------------------------------------------------------------
def _same(xp, a, b):
    """a == b, NaN equal to NaN."""
    eq = a == b
    if _is_float(a):
        eq |= (a != a) & (b != b)
    return eq


def _run_starts(xp, starts):
    """For each position of a 1-D bool array of run starts (the first one true), the
    position where its run starts (a gather by run number: no scan but cumsum, which
    every array module has)."""
    return xp.flatnonzero(starts)[xp.cumsum(starts) - 1]


def mode(x, dim=-1, keepdim=False):
    """(values, indices): the most frequent value along ``dim`` (the smallest among equally
    frequent ones) and the index of its last occurrence (PyTorch's CPU rule for up to 16
    elements; beyond, PyTorch's index follows its unstable sort). NaNs count as one value.
    The gradient goes to the returned index."""
    along = _selection_along(x, dim, "mode", "mode (its positions)")
    if along is None:
        return ModeResult(clone(x), _zero_index(x))
    arr, xp, d, n = along
    lines = xp.moveaxis(arr, d, -1)
    order = xp.argsort(lines, axis=-1, kind="stable")
    ordered = xp.take_along_axis(lines, order, axis=-1)
    starts = xp.ones(ordered.shape, dtype=bool)
    starts[..., 1:] = ~_same(xp, ordered[..., 1:], ordered[..., :-1])
    pos = xp.arange(n)
    run_start = _run_starts(xp, starts.reshape(-1)).reshape(starts.shape) % n
    ends = xp.ones(ordered.shape, dtype=bool)
    ends[..., :-1] = starts[..., 1:]
    length = xp.where(ends, pos - run_start + 1, 0)
    best = xp.argmax(length, axis=-1)[..., None]        # the first longest run: the smallest
    idx = xp.take_along_axis(order, best, axis=-1).astype(np.int64, copy=False)
    return _pick(x, d, xp.moveaxis(idx, -1, d), keepdim, ModeResult)


# -- distinct values ------------------------------------------------------------------------
@primitive
class Unique(Op):
    """out = the distinct values of x (flattened, or the distinct slices along ``axis``),
    sorted (or those differing from their predecessor, ``consecutive``); no derivative"""
    name = "unique"
    params = ("axis", "consecutive")

    def cost(self, in_shapes, out_shape, p):
        n = int(np.prod(in_shapes[0]))
        return n * max(int(np.log2(max(n, 2))), 1), 2 * n

    def forward(self, dev, p, x, out=None):
        value = _distinct(dev.xp, x, p.axis, p.consecutive, False, False)[0]
        if out is None:
            return value
        out[...] = value
        return out

    def vjp(self, g, ins, out, p, needs):
        raise NotImplementedError("the derivative for 'unique' is not implemented (as in "
                                  "PyTorch): detach the input first")

    def jvp(self, ts, ins, out, p):
        raise NotImplementedError("the forward-mode derivative for 'unique' is not "
                                  "implemented (as in PyTorch)")


def _distinct(xp, arr, axis, consecutive, inverse, counts):
    """(values, inverse or None, counts or None): the sorted distinct elements (or slices
    along ``axis``) of arr, each NaN distinct as in PyTorch; with ``consecutive``, the runs
    of equal neighbours in order."""
    if axis is None:
        lines = arr.reshape(-1, 1)
    else:
        moved = xp.moveaxis(arr, axis, 0)
        lines = moved.reshape(moved.shape[0], int(np.prod(moved.shape[1:])))
    m = lines.shape[0]
    if consecutive or m == 0:
        order = xp.arange(m)
    elif lines.shape[1] == 1:
        order = xp.argsort(lines[:, 0], kind="stable")
    else:
        order = xp.lexsort(lines.T[::-1])               # by the first column, then the next
    ordered = lines[order]
    first = xp.ones(m, dtype=bool)
    if m > 1:
        first[1:] = (ordered[1:] != ordered[:-1]).any(axis=1)
    values = ordered[first]
    if axis is None:
        values = values.reshape(-1)
    else:
        values = xp.moveaxis(values.reshape((values.shape[0],) + moved.shape[1:]), 0, axis)
    inv = cnt = None
    if inverse:
        group = xp.cumsum(first) - 1
        inv = xp.empty(m, dtype=np.int64)
        inv[order] = group
        inv = inv.reshape(arr.shape) if axis is None else inv
    if counts:
        starts = xp.flatnonzero(first)
        cnt = xp.diff(xp.concatenate([starts, xp.asarray([m])])).astype(np.int64)
    return xp.ascontiguousarray(values), inv, cnt


def _unique(x, sorted, return_inverse, return_counts, dim, consecutive, what):
    refuse_host_work(what)
    xp = xp_of(x)
    axis = None if dim is None else _dim(dim, x.ndim)
    if axis is not None and x.ndim == 0:
        raise IndexError(f"{what}(): dim {dim} is out of range for a 0-d tensor")
    if axis is not None and any(s == 0 for k, s in enumerate(x.shape) if k != axis):
        raise ValueError(f"{what}(): there are 0 sized dimensions, and they aren't selected, "
                         f"so unique cannot be applied (shape {tuple(x.shape)}, dim {axis})")
    source = x
    if x.ndim == 0:
        source = reshape(x, (1,))
    values = apply(Unique, (source,), Unique.Params(axis, bool(consecutive)))
    if not (return_inverse or return_counts):
        return values
    _, inv, cnt = _distinct(xp, raw(source), axis, consecutive, return_inverse, return_counts)
    out = (values,)
    if return_inverse:
        out += (computed(inv.reshape(x.shape) if axis is None else inv, x.device),)
    if return_counts:
        out += (computed(cnt, x.device),)
    return out


def unique(x, sorted=True, return_inverse=False, return_counts=False, dim=None):
    """The distinct elements of x, sorted (also with ``sorted=False``, which PyTorch leaves
    unordered), or the distinct slices along ``dim``; with ``return_inverse`` the index of
    each element's (or slice's) value, with ``return_counts`` how often each occurs. Each
    NaN is distinct, as in PyTorch. Not differentiable: a result of an input that requires
    grad requires grad, and its backward raises (PyTorch's behaviour)."""
    return _unique(x, sorted, return_inverse, return_counts, dim, False, "unique")


def unique_consecutive(x, return_inverse=False, return_counts=False, dim=None):
    """x with each run of equal consecutive elements (or slices along ``dim``) kept once;
    ``return_inverse`` and ``return_counts`` as ``unique``."""
    return _unique(x, True, return_inverse, return_counts, dim, True, "unique_consecutive")
