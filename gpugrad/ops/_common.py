"""Small helpers shared by the op declarations. Rules run on Tensors (a recorded backward)
and on bare arrays (one that records nothing), so the helpers accept both."""
from __future__ import annotations

import numpy as np

from .. import _device
from .._tensor import Tensor, wrap


def raw(x):
    """The array behind a tensor, or the value itself (an array, a Python scalar)."""
    return x._data if isinstance(x, Tensor) else x


def xp_of(x):
    """The array module of a tensor or an array."""
    return x.device.xp if isinstance(x, Tensor) else _device.array_module(x)


def refuse_host_work(what):
    """Raise while this thread records a step for gg.compile: ``what`` is computed on the
    host from the data, outside the kernels, and a replay would reuse the recorded result
    (a wrong number, silently)."""
    if _device.recording_thread is not None:
        _device.refuse_while_recording(
            what, "it is computed on the host from the step's data, so a replay would reuse "
            "the recorded result; do it outside the compiled step")


def const_like(arr, like):
    """A freshly computed array as a constant beside ``like``: a tensor on its device if
    ``like`` is a tensor, the array itself if ``like`` is an array."""
    if _device.recording_thread is not None:
        _device.refuse_while_recording(
            "a derivative computed outside the kernels (a sign, mask or weight array)",
            "a replay would reuse the recorded one; this op's backward cannot be compiled yet")
    if isinstance(like, Tensor):
        return wrap(like.device.adopt(arr), like.device)
    return arr


def fixed_like(arr, like):
    """A constant that depends on shapes and dtypes only (an identity matrix, a one) beside
    ``like``, as ``const_like``; gg.compile may keep it in a recording, since every replay
    would compute the same."""
    if isinstance(like, Tensor):
        return wrap(like.device.adopt(arr), like.device)
    return arr


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


def dim_args(name, dim, keepdim, axis=None, keepdims=None):
    """PyTorch's ``dim``/``keepdim`` with NumPy's ``axis``/``keepdims`` accepted as aliases,
    as PyTorch does: returns ``(dim, keepdim)``; giving a value and its alias is an error."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{name}: got both dim={dim!r} and its alias axis={axis!r}")
        dim = axis
    if keepdims is not None:
        if keepdim and not keepdims:
            raise TypeError(f"{name}: got both keepdim={keepdim!r} and its alias "
                            f"keepdims={keepdims!r}")
        keepdim = keepdims
    return dim, bool(keepdim)


def keepdims_shape(shape, axes):
    return tuple(1 if i in axes else s for i, s in enumerate(shape))


def broadcast_shapes(*shapes):
    try:
        return np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError("shapes " + " and ".join(shape_str(s) for s in shapes)
                         + " cannot be broadcast together") from None


def prod(shape):
    n = 1
    for s in shape:
        n *= int(s)
    return n


def elementwise_cost(flops_per_element):
    """A cost model: so many FLOPs per output element, every operand read once."""
    def cost(self, in_shapes, out_shape, p):
        n = prod(out_shape)
        return flops_per_element * n, n * (len(in_shapes) + 1)
    return cost


# -- type promotion (PyTorch's) -------------------------------------------------------------------
# "V": bfloat16 (ml_dtypes), the one dtype of that NumPy kind a tensor can hold
_KIND_RANK = {"b": 0, "u": 1, "i": 1, "f": 2, "V": 2, "c": 3}
DEFAULT_FLOAT = np.dtype(np.float32)
_SCALAR_DTYPES = {bool: np.dtype(bool), int: np.dtype(np.int64), float: DEFAULT_FLOAT,
                  complex: np.dtype(np.complex64)}


def kind_rank(dtype):
    """bool < integer < floating < complex: the categories of PyTorch's promotion."""
    return _KIND_RANK[dtype.kind]


def promote_types(a, b):
    """PyTorch's ``promote_types``: within a category the wider type (as NumPy), across
    categories the type of the higher category (int64 with float16 gives float16)."""
    if a == b:
        return a
    ra, rb = _KIND_RANK[a.kind], _KIND_RANK[b.kind]
    if ra != rb and (ra < 2 or rb < 2):
        return a if ra > rb else b
    if {a.kind, b.kind} == {"f", "V"} and a.itemsize == b.itemsize == 2:
        return DEFAULT_FLOAT      # bfloat16 with float16: float32, as PyTorch (NumPy has none)
    return np.promote_types(a, b)


def _combine(higher, lower):
    if higher is None:
        return lower
    if lower is None:
        return higher
    if higher.kind == "c" or (higher.kind in "fV" and lower.kind != "c"):
        return higher
    if higher.kind == "b" or _KIND_RANK[lower.kind] >= 2:
        return promote_types(higher, lower)
    return higher


def scalar_dtype(value):
    """The dtype a Python or NumPy scalar stands for in promotion (the default float for
    floats, as PyTorch)."""
    if isinstance(value, (bool, np.bool_)):
        return _SCALAR_DTYPES[bool]
    if isinstance(value, (int, np.integer)):
        return _SCALAR_DTYPES[int]
    if isinstance(value, (float, np.floating)):
        return DEFAULT_FLOAT
    return _SCALAR_DTYPES[complex]


def result_type(*operands):
    """PyTorch's result type of an op on these operands (tensors, arrays, scalars): tensors
    with dimensions decide within a category; 0-d tensors and arrays only when of a higher
    category; scalars (Python's and NumPy's) only lift the category, to its default type."""
    dims = zeros = scalars = None
    for x in operands:
        if isinstance(x, Tensor) or (hasattr(x, "ndim") and not isinstance(x, np.generic)):
            dt = x.dtype
            if x.ndim:
                dims = dt if dims is None else promote_types(dims, dt)
            else:
                zeros = dt if zeros is None else promote_types(zeros, dt)
        else:
            dt = scalar_dtype(x)
            scalars = dt if scalars is None else promote_types(scalars, dt)
    return _combine(dims, _combine(zeros, scalars))


def plain_scalar(value):
    """A NumPy scalar as the Python scalar of its kind (weakly typed in NumPy kernels)."""
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating):
        return float(value)
    if isinstance(value, np.complexfloating):
        return complex(value)
    return value


def computed(arr, dev):
    """A result computed outside the kernels, with nothing to differentiate (a comparison,
    an index, a bool reduction), as a constant tensor on ``dev``. One place for such
    results, so that a step recorder can refuse them (a replay would reuse them)."""
    refuse_host_work("a result computed outside the kernels (an index, a comparison, a "
                     "bool reduction)")
    return wrap(dev.adopt(arr), dev)
