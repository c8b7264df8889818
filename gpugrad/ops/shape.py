"""Shape ops: views, broadcasting and its adjoint, indexing, joining."""
from __future__ import annotations

import math

from .._autograd.graph import Linear, apply, primitive
from .._tensor import Tensor
from ._common import broadcast_shapes, normalize_axes, prod, shape_str


def _no_cost(self, in_shapes, out_shape, p):
    return 0, 0


def _into(out, value):
    """A view's value, copied into a caller-given buffer when there is one."""
    if out is None:
        return value
    out[...] = value
    return out


@primitive
class Reshape(Linear):
    """out = x with another shape, same elements in row-major order"""
    name = "reshape"
    params = ("shape", "in_shape")
    view = True
    cost = _no_cost

    def forward(self, dev, p, x, out=None):
        return _into(out, x.reshape(p.shape))

    def vjp(self, g, ins, out, p, needs):
        return (reshape(g, p.in_shape),)


def _resolve_shape(shape, size):
    shape = tuple(int(s) for s in shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dimension can be -1, got {shape_str(shape)}")
    known = math.prod(s for s in shape if s != -1)
    if -1 in shape:
        if known == 0 or size % known:
            raise ValueError(f"cannot reshape a tensor of {size} elements into shape "
                             f"{shape_str(shape)}")
        shape = tuple(size // known if s == -1 else s for s in shape)
    if math.prod(shape) != size:
        raise ValueError(f"cannot reshape a tensor of {size} elements into shape "
                         f"{shape_str(shape)}")
    return shape


def reshape(x, *shape):
    """x with a new shape (one entry may be -1)."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = shape[0]
    if shape == x.shape:
        return x
    shape = _resolve_shape(shape, prod(x.shape))
    if shape == x.shape:
        return x
    return apply(Reshape, (x,), Reshape.Params(shape, x.shape))


@primitive
class Transpose(Linear):
    """out = x with its axes permuted"""
    name = "transpose"
    params = ("axes", "inverse")
    view = True
    cost = _no_cost

    def forward(self, dev, p, x, out=None):
        return _into(out, x.transpose(p.axes))

    def vjp(self, g, ins, out, p, needs):
        return (apply(Transpose, (g,), Transpose.Params(p.inverse, p.axes)),)


def transpose(x, *axes):
    """x with axes permuted; no axes reverses them (as NumPy)."""
    if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
        axes = axes[0]
    ndim = x.ndim
    if not axes:
        axes = tuple(range(ndim))[::-1]
    else:
        axes = tuple(int(a) % ndim if ndim else int(a) for a in axes)
        if sorted(axes) != list(range(ndim)):
            raise ValueError(f"transpose: axes {axes} are not a permutation of "
                             f"{ndim} dimension(s)")
    if axes == tuple(range(ndim)):
        return x
    inverse = [0] * ndim
    for i, a in enumerate(axes):
        inverse[a] = i
    return apply(Transpose, (x,), Transpose.Params(axes, tuple(inverse)))


_SWAP_2D = Transpose.Params((1, 0), (1, 0))


def swap_last(x):
    """x with its last two axes swapped."""
    if x.ndim == 2:
        return apply(Transpose, (x,), _SWAP_2D)
    axes = list(range(x.ndim))
    axes[-1], axes[-2] = axes[-2], axes[-1]
    return transpose(x, *axes)


@primitive
class BroadcastTo(Linear):
    """out = x broadcast to a larger shape"""
    name = "broadcast_to"
    params = ("shape", "in_shape")
    view = True
    cost = _no_cost

    def forward(self, dev, p, x, out=None):
        return _into(out, dev.xp.broadcast_to(x, p.shape))

    def vjp(self, g, ins, out, p, needs):
        return (sum_to(g, p.in_shape),)


def broadcast_to(x, shape):
    shape = tuple(int(s) for s in shape)
    if x.shape == shape:
        return x
    if broadcast_shapes(x.shape, shape) != shape:
        raise ValueError(f"cannot broadcast a tensor of shape {shape_str(x.shape)} to "
                         f"shape {shape_str(shape)}")
    return apply(BroadcastTo, (x,), BroadcastTo.Params(shape, x.shape))


@primitive
class SumTo(Linear):
    """out = x summed over the axes broadcasting added, back to a smaller shape"""
    name = "sum_to"
    params = ("shape", "in_shape")

    def cost(self, in_shapes, out_shape, p):
        n = prod(in_shapes[0])
        return n, n + prod(out_shape)

    def forward(self, dev, p, x, out=None):
        shape = p.shape
        if x.ndim == 2 and shape == (x.shape[1],):
            return dev.kernels.bias_grad(x, out=out)     # the row sum of a bias cotangent
        lead = x.ndim - len(shape)
        axes = tuple(range(lead)) + tuple(
            lead + i for i, s in enumerate(shape) if s == 1 and x.shape[lead + i] != 1)
        summed = x.sum(axis=axes, keepdims=True) if axes else x
        return _into(out, summed.reshape(shape))

    def vjp(self, g, ins, out, p, needs):
        return (broadcast_to(g, p.in_shape),)


def sum_to(x, shape):
    """The sum of x over the axes that broadcasting ``shape`` to x.shape added."""
    shape = tuple(shape)
    if x.shape == shape:
        return x
    return apply(SumTo, (x,), SumTo.Params(shape, x.shape))


# -- indexing ----------------------------------------------------------------------------------
def _normalize_index(idx, dev):
    """Tensors in an index become arrays of the device; returns (index, is_basic)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    basic = True
    out = []
    for item in items:
        if isinstance(item, Tensor):
            if item.device is not dev:
                raise ValueError(f"index on device {item.device} used on a tensor on "
                                 f"device {dev}")
            item = item._data
        elif isinstance(item, list):
            item = dev.asarray(item)
        if hasattr(item, "dtype") and hasattr(item, "shape"):
            basic = False
            if item.dtype.kind not in "iub":
                raise TypeError(f"tensors used as indices must be integer or bool, "
                                f"got {item.dtype}")
            if not isinstance(item, type(dev.xp.empty(0))):
                item = dev.asarray(item)
        out.append(item)
    return (tuple(out) if isinstance(idx, tuple) or len(out) != 1 else out[0]), basic


class _Index(Linear):
    params = ("index", "in_shape", "basic")

    def forward(self, dev, p, x, out=None):
        return _into(out, x[p.index])

    def vjp(self, g, ins, out, p, needs):
        return (index_add_zeros(g, p.index, p.in_shape, p.basic),)


@primitive
class GetItem(_Index):
    """out = x[index] with an integer or boolean array in the index: a copy"""
    name = "getitem"


@primitive
class BasicGetItem(_Index):
    """out = x[index] for basic slicing: a view"""
    name = "getitem_view"
    view = True


def getitem(x, idx, basic=None):
    if basic is None:
        idx, basic = _normalize_index(idx, x.device)
    try:
        op = BasicGetItem if basic else GetItem
        return apply(op, (x,), op.Params(idx, x.shape, basic))
    except IndexError as err:
        raise IndexError(f"index {idx!r} does not fit a tensor of shape "
                         f"{shape_str(x.shape)}: {err}") from None


@primitive
class IndexAddZeros(Linear):
    """out = zeros(shape) with g added at index (repeated indices accumulate)"""
    name = "index_add"
    params = ("index", "shape", "basic")

    def forward(self, dev, p, g, out=None):
        if out is None:
            out = dev.xp.zeros(p.shape, dtype=g.dtype)
        else:
            out.fill(0)
        if p.basic:
            out[p.index] = g
        else:
            dev.index_add(out, p.index, g)
        return out

    def vjp(self, gy, ins, out, p, needs):
        return (getitem(gy, p.index, p.basic),)


def index_add_zeros(g, idx, shape, basic):
    return apply(IndexAddZeros, (g,), IndexAddZeros.Params(idx, shape, basic))


# -- joining -------------------------------------------------------------------------------------
def _check_same(tensors, what, skip_axis=None):
    first = tensors[0]
    for t in tensors[1:]:
        if t.device is not first.device:
            raise ValueError(f"{what}: tensors on devices {first.device} and {t.device}")
        a, b = first.shape, t.shape
        if len(a) != len(b) or any(x != y for i, (x, y) in enumerate(zip(a, b))
                                   if i != skip_axis):
            raise ValueError(f"{what}: shapes {shape_str(a)} and {shape_str(b)} do not "
                             f"match" + ("" if skip_axis is None
                                         else f" outside axis {skip_axis}"))


@primitive
class Concatenate(Linear):
    """out = the inputs joined along an existing axis"""
    name = "concatenate"
    params = ("axis", "sizes")

    def forward(self, dev, p, *xs, out=None):
        return dev.xp.concatenate(xs, axis=p.axis, out=out)

    def vjp(self, g, ins, out, p, needs):
        axis, sizes = p
        grads = []
        start = 0
        for size, need in zip(sizes, needs):
            if need:
                idx = (slice(None),) * axis + (slice(start, start + size),)
                grads.append(getitem(g, idx, True))
            else:
                grads.append(None)
            start += size
        return tuple(grads)


def concatenate(tensors, axis=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("concatenate needs at least one tensor")
    axis = normalize_axes(axis, tensors[0].ndim)[0]
    _check_same(tensors, "concatenate", skip_axis=axis)
    return apply(Concatenate, tuple(tensors),
                 Concatenate.Params(axis, tuple(t.shape[axis] for t in tensors)))


@primitive
class Stack(Linear):
    """out = the inputs joined along a new axis"""
    name = "stack"
    params = ("axis",)

    def forward(self, dev, p, *xs, out=None):
        return dev.xp.stack(xs, axis=p.axis, out=out)

    def vjp(self, g, ins, out, p, needs):
        return tuple(getitem(g, (slice(None),) * p.axis + (i,), True) if need else None
                     for i, need in enumerate(needs))


def stack(tensors, axis=0):
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack needs at least one tensor")
    _check_same(tensors, "stack")
    axis = normalize_axes(axis, tensors[0].ndim + 1)[0]
    return apply(Stack, tuple(tensors), Stack.Params(axis))
