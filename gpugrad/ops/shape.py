"""Shape ops: views, broadcasting and its adjoint, indexing, joining."""
from __future__ import annotations

import math

import numpy as np

from .._autograd.graph import Linear, apply, primitive
from .._tensor import Tensor, wrap
from ._common import broadcast_shapes, normalize_axes, prod, refuse_host_work, shape_str
from .elementwise import cast, where


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
    out = apply(Reshape, (x,), Reshape.Params(shape, x.shape))
    if isinstance(x, Tensor) and not x._data.flags.c_contiguous \
            and not x.device.xp.may_share_memory(out._data, x._data):
        out._base = None      # NumPy had to copy: not a view, as PyTorch's reshape then
        out._ver = [0]
    return out


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


def permute(x, *dims):
    """x with its dimensions reordered: output dimension i is input dimension dims[i]."""
    if len(dims) == 1 and isinstance(dims[0], (tuple, list)):
        dims = dims[0]
    ndim = x.ndim
    if len(dims) != ndim:
        raise ValueError(f"permute: number of dims don't match: the tensor has {ndim} "
                         f"dimension(s), got {len(dims)} dims {tuple(dims)}")
    axes = []
    for d in dims:
        d = int(d)
        if not -max(ndim, 1) <= d < max(ndim, 1):
            raise IndexError(f"permute: dimension {d} is out of range for a tensor of {ndim} "
                             "dimension(s)")
        axes.append(d % ndim if ndim else 0)
    axes = tuple(axes)
    if sorted(axes) != list(range(ndim)):
        raise ValueError(f"permute: dims {tuple(dims)} are not a permutation of {ndim} "
                         "dimension(s) (repeated dim)")
    if axes == tuple(range(ndim)):
        return x
    inverse = [0] * ndim
    for i, a in enumerate(axes):
        inverse[a] = i
    return apply(Transpose, (x,), Transpose.Params(axes, tuple(inverse)))


def transpose(x, dim0, dim1):
    """x with dimensions dim0 and dim1 swapped (PyTorch's ``transpose``)."""
    ndim = x.ndim
    span = max(ndim, 1)
    for d in (dim0, dim1):
        if not -span <= d < span:
            raise IndexError(f"transpose: dimension {d} is out of range for a tensor of "
                             f"{ndim} dimension(s)")
    axes = list(range(ndim))
    if ndim:
        a, b = dim0 % ndim, dim1 % ndim
        axes[a], axes[b] = axes[b], axes[a]
    return permute(x, axes)


_SWAP_2D = Transpose.Params((1, 0), (1, 0))


def swap_last(x):
    """x with its last two axes swapped."""
    if x.ndim == 2:
        return apply(Transpose, (x,), _SWAP_2D)
    return transpose(x, -2, -1)


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
def _is_int(item):
    return isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_))


def _index_items(idx, dev):
    """The items of an index with tensors and lists made arrays of the device; a 0-d integer
    tensor is an int, as in PyTorch. Returns (items, has_array, has_int)."""
    items = idx if isinstance(idx, tuple) else (idx,)
    out = []
    has_array = has_int = False
    for item in items:
        if isinstance(item, Tensor):
            if item.device is not dev:
                raise ValueError(f"index on device {item.device} used on a tensor on "
                                 f"device {dev}")
            item = item._data
            if item.ndim == 0 and item.dtype.kind in "iu":
                item = int(item)
        elif isinstance(item, list):
            item = dev.asarray(item, dtype=np.int64 if not item else None)
        elif isinstance(item, (bool, np.bool_)):
            item = dev.asarray(bool(item))
        if hasattr(item, "dtype") and hasattr(item, "shape"):
            has_array = True
            if item.dtype.kind not in "iub":
                raise TypeError(f"tensors used as indices must be long, int, byte or bool "
                                f"tensors, got dtype {item.dtype}")
            if not dev.owns(item):
                item = dev.asarray(item)
        elif _is_int(item):
            has_int = True
            item = int(item)
        elif not (item is None or item is Ellipsis or isinstance(item, slice)):
            raise TypeError(f"only integers, slices, None, ..., and integer or boolean "
                            f"tensors are valid indices, got {type(item).__name__}")
        out.append(item)
    return out, has_array, has_int


def index_steps(idx, dev):
    """An index in PyTorch's meaning as NumPy indices applied one after the other, each with
    whether it is basic (a view): integers select first, so that they never count as
    advanced indices (``x[0, :, [0, 2]]`` on (3, 4, 5) gives (4, 2), where NumPy's
    ``a[0, :, [0, 2]]`` gives (2, 4)); the advanced rest follows NumPy's placement."""
    items, has_array, has_int = _index_items(idx, dev)
    if not has_array:
        return [(tuple(items), True)]
    if not has_int:
        return [(tuple(items), False)]
    first, second = [], []
    for item in items:
        if isinstance(item, int):
            first.append(item)
        elif hasattr(item, "dtype"):
            first.extend([slice(None)] * (item.ndim if item.dtype == bool else 1))
            second.append(item)
        else:
            first.append(item)
            second.append(Ellipsis if item is Ellipsis else slice(None))
    return [(tuple(first), True), (tuple(second), False)]


def flat_positions(shape, steps, dev):
    """The flat (row-major) positions in a tensor of ``shape`` of the elements an index
    selects, shaped as the result of indexing."""
    positions = dev.xp.arange(prod(shape), dtype=np.int64).reshape(shape)
    for index, _ in steps:
        positions = positions[index]
    return positions


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

    def forward(self, dev, p, x, out=None):
        y = x[p.index]
        if isinstance(y, np.generic):
            # NumPy gives a copy (a scalar) for an index that picks one element; with a
            # trailing ``...`` it gives the 0-d view that writes and reads must go through
            index = p.index if isinstance(p.index, tuple) else (p.index,)
            y = x[index + (Ellipsis,)]
        return _into(out, y)


def getitem(x, idx, basic=None):
    """x[idx] with PyTorch's indexing rules; ``basic`` given: idx is a NumPy index already."""
    if basic is not None:
        return _getitem(x, idx, basic)
    if isinstance(idx, (int, slice)) and not isinstance(idx, bool):
        return _getitem(x, idx, True)
    for index, basic in index_steps(idx, x.device):
        x = _getitem(x, index, basic)
    return x


def _getitem(x, idx, basic):
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


def index_put(x, indices, value, accumulate=False):
    """A new tensor: x with ``value`` written (added, with ``accumulate``) where ``indices``
    points, as torch.index_put. ``indices``: PyTorch's tuple of index tensors (None for a
    whole dimension), or the flat (row-major) positions as one integer tensor or array.
    Gradients flow to the elements of x left untouched and to value."""
    dev = x.device
    xp = dev.xp
    if isinstance(indices, Tensor) or (isinstance(indices, (tuple, list)) and any(
            isinstance(i, Tensor) for i in indices)) or (
            isinstance(value, Tensor) and value._node is None and not accumulate):
        refuse_host_work("index_put with index tensors or a tensor value (positions and "
                         "the write are made on the host)")
    if isinstance(indices, (tuple, list)):
        for i in indices:
            if i is not None and not isinstance(i, Tensor):
                raise TypeError(f"index_put(): indices must be a tuple of index tensors (None "
                                f"for a whole dimension), got a {type(i).__name__} among them")
        items = tuple(slice(None) if i is None else i for i in indices)
        positions = flat_positions(x.shape, index_steps(items, dev), dev)
    else:
        positions = _flat_index(indices, dev)
    n = prod(x.shape)
    pos = positions.reshape(-1)
    if isinstance(value, Tensor) and value.device is not dev:
        raise ValueError(f"index_put: value on device {value.device}, tensor on {dev}")
    if accumulate:
        return x + reshape(index_add_zeros(_value_at(value, positions, x, dev), pos, (n,),
                                           False), x.shape)
    mask = xp.zeros(n, dtype=bool)
    mask[pos] = True
    mask = wrap(dev.adopt(mask), dev)
    flat = reshape(x, (n,))
    if isinstance(value, Tensor) and (value._node is not None or value._tangents):
        value = _value_at(value, positions, x, dev)
        if int(xp.unique(pos).size) != int(pos.size):
            raise RuntimeError("an index that repeats a position was used to write a tensor "
                               "that requires grad: which write wins is undefined, so its "
                               "gradient would be too; use index_add or unique indices")
        scattered = index_add_zeros(value, pos, (n,), False)
    else:
        arr = xp.zeros(n, dtype=x.dtype)
        try:
            arr[pos] = xp.broadcast_to(_as_array(value, dev).astype(x.dtype, copy=False),
                                       positions.shape).reshape(-1)
        except ValueError:
            raise ValueError(f"shape mismatch: value of shape "
                             f"{shape_str(getattr(value, 'shape', ()))} cannot be broadcast to "
                             f"indexing result of shape {shape_str(positions.shape)}") from None
        scattered = wrap(dev.adopt(arr), dev)
    return reshape(where(mask, scattered, flat), x.shape)


def _flat_index(indices, dev):
    """Flat positions given as an integer tensor or array, as an array of ``dev``."""
    if isinstance(indices, Tensor):
        if indices.device is not dev:
            raise ValueError(f"index_put: positions on device {indices.device}, tensor on {dev}")
        indices = indices._data
    elif not (hasattr(indices, "dtype") and dev.owns(indices)):
        indices = dev.asarray(indices)
    if indices.dtype.kind not in "iu":
        raise TypeError(f"index_put: flat positions must be integers, got dtype "
                        f"{indices.dtype} (PyTorch's form is a tuple of index tensors)")
    return indices


def _value_at(value, positions, x, dev):
    """value in x's dtype, broadcast to the shape of ``positions`` and flattened: a tensor
    (differentiable), or a constant tensor for a number or an array."""
    if not isinstance(value, Tensor):
        value = wrap(dev.adopt(_as_array(value, dev).astype(x.dtype, copy=False)), dev)
    elif value.dtype != x.dtype:
        value = cast(value, x.dtype)
    if value.shape != positions.shape:
        try:
            fits = broadcast_shapes(value.shape, positions.shape) == positions.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"shape mismatch: value tensor of shape {shape_str(value.shape)} "
                             f"cannot be broadcast to indexing result of shape "
                             f"{shape_str(positions.shape)}")
        value = broadcast_to(value, positions.shape)
    return reshape(value, (positions.size,))


def _address(arr):
    ptr = getattr(arr.data, "ptr", None)      # CuPy: a device pointer; NumPy: a memoryview
    return ptr if ptr is not None else arr.__array_interface__["data"][0]


def _element_offsets(arr, xp):
    """The offset in elements of each element of arr from its first byte's address."""
    item = arr.itemsize
    offsets = xp.zeros(arr.shape, dtype=np.int64)
    ndim = arr.ndim
    for k, (n, stride) in enumerate(zip(arr.shape, arr.strides)):
        offsets = offsets + (xp.arange(n, dtype=np.int64) * (stride // item)).reshape(
            (n,) + (1,) * (ndim - k - 1))
    return offsets


def view_positions(base, view):
    """The flat (row-major) position in ``base`` of each element of ``view``, an array
    sharing base's memory (from their addresses and strides)."""
    from .._device import array_module
    xp = array_module(base)
    shift = _address(view) - _address(base)
    if shift % base.itemsize:
        raise RuntimeError("a view whose elements are not aligned with its base's")
    target = _element_offsets(view, xp) + shift // base.itemsize
    if base.flags.c_contiguous:
        positions = target
    else:
        offsets = _element_offsets(base, xp).reshape(-1)
        order = xp.argsort(offsets)
        found = xp.searchsorted(offsets[order], target.reshape(-1))
        positions = order[xp.clip(found, 0, offsets.size - 1)].reshape(target.shape)
    size = prod(base.shape)
    if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= size):
        raise RuntimeError("a view that does not lie inside the memory of its base")
    return positions


def _as_array(value, dev):
    if isinstance(value, Tensor):
        if value.device is not dev:
            return dev.asarray(value.device.to_host(value._data))
        return value._data
    return dev.xp.asarray(value)


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
