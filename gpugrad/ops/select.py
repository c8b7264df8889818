"""Movement and selection with PyTorch's names and arguments: squeeze and its kin, expand,
repeat, flip, roll, split, gather and scatter, masks, triangles and diagonals, sorting,
padding, einsum.

Most of them are compositions of the view and indexing primitives (``reshape``,
``broadcast_to``, ``getitem``), whose rules then serve them too; the primitives here are
those that need a rule of their own. Helpers used inside rules take bare arrays as well as
Tensors.
"""
from __future__ import annotations

import math
import string
from collections import namedtuple

import numpy as np

from .._autograd.graph import Linear, Op, apply, primitive
from .._tensor import Tensor, wrap
from ._common import add_terms, computed, fixed_like, prod, raw, refuse_host_work, shape_str, xp_of
from .elementwise import cast, where
from .shape import broadcast_to, getitem, permute, reshape, sum_to
from .shape import concatenate as _concatenate
from .shape import stack as _stack

SortResult = namedtuple("sort", ["values", "indices"])
TopKResult = namedtuple("topk", ["values", "indices"])


def _dim(dim, ndim, what="dim"):
    """A dimension as a non-negative int, with PyTorch's range check (a 0-d tensor takes
    0 and -1)."""
    try:
        d = int(dim)
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {type(dim).__name__}") from None
    span = max(ndim, 1)
    if not -span <= d < span:
        raise IndexError(f"Dimension out of range (expected to be in range of "
                         f"[{-span}, {span - 1}], but got {d})")
    return d % span


def _dims(dims, ndim):
    if isinstance(dims, (int, np.integer)):
        dims = (dims,)
    out = tuple(_dim(d, ndim) for d in dims)
    if len(set(out)) != len(out):
        raise ValueError(f"dim {tuple(dims)} appears multiple times in the list of dims")
    return out


def _sizes(sizes):
    """``f(x, 2, 3)`` and ``f(x, (2, 3))`` alike."""
    if len(sizes) == 1 and isinstance(sizes[0], (tuple, list)):
        sizes = sizes[0]
    if len(sizes) == 1 and isinstance(sizes[0], Tensor):
        sizes = sizes[0].tolist()
    return tuple(int(s) for s in sizes)


def _index_array(x, values):
    """Host integers as an index array on x's device (an array for an array x)."""
    arr = np.asarray(values, dtype=np.int64)
    if isinstance(x, Tensor):
        return x.device.asarray(arr)
    xp = xp_of(x)
    return arr if xp is np else xp.asarray(arr)


def _no_cost(self, in_shapes, out_shape, p):
    return 0, 0


def _copy_cost(self, in_shapes, out_shape, p):
    n = prod(out_shape)
    return 0, 2 * n


def _into(out, value):
    if out is None:
        return value
    out[...] = value
    return out


# -- views and copies ---------------------------------------------------------------------------
def squeeze(x, dim=None):
    """x without its size-1 dimensions (only those of ``dim`` when given; a dimension of
    another size is left alone, as PyTorch)."""
    shape = tuple(x.shape)
    if dim is None:
        dims = tuple(i for i, s in enumerate(shape) if s == 1)
    else:
        dims = tuple(d for d in _dims(dim, len(shape)) if len(shape) and shape[d] == 1)
    if not dims:
        return x
    return reshape(x, tuple(s for i, s in enumerate(shape) if i not in dims))


def unsqueeze(x, dim):
    """x with a new size-1 dimension at ``dim`` (in [-ndim - 1, ndim])."""
    d = _dim(dim, x.ndim + 1)
    shape = tuple(x.shape)
    return reshape(x, shape[:d] + (1,) + shape[d:])


def flatten(x, start_dim=0, end_dim=-1):
    """x with dimensions start_dim..end_dim merged into one (a 0-d tensor becomes 1-d)."""
    shape = tuple(x.shape)
    if not shape:
        _dim(start_dim, 0)
        _dim(end_dim, 0)
        return reshape(x, (1,))
    start, end = _dim(start_dim, len(shape)), _dim(end_dim, len(shape))
    if start > end:
        raise ValueError("flatten() has invalid args: start_dim cannot come after end_dim")
    return reshape(x, shape[:start] + (prod(shape[start:end + 1]),) + shape[end + 1:])


def unflatten(x, dim, sizes):
    """x with dimension ``dim`` split into ``sizes`` (one of them may be -1)."""
    shape = tuple(x.shape)
    d = _dim(dim, len(shape))
    sizes = tuple(int(s) for s in sizes)
    if sizes.count(-1) > 1:
        raise ValueError(f"unflatten: only one of the sizes {sizes} can be -1")
    known = prod(s for s in sizes if s != -1)
    if -1 in sizes:
        if known == 0 or shape[d] % known:
            raise ValueError(f"unflatten: sizes {sizes} don't multiply up to the size of "
                             f"dim {d} ({shape[d]}) of the input")
        sizes = tuple(shape[d] // known if s == -1 else s for s in sizes)
    elif known != shape[d]:
        raise ValueError(f"unflatten: sizes {sizes} don't multiply up to the size of dim "
                         f"{d} ({shape[d]}) of the input")
    return reshape(x, shape[:d] + sizes + shape[d + 1:])


def expand(x, *sizes):
    """x broadcast to ``sizes`` (a view); -1 keeps a dimension's size."""
    sizes = _sizes(sizes)
    shape = tuple(x.shape)
    lead = len(sizes) - len(shape)
    if lead < 0:
        raise ValueError(f"expand: the number of sizes provided ({len(sizes)}) must be greater "
                         f"or equal to the number of dimensions in the tensor ({len(shape)})")
    target = []
    for i, s in enumerate(sizes):
        if s == -1:
            if i < lead:
                raise ValueError(f"expand: -1 is not allowed for a new leading dimension "
                                 f"(sizes {sizes})")
            s = shape[i - lead]
        target.append(s)
    for i, s in enumerate(shape):
        if s != 1 and s != target[lead + i]:
            raise ValueError(f"expand: the expanded size of the tensor ({target[lead + i]}) "
                             f"must match the existing size ({s}) at non-singleton dimension "
                             f"{lead + i}; target sizes {tuple(sizes)}, tensor shape "
                             f"{shape_str(shape)}")
    return broadcast_to(x, tuple(target))


def expand_as(x, other):
    return expand(x, tuple(other.shape))


def view_as(x, other):
    return reshape(x, tuple(other.shape))


def contiguous(x):
    """x itself: gpugrad's tensors are always usable as they are."""
    return x


@primitive
class Clone(Linear):
    """out = a copy of x"""
    name = "clone"
    cost = _copy_cost

    def forward(self, dev, p, x, out=None):
        if out is None:
            return x.copy()
        out[...] = x
        return out

    def vjp(self, g, ins, out, p, needs):
        return (g,)


def clone(x):
    """A copy of x that stays in the graph (gradients flow back to x)."""
    return apply(Clone, (x,))


@primitive
class Flip(Linear):
    """out = x reversed along ``dims`` (a copy, as PyTorch)"""
    name = "flip"
    params = ("dims",)
    cost = _copy_cost

    def forward(self, dev, p, x, out=None):
        flipped = dev.xp.flip(x, axis=p.dims)
        if out is None:
            return flipped.copy()
        out[...] = flipped
        return out

    def vjp(self, g, ins, out, p, needs):
        return (apply(Flip, (g,), p),)


def flip(x, dims):
    """x reversed along ``dims`` (an int or a sequence)."""
    dims = _dims(dims, x.ndim)
    if not dims or x.ndim == 0:
        return clone(x)
    return apply(Flip, (x,), Flip.Params(dims))


def fliplr(x):
    return flip(x, 1)


def flipud(x):
    return flip(x, 0)


def repeat(x, *sizes):
    """x tiled ``sizes[i]`` times along each dimension (PyTorch's repeat, NumPy's tile);
    leading sizes beyond x.ndim add dimensions."""
    sizes = _sizes(sizes)
    shape = tuple(x.shape)
    if len(sizes) < len(shape):
        raise ValueError(f"repeat: the number of repeat dimensions ({len(sizes)}) can not be "
                         f"smaller than the number of dimensions of the tensor ({len(shape)})")
    if any(s < 0 for s in sizes):
        raise ValueError(f"repeat: negative repeat count in {sizes}")
    shape = (1,) * (len(sizes) - len(shape)) + shape
    paired = tuple(v for s in shape for v in (1, s))
    spread = tuple(v for r, s in zip(sizes, shape) for v in (r, s))
    y = broadcast_to(reshape(x, paired), spread)
    return reshape(y, tuple(r * s for r, s in zip(sizes, shape)))


def tile(x, dims):
    """x tiled along each dimension; fewer ``dims`` than dimensions count from the right."""
    dims = _sizes((dims,))
    dims = (1,) * (x.ndim - len(dims)) + dims
    return repeat(x, dims)


def repeat_interleave(x, repeats=None, dim=None, output_size=None):
    """Each element of x repeated ``repeats`` times along ``dim`` (x flattened when dim is
    None); ``repeats`` an int or one count per element. With x alone, x holds the counts
    and the result is the indices repeated."""
    if repeats is None:
        counts = np.asarray(x.numpy() if isinstance(x, Tensor) else x)
        out = np.repeat(np.arange(counts.shape[0]), counts)
        return computed(x.device.asarray(out), x.device)
    if dim is None:
        x = flatten(x)
        dim = 0
    d = _dim(dim, x.ndim)
    shape = tuple(x.shape) or (1,)
    if x.ndim == 0:
        x = reshape(x, (1,))
    if isinstance(repeats, Tensor) and repeats.numel() == 1 and repeats.ndim <= 1:
        repeats = int(repeats.item())
    if isinstance(repeats, (int, np.integer)):
        r = int(repeats)
        if r < 0:
            raise ValueError(f"repeat_interleave: repeats must be non-negative, got {r}")
        y = broadcast_to(unsqueeze(x, d + 1), shape[:d + 1] + (r,) + shape[d + 1:])
        return reshape(y, shape[:d] + (shape[d] * r,) + shape[d + 1:])
    counts = np.asarray(repeats.numpy() if isinstance(repeats, Tensor) else repeats)
    if counts.ndim != 1 or counts.shape[0] != shape[d]:
        raise ValueError(f"repeat_interleave: repeats must have the same size as input "
                         f"along dim {d} ({shape[d]}), got shape {counts.shape}")
    if (counts < 0).any():
        raise ValueError("repeat_interleave: repeats must be non-negative")
    return index_select(x, d, np.repeat(np.arange(shape[d]), counts))


def roll(x, shifts, dims=None):
    """x shifted cyclically by ``shifts`` along ``dims`` (flattened when dims is None)."""
    if dims is None:
        if not isinstance(shifts, (int, np.integer)):
            if len(shifts) != 1:
                raise ValueError("roll: shifts must be one number when dims is not given")
            shifts = shifts[0]
        return reshape(roll(flatten(x), int(shifts), 0), tuple(x.shape))
    shifts = (shifts,) if isinstance(shifts, (int, np.integer)) else tuple(shifts)
    dims = (dims,) if isinstance(dims, (int, np.integer)) else tuple(dims)
    if len(shifts) != len(dims):
        raise ValueError(f"roll: shifts {shifts} and dims {dims} should have the same length")
    for shift, dim in zip(shifts, dims):
        d = _dim(dim, x.ndim)
        n = x.shape[d] if x.ndim else 1
        if n == 0 or int(shift) % n == 0:
            continue
        x = index_select(x, d, (np.arange(n) - int(shift)) % n)
    return x


# -- joining and splitting ---------------------------------------------------------------------
def _joined(tensors, what):
    if isinstance(tensors, Tensor):
        raise TypeError(f"{what}: expected a sequence of tensors, got a Tensor")
    tensors = list(tensors)
    if not tensors:
        raise ValueError(f"{what} expects a non-empty sequence of tensors")
    return tensors


def _dim_alias(dim, axis, what, default=0):
    if axis is not None:
        if dim is not None and dim != axis:
            raise TypeError(f"{what}: got both dim={dim} and its alias axis={axis}")
        return axis
    return default if dim is None else dim


def cat(tensors, dim=None, *, axis=None):
    """The tensors joined along an existing dimension ``dim`` (default 0)."""
    tensors = _joined(tensors, "cat")
    return _concatenate(tensors, _dim(_dim_alias(dim, axis, "cat"), tensors[0].ndim))


concat = concatenate = cat


def stack(tensors, dim=None, *, axis=None):
    """The tensors joined along a new dimension ``dim`` (default 0)."""
    tensors = _joined(tensors, "stack")
    return _stack(tensors, _dim(_dim_alias(dim, axis, "stack"), tensors[0].ndim + 1))


def hstack(tensors):
    tensors = [t if t.ndim else reshape(t, (1,)) for t in _joined(tensors, "hstack")]
    return cat(tensors, 0 if tensors[0].ndim == 1 else 1)


def vstack(tensors):
    return cat([t if t.ndim >= 2 else reshape(t, (1, -1)) for t in _joined(tensors, "vstack")])


def _narrow_index(ndim, d, start, stop):
    return (slice(None),) * d + (slice(start, stop),)


def narrow(x, dim, start, length):
    """The slice [start, start + length) of x along ``dim`` (a view)."""
    d = _dim(dim, x.ndim)
    start = int(start) + (x.shape[d] if int(start) < 0 else 0)
    if start < 0 or length < 0 or start + length > x.shape[d]:
        raise ValueError(f"narrow: start ({start}) + length ({length}) exceeds dimension "
                         f"size ({x.shape[d]})")
    return getitem(x, _narrow_index(x.ndim, d, start, start + length), True)


def split(x, split_size_or_sections, dim=0):
    """Views of x along ``dim``: pieces of one size (the last may be smaller), or of the
    listed sizes."""
    d = _dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(split_size_or_sections, (int, np.integer)):
        size = int(split_size_or_sections)
        if size <= 0 and n:
            raise ValueError(f"split: split_size must be positive, got {size}")
        sizes = [min(size, n - i) for i in range(0, n, size)] if n else [0]
    else:
        sizes = [int(s) for s in split_size_or_sections]
        if sum(sizes) != n:
            raise ValueError(f"split: split_sizes {tuple(sizes)} must sum to the size of dim "
                             f"{d} ({n})")
    pieces, start = [], 0
    for s in sizes:
        pieces.append(getitem(x, _narrow_index(x.ndim, d, start, start + s), True))
        start += s
    return tuple(pieces)


def tensor_split(x, indices_or_sections, dim=0):
    """Pieces of x along ``dim``: ``n`` nearly equal parts, or cut at the given indices."""
    d = _dim(dim, x.ndim)
    n = x.shape[d]
    if isinstance(indices_or_sections, (int, np.integer)):
        k = int(indices_or_sections)
        base, extra = divmod(n, k)
        sizes = [base + 1] * extra + [base] * (k - extra)
        return split(x, sizes, d)
    cuts = [0] + [min(max(int(i) + (n if int(i) < 0 else 0), 0), n)
                  for i in indices_or_sections] + [n]
    return tuple(getitem(x, _narrow_index(x.ndim, d, a, max(a, b)), True)
                 for a, b in zip(cuts, cuts[1:]))


def chunk(x, chunks, dim=0):
    """x split into at most ``chunks`` pieces of ceil(size / chunks) (as PyTorch)."""
    if int(chunks) <= 0:
        raise ValueError(f"chunk: chunks must be greater than 0, got {chunks}")
    n = x.shape[_dim(dim, x.ndim)]
    return split(x, max(math.ceil(n / int(chunks)), 1), dim)


def unbind(x, dim=0):
    """The slices of x along ``dim``, as a tuple of views."""
    d = _dim(dim, x.ndim)
    return tuple(getitem(x, (slice(None),) * d + (i,), True) for i in range(x.shape[d]))


def movedim(x, source, destination):
    """x with dimensions ``source`` moved to ``destination`` (the others keep their order)."""
    src = _dims(source, x.ndim)
    dst = _dims(destination, x.ndim)
    if len(src) != len(dst):
        raise ValueError(f"movedim: source {source} and destination {destination} differ "
                         f"in length")
    order = [d for d in range(x.ndim) if d not in src]
    for s, t in sorted(zip(dst, src)):
        order.insert(s, t)
    return permute(x, tuple(order))


moveaxis = movedim


# -- indexing along a dimension ---------------------------------------------------------------
def _index_of(index, x):
    """An index tensor or host sequence as an integer array on x's device."""
    if isinstance(index, Tensor):
        if isinstance(x, Tensor) and index.device is not x.device:
            raise ValueError(f"index on device {index.device} used with a tensor on device "
                             f"{x.device}")
        arr = raw(index)
    elif hasattr(index, "dtype") and hasattr(index, "shape") and not isinstance(index, np.ndarray):
        arr = index                                      # a device array
    else:
        arr = _index_array(x, index)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"index must be an integer tensor, got dtype {arr.dtype}")
    return arr


def _check_bounds(arr, n, what, dim, device_is_host):
    # reading the indices back costs a sync on a GPU: checked where it is free
    if device_is_host and arr.size:
        low, high = int(arr.min()), int(arr.max())
        if low < 0 or high >= n:
            raise IndexError(f"{what}: index {low if low < 0 else high} is out of bounds for "
                             f"dimension {dim} with size {n}")


def _is_host(x):
    return x.device.is_host if isinstance(x, Tensor) else xp_of(x) is np


def index_select(x, dim, index):
    """The entries of x at the 1-D integer ``index`` along ``dim``."""
    d = _dim(dim, x.ndim)
    arr = _index_of(index, x)
    if arr.ndim > 1:
        raise ValueError(f"index_select: index must be 0-d or 1-d, got shape "
                         f"{shape_str(arr.shape)}")
    if x.ndim == 0:
        picked = index_select(reshape(x, (1,)), 0, index)
        return reshape(picked, ()) if arr.ndim == 0 else picked
    _check_bounds(arr, x.shape[d], "index_select", d, _is_host(x))
    return getitem(x, (slice(None),) * d + (arr.reshape(-1),), False)


def _along(arr, dim, xp):
    """The full advanced index that picks x[..., arr[i, j, ...] at dim, ...]: arr at
    ``dim``, a broadcast arange at every other dimension."""
    parts = []
    for axis, n in enumerate(arr.shape):
        if axis == dim:
            parts.append(arr)
        else:
            shape = [1] * arr.ndim
            shape[axis] = n
            parts.append(xp.arange(n).reshape(shape))
    return tuple(parts)


def _check_gather(x, dim, arr, what):
    if arr.ndim != x.ndim:
        raise ValueError(f"{what}: index tensor must have the same number of dimensions as "
                         f"input tensor ({arr.ndim} and {x.ndim})")
    for axis, (n, m) in enumerate(zip(arr.shape, x.shape)):
        if axis != dim and n > m:
            raise ValueError(f"{what}: size of index {shape_str(arr.shape)} does not fit the "
                             f"input {shape_str(x.shape)} at dimension {axis}")
    _check_bounds(arr, x.shape[dim] if x.ndim else 1, what, dim, _is_host(x))


def gather(x, dim, index):
    """out[i][j][k] = x[index[i][j][k]][j][k] along ``dim`` (torch.gather)."""
    if x.ndim == 0:
        return index_select(x, 0, index)
    d = _dim(dim, x.ndim)
    arr = _index_of(index, x)
    _check_gather(x, d, arr, "gather")
    return getitem(x, _along(arr, d, xp_of(x)), False)


def take_along_dim(x, indices, dim=None):
    """gather with broadcasting between x and the indices (flattened when dim is None)."""
    if dim is None:
        return gather(flatten(x), 0, flatten(indices))
    d = _dim(dim, x.ndim)
    arr = _index_of(indices, x)
    shape = list(np.broadcast_shapes(tuple(x.shape[:d]) + (1,) + tuple(x.shape[d + 1:]),
                                     arr.shape[:d] + (1,) + arr.shape[d + 1:]))
    x_shape = tuple(shape[:d] + [x.shape[d]] + shape[d + 1:])
    shape[d] = arr.shape[d]
    arr = xp_of(x).broadcast_to(arr, tuple(shape))
    return getitem(broadcast_to(x, x_shape), _along(arr, d, xp_of(x)), False)


class _ScatterBase(Linear):
    params = ("index",)
    broadcasting = False

    def cost(self, in_shapes, out_shape, p):
        n = prod(out_shape)
        return prod(in_shapes[1]), 2 * n


@primitive
class Scatter(_ScatterBase):
    """out = x with src written at index (torch.scatter)"""
    name = "scatter"

    def forward(self, dev, p, x, src, out=None):
        out = x.copy() if out is None else _into(out, x)
        out[p.index] = src
        return out

    def vjp(self, g, ins, out, p, needs):
        gx = None
        if needs[0]:
            keep = xp_of(g).ones(g.shape, dtype=bool)
            keep[p.index] = False
            gx = where(keep, g, 0)
        return gx, (getitem(g, p.index, False) if needs[1] else None)


@primitive
class ScatterAdd(_ScatterBase):
    """out = x with src added at index, repeated indices accumulating (torch.scatter_add)"""
    name = "scatter_add"

    def forward(self, dev, p, x, src, out=None):
        out = x.copy() if out is None else _into(out, x)
        dev.index_add(out, p.index, src)
        return out

    def vjp(self, g, ins, out, p, needs):
        return g, (getitem(g, p.index, False) if needs[1] else None)


def _scatter(op, what, x, dim, index, src, value=None):
    d = _dim(dim, x.ndim)
    arr = _index_of(index, x)
    _check_gather(x, d, arr, what)
    if src is None:
        src = value
    if not isinstance(src, Tensor):
        dev = x.device
        src = wrap(dev.allocate(lambda s, dtype: dev.xp.full(s, src, dtype), arr.shape,
                                x.dtype), dev)
    else:
        if src.ndim != arr.ndim or any(a > s for a, s in zip(arr.shape, src.shape)):
            raise ValueError(f"{what}: index of shape {shape_str(arr.shape)} does not fit "
                             f"src of shape {shape_str(src.shape)}")
        if src.shape != arr.shape:
            src = getitem(src, tuple(slice(0, n) for n in arr.shape), True)
    if x.ndim == 0:
        return reshape(apply(op, (reshape(x, (1,)), reshape(src, (-1,))),
                             op.Params((arr.reshape(-1),))), ())
    return apply(op, (x, src), op.Params(_along(arr, d, x.device.xp)))


def scatter(x, dim, index, src=None, value=None):
    """x with ``src`` (a tensor, or ``value``) written at ``index`` along ``dim``."""
    if src is None and value is None:
        raise TypeError("scatter: expected src or value")
    if isinstance(src, (int, float, bool)):
        src, value = None, src
    return _scatter(Scatter, "scatter", x, dim, index, src, value)


def scatter_add(x, dim, index, src):
    """x with ``src`` added at ``index`` along ``dim`` (repeated indices accumulate)."""
    return _scatter(ScatterAdd, "scatter_add", x, dim, index, src)


def _slices_at(x, dim, index, source, what):
    """The NumPy index that addresses, in x, the slices of ``source`` placed at the 1-D
    ``index`` along ``dim`` (index_add, index_copy), after PyTorch's checks."""
    d = _dim(dim, x.ndim)
    arr = _index_of(index, x)
    if arr.ndim > 1:
        raise IndexError(f"{what}(): index is supposed to be a vector, got shape "
                         f"{shape_str(arr.shape)}")
    arr = arr.reshape(-1)
    if source.dtype != x.dtype:
        raise TypeError(f"{what}(): self ({x.dtype}) and source ({source.dtype}) must have "
                        "the same dtype")
    expected = tuple(x.shape[:d]) + (arr.size,) + tuple(x.shape[d + 1:]) if x.ndim else \
        (arr.size,)
    if tuple(source.shape) != expected and not (x.ndim == 0 and source.shape == ()):
        raise ValueError(f"{what}(): source of shape {shape_str(source.shape)} does not fit "
                         f"index of {arr.size} entries along dim {d} of a tensor of shape "
                         f"{shape_str(x.shape)} (expected {shape_str(expected)})")
    _check_bounds(arr, x.shape[d] if x.ndim else 1, what, d, _is_host(x))
    if x.ndim == 0:
        return (arr,)
    xp = x.device.xp
    shape = [1] * x.ndim
    shape[d] = arr.size
    return _along(xp.broadcast_to(arr.reshape(shape), tuple(source.shape)), d, xp)


def _on_flat_if_0d(op, x, source, index):
    if x.ndim == 0:
        out = apply(op, (reshape(x, (1,)), reshape(source, (-1,))), op.Params(index))
        return reshape(out, ())
    return apply(op, (x, source), op.Params(index))


def index_add(x, dim, index, source, *, alpha=1):
    """x with ``alpha * source`` added at ``index`` along ``dim`` (repeated indices
    accumulate), as torch.index_add."""
    if not isinstance(source, Tensor):
        raise TypeError(f"index_add(): source must be a Tensor, got {type(source).__name__}")
    where_ = _slices_at(x, dim, index, source, "index_add")
    if alpha != 1:
        source = source * alpha
    return _on_flat_if_0d(ScatterAdd, x, source, where_)


def index_copy(x, dim, index, source):
    """x with the slices of ``source`` written at ``index`` along ``dim``, as
    torch.index_copy. With a repeated index which slice wins is undefined (PyTorch's words);
    with a source that requires grad that is an error here."""
    if not isinstance(source, Tensor):
        raise TypeError(f"index_copy(): source must be a Tensor, got {type(source).__name__}")
    where_ = _slices_at(x, dim, index, source, "index_copy")
    if source._node is not None or source._tangents:
        picked = _index_of(index, x).reshape(-1)
        if int(x.device.xp.unique(picked).size) != picked.size:
            raise RuntimeError("index_copy(): an index that repeats a position was used to "
                               "write a source that requires grad: which write wins is "
                               "undefined, so its gradient would be too")
    return _on_flat_if_0d(Scatter, x, source, where_)


def index_fill(x, dim, index, value):
    """x with ``value`` (a number or a 0-d tensor) in the slices at ``index`` along
    ``dim``, as torch.index_fill."""
    d = _dim(dim, x.ndim)
    arr = _index_of(index, x)
    if arr.ndim > 1:
        raise IndexError(f"index_fill(): index is supposed to be a vector, got shape "
                         f"{shape_str(arr.shape)}")
    arr = arr.reshape(-1)
    _check_bounds(arr, x.shape[d] if x.ndim else 1, "index_fill", d, _is_host(x))
    xp = x.device.xp
    n = x.shape[d] if x.ndim else 1
    picked = xp.zeros(n, dtype=bool)
    picked[arr] = True
    shape = [1] * x.ndim
    if x.ndim:
        shape[d] = n
    return masked_fill(x, picked.reshape(shape), value)


def _mask_of(mask, x, what):
    if isinstance(mask, Tensor):
        if mask.device is not x.device:
            raise ValueError(f"{what}: mask on device {mask.device}, tensor on {x.device}")
        arr = raw(mask)
    else:
        arr = x.device.asarray(mask)
    if arr.dtype != np.bool_:
        raise TypeError(f"{what}: mask must have dtype bool, got {arr.dtype}")
    return arr


def masked_fill(x, mask, value):
    """x with ``value`` (a number or a 0-d tensor) where ``mask`` is true."""
    arr = _mask_of(mask, x, "masked_fill")
    try:
        shape = np.broadcast_shapes(arr.shape, tuple(x.shape))
    except ValueError:
        shape = None
    if shape != tuple(x.shape):
        raise ValueError(f"masked_fill: the mask of shape {shape_str(arr.shape)} must "
                         f"broadcast to the tensor's shape {shape_str(x.shape)}")
    if isinstance(value, Tensor):
        if value.ndim != 0:
            raise ValueError(f"masked_fill only supports a 0-dimensional value tensor, got "
                             f"shape {shape_str(value.shape)}")
        if value.dtype != x.dtype:
            value = cast(value, x.dtype)
    else:
        value = np.asarray(value).astype(x.dtype)[()]
    return where(mask if isinstance(mask, Tensor) else arr, value, x)


def masked_select(x, mask):
    """The entries of x where ``mask`` is true, as a 1-D tensor (both broadcast first)."""
    refuse_host_work("masked_select (its positions)")
    arr = _mask_of(mask, x, "masked_select")
    shape = np.broadcast_shapes(arr.shape, tuple(x.shape)) or (1,)
    arr = x.device.xp.broadcast_to(arr, shape)
    return getitem(broadcast_to(reshape(x, (1,)) if x.ndim == 0 else x, shape),
                   x.device.xp.nonzero(arr), False)


def masked_scatter(x, mask, source):
    """x with the leading entries of ``source`` written where ``mask`` is true."""
    refuse_host_work("masked_scatter (its positions)")
    arr = _mask_of(mask, x, "masked_scatter")
    arr = x.device.xp.broadcast_to(arr, tuple(x.shape))
    count = int(x.device.xp.count_nonzero(arr))
    values = getitem(flatten(source), slice(0, count), True)
    flat = flatten(x)
    positions = x.device.xp.flatnonzero(arr)
    return reshape(apply(Scatter, (flat, values), Scatter.Params((positions,))), tuple(x.shape))


# -- triangles and diagonals ----------------------------------------------------------------------
def _triangle(x, diagonal, lower, what):
    if x.ndim < 2:
        raise ValueError(f"{what}: input tensor must have at least 2 dimensions, got shape "
                         f"{shape_str(x.shape)}")
    n, m = x.shape[-2:]
    keep = x.device.xp.tri(n, m, int(diagonal) - (0 if lower else 1), dtype=bool)
    if not lower:
        keep = ~keep
    return where(keep, x, 0)


def tril(x, diagonal=0):
    """x with the entries above the ``diagonal``-th diagonal zeroed (last two dims)."""
    return _triangle(x, diagonal, True, "tril")


def triu(x, diagonal=0):
    """x with the entries below the ``diagonal``-th diagonal zeroed (last two dims)."""
    return _triangle(x, diagonal, False, "triu")


def _diag_positions(xp, offset, length):
    return xp.arange(length) + max(-offset, 0), xp.arange(length) + max(offset, 0)


@primitive
class Diagonal(Linear):
    """out = the ``offset``-th diagonal of the (dim1, dim2) planes of x, appended last"""
    name = "diagonal"
    params = ("offset", "dim1", "dim2", "in_shape")
    view = True
    cost = _no_cost

    def forward(self, dev, p, x, out=None):
        return _into(out, dev.xp.diagonal(x, p.offset, p.dim1, p.dim2))

    def vjp(self, g, ins, out, p, needs):
        return (apply(DiagonalEmbed, (g,), DiagonalEmbed.Params(*p)),)


@primitive
class DiagonalEmbed(Linear):
    """out = zeros of ``shape`` with x on the ``offset``-th diagonal of the (dim1, dim2)
    planes (the adjoint of diagonal)"""
    name = "diagonal_embed"
    params = ("offset", "dim1", "dim2", "shape")
    cost = _copy_cost

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        if out is None:
            out = xp.zeros(p.shape, dtype=x.dtype)
        else:
            out.fill(0)
        planes = xp.moveaxis(out, (p.dim1, p.dim2), (-2, -1))
        rows, cols = _diag_positions(xp, p.offset, x.shape[-1])
        planes[..., rows, cols] = x
        return out

    def vjp(self, g, ins, out, p, needs):
        return (apply(Diagonal, (g,), Diagonal.Params(*p)),)


def diagonal(x, offset=0, dim1=0, dim2=1):
    """The ``offset``-th diagonal of x in the (dim1, dim2) planes, as a last dimension."""
    d1, d2 = _dim(dim1, x.ndim), _dim(dim2, x.ndim)
    if d1 == d2:
        raise ValueError(f"diagonal: dimensions dim1 and dim2 cannot be identical ({dim1}, "
                         f"{dim2})")
    return apply(Diagonal, (x,), Diagonal.Params(int(offset), d1, d2, tuple(x.shape)))


_diagonal = diagonal


def diag_embed(x, offset=0, dim1=-2, dim2=-1):
    """Matrices with the last dimension of x on their ``offset``-th diagonal."""
    ndim = x.ndim + 1
    d1, d2 = _dim(dim1, ndim), _dim(dim2, ndim)
    if d1 == d2:
        raise ValueError(f"diag_embed: dim1 and dim2 cannot be identical ({dim1}, {dim2})")
    size = x.shape[-1] + abs(int(offset))
    rest = iter(x.shape[:-1])
    shape = tuple(size if i in (d1, d2) else next(rest) for i in range(ndim))
    return apply(DiagonalEmbed, (x,), DiagonalEmbed.Params(int(offset), d1, d2, shape))


def diag(x, diagonal=0):
    """A 1-D x as a square matrix with x on its ``diagonal``-th diagonal; of a 2-D x, that
    diagonal."""
    if x.ndim == 1:
        return diag_embed(x, diagonal, 0, 1)
    if x.ndim == 2:
        return _diagonal(x, diagonal, 0, 1)
    raise ValueError(f"diag: expected a 1-D or 2-D tensor, got shape {shape_str(x.shape)}")


def trace(x):
    """The sum of the main diagonal of a 2-D tensor."""
    if x.ndim != 2:
        raise ValueError(f"trace: expected a matrix, got shape {shape_str(x.shape)}")
    return sum_to(diagonal(x), ())


# -- sorting ------------------------------------------------------------------------------------
def _argsort(arr, dim, descending, xp):
    if not descending:
        return xp.argsort(arr, axis=dim, kind="stable")
    # stable and descending, NaN first (as PyTorch): the ascending stable order of the
    # reversed array, read backwards
    n = arr.shape[dim]
    flipped = xp.flip(arr, axis=dim)
    order = xp.flip(xp.argsort(flipped, axis=dim, kind="stable"), axis=dim)
    return (n - 1) - order


def argsort(x, dim=-1, descending=False, stable=False):
    """The indices that sort x along ``dim`` (ties keep their order)."""
    if x.ndim == 0:
        return computed(x.device.xp.zeros((), dtype=np.int64), x.device)
    d = _dim(dim, x.ndim)
    idx = _argsort(raw(x), d, descending, x.device.xp).astype(np.int64, copy=False)
    return computed(idx, x.device)


def sort(x, dim=-1, descending=False, stable=False):
    """(values, indices) of x sorted along ``dim``; the values carry gradients."""
    idx = argsort(x, dim, descending, stable)
    if x.ndim == 0:
        return SortResult(clone(x), idx)
    return SortResult(gather(x, dim, idx), idx)


def msort(x):
    return sort(x, 0).values


def topk(x, k, dim=-1, largest=True, sorted=True):
    """(values, indices) of the ``k`` largest (or smallest) entries along ``dim``."""
    d = _dim(dim, x.ndim)
    n = x.shape[d] if x.ndim else 1
    k = int(k)
    if not 0 <= k <= n:
        raise ValueError(f"topk: k ({k}) is out of range for dimension {d} of size {n}")
    if x.ndim == 0:
        return TopKResult(clone(x), argsort(x))
    order = _argsort(raw(x), d, largest, x.device.xp)
    idx = order[(slice(None),) * d + (slice(0, k),)].astype(np.int64, copy=False)
    indices = computed(idx, x.device)
    return TopKResult(gather(x, d, indices), indices)


def kthvalue(x, k, dim=-1, keepdim=False):
    """(values, indices) of the k-th smallest entry along ``dim`` (k from 1)."""
    d = _dim(dim, x.ndim)
    values, indices = topk(x, k, d, largest=False)
    values = narrow(values, d, k - 1, 1)
    indices = getitem(indices, _narrow_index(indices.ndim, d, k - 1, k), True)
    if not keepdim:
        values, indices = squeeze(values, d), squeeze(indices, d)
    return SortResult(values, indices)


def one_hot(tensor, num_classes=-1):
    """An int64 tensor with a trailing dimension of ``num_classes``, 1 at each label."""
    if tensor.dtype.kind not in "iu":
        raise TypeError(f"one_hot is only applicable to index tensors (integers), got "
                        f"dtype {tensor.dtype}")
    arr = raw(tensor)
    xp = tensor.device.xp
    if arr.size and int(arr.min()) < 0:
        raise ValueError("one_hot: class values must be non-negative")
    top = int(arr.max()) + 1 if arr.size else 0
    if num_classes == -1:
        if not arr.size:
            raise ValueError("one_hot: can not infer the total number of classes from an "
                             "empty tensor")
        num_classes = top
    elif top > num_classes:
        raise ValueError(f"one_hot: class values must be smaller than num_classes "
                         f"({num_classes}), got {top - 1}")
    out = (arr[..., None] == xp.arange(int(num_classes))).astype(np.int64)
    return computed(out, tensor.device)


# -- padding ------------------------------------------------------------------------------------
@primitive
class Pad(Op):
    """out = x surrounded by ``widths`` (before, after) per dimension of ``value``"""
    name = "pad"
    params = ("widths", "value")
    cost = _copy_cost

    def forward(self, dev, p, x, out=None):
        shape = tuple(s + a + b for s, (a, b) in zip(x.shape, p.widths))
        if out is None:
            out = dev.xp.full(shape, p.value, dtype=x.dtype)
        else:
            out.fill(p.value)
        out[_interior(p.widths, x.shape)] = x
        return out

    def vjp(self, g, ins, out, p, needs):
        inner = tuple(s - a - b for s, (a, b) in zip(g.shape, p.widths))
        return (getitem(g, _interior(p.widths, inner), True),)

    def jvp(self, ts, ins, out, p):
        return apply(Pad, (ts[0],), Pad.Params(p.widths, 0))


def _interior(widths, shape):
    return tuple(slice(a, a + s) for (a, _), s in zip(widths, shape))


def _pad_constant(x, widths, value):
    """x padded with ``value`` (widths: (before, after) per dimension, negative crops);
    works on bare arrays too."""
    if any(a < 0 or b < 0 for a, b in widths):
        crop = tuple(slice(max(-a, 0), s - max(-b, 0)) for (a, b), s in zip(widths, x.shape))
        x = getitem(x, crop, True)
        widths = tuple((max(a, 0), max(b, 0)) for a, b in widths)
    if not any(a or b for a, b in widths):
        return x
    return apply(Pad, (x,), Pad.Params(tuple(widths), value))


def _pad_positions(n, before, after, mode):
    i = np.arange(-before, n + after)
    if mode == "replicate":
        return np.clip(i, 0, n - 1)
    if mode == "circular":
        return i % n
    if mode == "reflect":
        if before >= n or after >= n:
            raise ValueError(f"pad: padding ({before}, {after}) should be smaller than the "
                             f"input dimension ({n}) in reflect mode")
        period = 2 * (n - 1) if n > 1 else 1
        i = np.abs(i) % period
        return np.where(i >= n, period - i, i)
    raise ValueError(f"pad: mode must be 'constant', 'reflect', 'replicate' or 'circular', "
                     f"got {mode!r}")


def pad(x, pad, mode="constant", value=None):
    """x padded as torch.nn.functional.pad: ``pad`` = (left, right) of the last dimension,
    then of the one before, and so on; negative widths crop (constant mode)."""
    pad = tuple(int(v) for v in pad)
    if len(pad) % 2 or len(pad) // 2 > x.ndim:
        raise ValueError(f"pad: padding length must be even and at most twice the number of "
                         f"dimensions ({x.ndim}), got {len(pad)}")
    widths = [(0, 0)] * x.ndim
    for k in range(len(pad) // 2):
        widths[x.ndim - 1 - k] = (pad[2 * k], pad[2 * k + 1])
    if mode == "constant":
        fill = 0 if value is None else value
        if x.dtype.kind in "biu" and isinstance(fill, float) and fill != int(fill):
            raise TypeError(f"pad: value {fill} does not fit dtype {x.dtype}")
        return _pad_constant(x, tuple(widths), fill)
    if value not in (None, 0, 0.0):
        raise ValueError(f"pad: a value is only taken by mode 'constant', not {mode!r}")
    for d, (a, b) in enumerate(widths):
        if a or b:
            if a < 0 or b < 0:
                raise ValueError(f"pad: negative padding is only allowed in constant mode, "
                                 f"got {pad}")
            x = index_select(x, d, _pad_positions(x.shape[d], a, b, mode))
    return x


# -- products -----------------------------------------------------------------------------------
_LETTERS = string.ascii_letters


def _parse_einsum(equation, ndims):
    """Input specs and output spec with any '...' replaced by letters of their own."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    specs = lhs.split(",")
    if len(specs) != len(ndims):
        raise ValueError(f"einsum(): {len(specs)} operands in the equation {equation!r}, "
                         f"{len(ndims)} given")
    used = set(eq) - set(".,->")
    bad = [c for c in used if c not in _LETTERS]
    if bad:
        raise ValueError(f"einsum(): invalid subscript {bad[0]!r} in {equation!r}")
    free = [c for c in _LETTERS if c not in used]
    n_ell = 0
    for spec, nd in zip(specs, ndims):
        if "..." in spec:
            n_ell = max(n_ell, nd - (len(spec) - 3))
    ell = "".join(free[:n_ell])
    out_specs = []
    for spec, nd in zip(specs, ndims):
        if "..." in spec:
            k = nd - (len(spec) - 3)
            if k < 0:
                raise ValueError(f"einsum(): the subscript {spec!r} has more dimensions "
                                 f"than its operand ({nd})")
            spec = spec.replace("...", ell[n_ell - k:] if k else "")
        if len(spec) != nd:
            raise ValueError(f"einsum(): the subscript {spec!r} names {len(spec)} dimensions, "
                             f"its operand has {nd}")
        out_specs.append(spec)
    if arrow:
        out = rhs.replace("...", ell)
    else:
        counts = {}
        for spec in out_specs:
            for c in spec:
                counts[c] = counts.get(c, 0) + 1
        out = ell + "".join(sorted(c for c, k in counts.items() if k == 1 and c not in ell))
    return tuple(out_specs), out, "".join(free[n_ell:])


@primitive
class Einsum(Op):
    """out = the Einstein summation of the operands (specs with letters only)"""
    name = "einsum"
    params = ("inputs", "output", "spare")
    save_inputs = True

    def cost(self, in_shapes, out_shape, p):
        sizes = {}
        for spec, shape in zip(p.inputs, in_shapes):
            sizes.update(zip(spec, shape))
        moved = sum(prod(s) for s in in_shapes) + prod(out_shape)
        return 2 * prod(sizes.values()), moved

    def forward(self, dev, p, *xs, out=None):
        eq = ",".join(p.inputs) + "->" + p.output
        return _into(out, dev.xp.einsum(eq, *xs, optimize=len(xs) > 2))

    def vjp(self, g, ins, out, p, needs):
        return tuple(_einsum_grad(g, ins, p, i) if need else None
                     for i, need in enumerate(needs))

    def jvp(self, ts, ins, out, p):
        terms = []
        for i, t in enumerate(ts):
            if t is not None:
                operands = list(ins)
                operands[i] = t
                terms.append(apply(Einsum, tuple(operands), p))
        return add_terms(*terms)


def _einsum_grad(g, ins, p, i):
    """d out / d operand i, contracted with g: g and the other operands summed into the
    operand's subscripts; its own-only letters broadcast back, repeated letters placed on
    the diagonal."""
    target = p.inputs[i]
    x = ins[i]
    size_of = dict(zip(target, x.shape))
    others = [(s, y) for j, (s, y) in enumerate(zip(p.inputs, ins)) if j != i]
    avail = set(p.output).union(*[set(s) for s, _ in others])
    unique = "".join(dict.fromkeys(target))
    kept = "".join(c for c in unique if c in avail)
    specs = ",".join([p.output] + [s for s, _ in others])
    r = apply(Einsum, (g,) + tuple(y for _, y in others),
              Einsum.Params(tuple(specs.split(",")), kept, p.spare))
    if len(kept) < len(unique):
        r = reshape(r, tuple(r.shape[kept.index(c)] if c in kept else 1 for c in unique))
        r = broadcast_to(r, tuple(size_of[c] if c not in kept else r.shape[unique.index(c)]
                                  for c in unique))
    if len(unique) < len(target):
        spare = iter(p.spare)
        full, eyes, seen = [], [], set()
        for c in target:
            if c in seen:
                f = next(spare)
                full.append(f)
                eyes.append(c + f)
            else:
                seen.add(c)
                full.append(c)
        xp = xp_of(r)
        mats = [fixed_like(xp.eye(size_of[e[0]], dtype=raw(r).dtype), r) for e in eyes]
        r = apply(Einsum, (r,) + tuple(mats),
                  Einsum.Params((unique,) + tuple(eyes), "".join(full), ""))
    if tuple(r.shape) != tuple(x.shape):
        r = sum_to(r, tuple(x.shape))
    return r


def einsum(equation, *operands):
    """Einstein summation, as torch.einsum (operands as arguments or one list)."""
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    specs, out, spare = _parse_einsum(equation, [o.ndim for o in operands])
    sizes = {}
    for spec, o in zip(specs, operands):
        for c, n in zip(spec, o.shape):
            if sizes.get(c, n) != n and 1 not in (n, sizes[c]):
                raise ValueError(f"einsum(): subscript {c!r} has size {n} for one operand "
                                 f"and {sizes[c]} for another (equation {equation!r}, shapes "
                                 + ", ".join(shape_str(o.shape) for o in operands) + ")")
            sizes[c] = n if sizes.get(c, 1) == 1 else sizes[c]
    for c in out:
        if c not in sizes:
            raise ValueError(f"einsum(): output subscript {c!r} appears in no input")
    return apply(Einsum, tuple(operands), Einsum.Params(specs, out, spare))


def tensordot(a, b, dims=2):
    """Sum of products over the last ``dims`` dimensions of a and the first of b, or over
    the listed pairs ``([a dims], [b dims])``."""
    if isinstance(dims, (int, np.integer)):
        n = int(dims)
        if n < 0 or n > a.ndim or n > b.ndim:
            raise ValueError(f"tensordot: dims ({n}) must be between 0 and the dimensions "
                             f"of both tensors ({a.ndim}, {b.ndim})")
        da, db = list(range(a.ndim - n, a.ndim)), list(range(n))
    else:
        da, db = dims
        da = [da] if isinstance(da, int) else list(da)
        db = [db] if isinstance(db, int) else list(db)
        if len(da) != len(db):
            raise ValueError(f"tensordot: both dimension lists should have the same length, "
                             f"got {da} and {db}")
        da, db = list(_dims(da, a.ndim)), list(_dims(db, b.ndim))
    letters = iter(_LETTERS)
    sa = [next(letters) for _ in range(a.ndim)]
    sb = [next(letters) for _ in range(b.ndim)]
    for i, j in zip(da, db):
        if a.shape[i] != b.shape[j]:
            raise ValueError(f"tensordot: contracted dimensions have sizes {a.shape[i]} and "
                             f"{b.shape[j]} (shapes {shape_str(a.shape)}, "
                             f"{shape_str(b.shape)})")
        sb[j] = sa[i]
    out = [c for k, c in enumerate(sa) if k not in da] + \
        [c for k, c in enumerate(sb) if k not in db]
    return einsum("".join(sa) + "," + "".join(sb) + "->" + "".join(out), a, b)


def outer(a, b):
    """The outer product of two 1-D tensors."""
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"outer: expected 1-D tensors, got shapes {shape_str(a.shape)} and "
                         f"{shape_str(b.shape)}")
    return reshape(a, (-1, 1)) * b


ger = outer


def meshgrid(*tensors, indexing="ij"):
    """Coordinate grids from 1-D tensors (views): 'ij' (matrix, the default) or 'xy'."""
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing not in ("ij", "xy"):
        raise ValueError(f"meshgrid: indexing must be 'ij' or 'xy', got {indexing!r}")
    for t in tensors:
        if t.ndim > 1:
            raise ValueError(f"meshgrid: expected 0-D or 1-D tensors, got shape "
                             f"{shape_str(t.shape)}")
    tensors = [reshape(t, (-1,)) for t in tensors]
    swap = indexing == "xy" and len(tensors) >= 2
    if swap:
        tensors[0], tensors[1] = tensors[1], tensors[0]
    shape = tuple(t.shape[0] for t in tensors)
    grids = []
    for i, t in enumerate(tensors):
        view = [1] * len(shape)
        view[i] = shape[i]
        grids.append(broadcast_to(reshape(t, tuple(view)), shape))
    if swap:
        grids[0], grids[1] = grids[1], grids[0]
    return tuple(grids)
