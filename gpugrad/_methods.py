"""Operators and methods of Tensor, bound to the ops and to autograd: the tensor module
below knows nothing of either."""
from __future__ import annotations

import numpy as np

from . import _device, _methods_ops, creation, ops
from ._autograd.backward import backward, register_post_accumulate_grad_hook
from ._autograd.graph import apply
from ._autograd.mode import no_grad, state
from ._tensor import Tensor, bump_version, wrap
from .ops._common import kind_rank, refuse_host_work, shape_str
from .ops.elementwise import Add, Div, Mul, Pow, Sub, cast, promote, to_float, where
from .ops.shape import flat_positions, index_put, index_steps, view_positions

_SCALARS = (int, float, bool, np.number, np.bool_)
_FAST_SCALARS = frozenset((int, float))
_ndarray = np.ndarray


def _operand(value, like):
    """A Python scalar stays as it is (NumPy treats it as weakly typed); an array or
    list becomes a constant tensor on ``like``'s device."""
    if isinstance(value, (Tensor,) + _SCALARS):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__") or hasattr(value, "dtype"):
        return wrap(like.device.asarray(value), like.device)
    return NotImplemented


# (number, dtype) -> a read-only 0-d NumPy array holding it in that dtype
_scalar_arrays: dict = {}
_SCALAR_ARRAYS_MAX = 256


def _scalar_array(value, dtype):
    """A Python number beside a floating NumPy array as a 0-d array of the array's dtype:
    NumPy then runs its array loop, twice as fast as its path for a Python scalar, in the
    forward and again in every rule that multiplies by it. The value is the one NumPy
    would use (the number cast to ``dtype``). Zero (whose sign a key cannot tell), NaN
    and numbers that do not fit the dtype stay Python numbers."""
    arr = _scalar_arrays.get((value, dtype))
    if arr is not None:
        return arr
    if not value or value != value or abs(value) > 1e30:
        return value
    with np.errstate(over="ignore"):
        arr = np.array(value, dtype)
    if not np.isfinite(arr):
        return value
    arr.flags.writeable = False
    if len(_scalar_arrays) >= _SCALAR_ARRAYS_MAX:
        _scalar_arrays.clear()
    _scalar_arrays[(value, dtype)] = arr
    return arr


def _binary(op, true_division=False, scalar_arrays=True):
    """The operator and its reflection, calling ``apply`` directly: they are the
    busiest entry points of the engine. Operands are promoted as PyTorch does; the common
    cases (same dtype, a Python scalar) cost one dtype test."""
    def prepare(self, other):
        cls = other.__class__
        if cls is Tensor:
            if other._data.dtype is not self._data.dtype:
                return promote(self, other)
        elif cls is float:
            kind = self._data.dtype.kind
            if kind not in "fc":
                if kind == "V":      # bfloat16: a typed scalar, or ml_dtypes gives float32
                    other = self._data.dtype.type(other)
                else:
                    self = to_float(self)
        elif cls is not int:
            other = _operand(other, self)
            if other is NotImplemented:
                return None, None
            return promote(self, other)
        return self, other

    if true_division:
        def prepare_div(self, other):
            self, other = prepare(self, other)
            if self is not None and self._data.dtype.kind not in "fcV":
                self = to_float(self)    # integers divide into the default float
                if isinstance(other, Tensor):
                    other = to_float(other)
            return self, other
    else:
        prepare_div = prepare

    def forward(self, other):
        cls = other.__class__
        # the common cases need no promotion: a tensor of the same dtype (but integers
        # under true division), a Python number with a floating tensor, an int with an int
        if cls is Tensor:
            if other._data.dtype is self._data.dtype and (
                    not true_division or self._data.dtype.kind in "fc"):
                return apply(op, (self, other))
        elif cls is float or cls is int:
            data = self._data
            kind = data.dtype.kind
            if kind == "f" and scalar_arrays and data.__class__ is _ndarray:
                return apply(op, (self, _scalar_array(other, data.dtype)))
            if kind in "fc" or (cls is int and not true_division):
                return apply(op, (self, other))
        a, b = prepare_div(self, other)
        if a is None:
            return NotImplemented
        return apply(op, (a, b))

    def reflected(self, other):
        cls = other.__class__
        data = self._data
        kind = data.dtype.kind
        if cls is float or cls is int:
            if kind == "f" and scalar_arrays and data.__class__ is _ndarray:
                return apply(op, (_scalar_array(other, data.dtype), self))
            if kind in "fc" or (cls is int and not true_division):
                return apply(op, (other, self))
        a, b = prepare_div(self, other)
        if a is None:
            return NotImplemented
        return apply(op, (b, a))
    return forward, reflected


def _compare(ufunc_name):
    def method(self, other):
        other = _operand(other, self)
        if other is NotImplemented:
            return NotImplemented
        if _device.recording_thread is not None:
            _device.refuse_while_recording(
                f"a comparison ({ufunc_name})", "its mask is made outside the kernels, so a "
                "replay would reuse the recorded one; compare outside the compiled step")
        a = self._data
        b = other._data if isinstance(other, Tensor) else other
        if isinstance(other, Tensor) and other.device is not self.device:
            raise ValueError(f"comparison of tensors on devices {self.device} and "
                             f"{other.device}")
        try:
            result = getattr(self.device.xp, ufunc_name)(a, b)
        except ValueError:
            raise ValueError(f"shapes {tuple(self.shape)} and "
                             f"{tuple(np.shape(b))} cannot be broadcast together") from None
        return wrap(self.device.adopt(result), self.device)
    return method


def _matmul_operand(value, like):
    value = _operand(value, like)
    if isinstance(value, _SCALARS):
        raise ValueError("matmul: a scalar operand is not allowed, use *")
    return value


def _to(self, target, dtype=None):
    """A copy on another device or with another dtype (differentiable)."""
    out = self
    if isinstance(target, (str, _device.Device)):
        dev = _device.device(target)
        if dev is not self.device:
            out = ops.to_device(out, dev)
    elif target is not None:
        dtype = target
    if dtype is not None and np.dtype(dtype) != out.dtype:
        out = ops.cast(out, dtype)
    return out


def _backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate d(self)/d(leaf) into every leaf's ``.grad`` (or only into ``inputs``)."""
    backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph,
             inputs=inputs)


# -- in-place ops ---------------------------------------------------------------------------------
_LEAF_INPLACE = "a leaf Variable that requires grad is being used in an in-place operation."
_VIEW_LEAF_INPLACE = ("a view of a leaf Variable that requires grad is being used in an "
                      "in-place operation.")


def _differentiable(x):
    return isinstance(x, Tensor) and (x._node is not None or bool(x._tangents))


def _alias(t, copy):
    """Another tensor object for t's current value and graph (its own array when ``copy``:
    the value before an in-place write, kept for a backward that needs it)."""
    out = wrap(t._data.copy() if copy else t._data, t.device)
    out._node = t._node
    out._tangents = t._tangents
    if not copy:
        out._ver = t._ver
    return out


def _root(t):
    base = getattr(t, "_base", None)
    while base is not None:
        t = base
        base = getattr(t, "_base", None)
    return t


def _conform_result(self, new, cast_any):
    if new.shape != self.shape:
        raise RuntimeError(f"output with shape {shape_str(self.shape)} doesn't match the "
                           f"broadcast shape {shape_str(new.shape)}")
    if new.dtype != self.dtype:
        if not cast_any and kind_rank(new.dtype) > kind_rank(self.dtype):
            raise RuntimeError(f"result type {new.dtype} can't be cast to the desired output "
                               f"type {self.dtype} (an in-place op keeps the tensor's dtype)")
        new = cast(new, self.dtype)
    return new


def _adopt_graph(t, new):
    """t now holds new's value: it takes new's place in the graph. A retained gradient
    moves with it; hooks stay with the value they were registered on (as PyTorch)."""
    old = t._node
    t._node = new._node
    t._tangents = new._tangents
    if old is not None and old.retained is not None and old.retained.retain \
            and old.retained.tensor() is t:
        old.retained.retain = False
        if t._node is not None and t._node.leaf is None:
            t._hooks().retain = True


def _inplace(self, compute, value=None, linear=False, cast_any=False):
    """Replace self's values by ``compute(self, value)`` in place, keeping the object, its
    storage (views see the write) and bumping its version counter. Recorded when grad
    mode is on and something requires grad: then self (and, written through a view, its
    base) takes the result's place in the graph."""
    node = self._node
    if not (state.grad_enabled and (node is not None or _differentiable(value))
            or self._tangents or _differentiable(value) and value._tangents):
        with no_grad():
            new = _conform_result(self, compute(self, value), cast_any)
        self._data[...] = new._data
        bump_version(self._ver)
        return self
    if node is not None and node.leaf is not None:
        raise RuntimeError(_LEAF_INPLACE)
    root = _root(self)
    if root is not self and root._node is not None and root._node.leaf is not None:
        raise RuntimeError(_VIEW_LEAF_INPLACE)
    # the value before the write, as a tensor of its own: a rule that saved it stays right
    src = _alias(self, copy=not linear)
    new = _conform_result(self, compute(src, src if value is self else value), cast_any)
    if root is self:
        self._data[...] = new._data
        _adopt_graph(self, new)
        _rederive_views(root, self, ops.reshape(new, (-1,)))
    else:
        _write_through_view(root, self, new)
    bump_version(self._ver)
    return self


def apply_inplace(self, fn, saves_input=True):
    """self's values replaced by ``fn(self)`` in place (``relu_``, ``F.silu(x, inplace=True)``),
    recorded as the other in-place ops; returns self. ``saves_input=False`` for an ``fn``
    whose backward needs only its output: the old value is then not copied aside."""
    if not isinstance(self, Tensor):
        raise TypeError(f"an in-place op needs a Tensor, got {type(self).__name__}")
    return _inplace(self, lambda s, v: fn(s), None, linear=not saves_input)


def _rederive_views(root, written, flat):
    """Every other live recorded view of ``root`` (noted on the shared version counter)
    takes its elements of the new base as its graph, as the written chain does: used
    after the write, it sends gradients through the new graph, as in PyTorch."""
    for ref in root._ver[1:]:
        t = ref()
        if t is None or t is written or t._node is None or t._node.leaf is not None:
            continue
        _adopt_graph(t, ops.getitem(flat, view_positions(root._data, t._data), False))


def _write_through_view(root, view, new):
    """An in-place write to a view, recorded: the base becomes its old value with the
    view's elements replaced (gradients reach both), and every tensor on the chain from
    the view to the base is re-derived from the new base."""
    positions = view_positions(root._data, view._data)
    xp = root.device.xp
    if int(xp.unique(positions).size) != positions.size:
        raise RuntimeError("unsupported operation: more than one element of the written-to "
                           "tensor refers to a single memory location (an expanded view); "
                           "clone it before writing in place")
    new_root = index_put(_alias(root, copy=False), positions, new)
    root._data[...] = new_root._data
    flat = new_root.reshape(-1)
    t = view
    while t is not root:
        _adopt_graph(t, ops.getitem(flat, view_positions(root._data, t._data), False))
        t = t._base
    _adopt_graph(root, new_root)
    _rederive_views(root, view, flat)


def _fill(s, v):
    """v broadcast to s's shape, as a function of both (gradient zero to s)."""
    keep = wrap(s.device.allocate(s.device.xp.zeros, s.shape, bool), s.device)
    if isinstance(v, Tensor) and v.device is not s.device:
        v = ops.to_device(v, s.device)
    return where(keep, s, v)


def _setitem(self, index, value):
    """self[index] = value, in place, with PyTorch's indexing rules."""
    dev = self.device
    if isinstance(value, Tensor) and value.device is not dev:
        if value.ndim:
            raise ValueError(f"setitem: value on device {value.device} written into a tensor "
                             f"on device {dev}")
        value = value.item()
    steps = index_steps(index, dev)
    if state.grad_enabled and (self._node is not None or _differentiable(value)) \
            or self._tangents or _differentiable(value):
        positions = flat_positions(self.shape, steps, dev)
        _inplace(self, lambda s, v: index_put(s, positions, v), value, linear=True,
                 cast_any=True)
        return
    target = self._data
    for step, _ in steps[:-1]:
        target = target[step]
    arr = value._data if isinstance(value, Tensor) else value
    try:
        target[steps[-1][0]] = arr
    except ValueError as err:
        raise ValueError(f"setitem: value of shape {shape_str(getattr(arr, 'shape', ()))} "
                         f"does not fit index {index!r} of a tensor of shape "
                         f"{shape_str(self.shape)}: {err}") from None
    bump_version(self._ver)


def _scaled(v, alpha):
    return v if alpha == 1 else v * alpha


def _install_inplace(T):
    T.__iadd__ = lambda self, other: _inplace(self, lambda s, v: s + v, other, True)
    T.__isub__ = lambda self, other: _inplace(self, lambda s, v: s - v, other, True)
    T.__imul__ = lambda self, other: _inplace(self, lambda s, v: s * v, other)
    T.__itruediv__ = lambda self, other: _inplace(self, lambda s, v: s / v, other)
    T.__ipow__ = lambda self, other: _inplace(self, lambda s, v: s ** v, other)
    T.add_ = lambda self, other, alpha=1: _inplace(
        self, lambda s, v: s + _scaled(v, alpha), other, True)
    T.sub_ = lambda self, other, alpha=1: _inplace(
        self, lambda s, v: s - _scaled(v, alpha), other, True)
    T.mul_ = lambda self, other: _inplace(self, lambda s, v: s * v, other)
    T.div_ = lambda self, other: _inplace(self, lambda s, v: s / v, other)
    T.pow_ = lambda self, other: _inplace(self, lambda s, v: s ** v, other)
    T.zero_ = lambda self: _inplace(self, _fill, 0, True)
    T.fill_ = _fill_
    T.copy_ = lambda self, src, non_blocking=False: _inplace(self, _fill, _operand(src, self),
                                                             True, cast_any=True)
    T.clamp_ = lambda self, min=None, max=None: _inplace(
        self, lambda s, v: ops.clip(s, min, max), None)
    T.clip_ = T.clamp_
    _install_selection_inplace(T)
    T.relu_ = lambda self: apply_inplace(self, ops.relu, saves_input=False)
    T.sigmoid_ = lambda self: apply_inplace(self, ops.sigmoid, saves_input=False)
    T.tanh_ = lambda self: apply_inplace(self, ops.tanh, saves_input=False)
    T.__setitem__ = _setitem


def _scatter_(self, dim, index, src=None, value=None, *, reduce=None):
    """x.scatter_(dim, index, src) or (dim, index, value); ``reduce='add'`` adds instead."""
    if src is None and value is None:
        raise TypeError("scatter_(): expected src or value")
    if not isinstance(src, Tensor):
        src, value = None, src if src is not None else value
    if reduce is None:
        return _inplace(self, lambda s, v: ops.scatter(s, dim, index, v, value), src, True)
    if reduce != "add":
        raise NotImplementedError(f"scatter_(): reduce={reduce!r} is not supported (only "
                                  "'add'; PyTorch deprecates the argument)")
    return _inplace(self, lambda s, v: ops.scatter_add(s, dim, index, value if v is None else v),
                    src, True)


def _install_selection_inplace(T):
    """PyTorch's in-place selection methods (each the out-of-place op, written in place)."""
    T.scatter_ = _scatter_
    T.scatter_add_ = lambda self, dim, index, src: _inplace(
        self, lambda s, v: ops.scatter_add(s, dim, index, v), src, True)
    T.scatter_reduce_ = lambda self, dim, index, src, reduce, *, include_self=True: _inplace(
        self, lambda s, v: ops.scatter_reduce(s, dim, index, v, reduce,
                                              include_self=include_self), src)
    T.index_add_ = lambda self, dim, index, source, *, alpha=1: _inplace(
        self, lambda s, v: ops.index_add(s, dim, index, v, alpha=alpha), source, True)
    T.index_copy_ = lambda self, dim, index, source: _inplace(
        self, lambda s, v: ops.index_copy(s, dim, index, v), source, True)
    T.index_fill_ = lambda self, dim, index, value: _inplace(
        self, lambda s, v: ops.index_fill(s, dim, index, v), value, True)
    T.masked_fill_ = lambda self, mask, value: _inplace(
        self, lambda s, v: ops.masked_fill(s, mask, v), value, True)
    T.masked_scatter_ = lambda self, mask, source: _inplace(
        self, lambda s, v: ops.masked_scatter(s, mask, v), source, True)
    T.index_put_ = lambda self, indices, values, accumulate=False: _inplace(
        self, lambda s, v: index_put(s, indices, v, accumulate), values, True, cast_any=True)
    T.index_put = lambda self, indices, values, accumulate=False: index_put(
        self, indices, values, accumulate)
    for name in ("index_add", "index_copy", "index_fill"):
        setattr(T, name, getattr(ops, name))


def _fill_(self, value):
    if isinstance(value, Tensor) and value.ndim:
        raise RuntimeError(f"fill_ only supports 0-dimension value tensor but got tensor with "
                           f"{value.ndim} dimensions.")
    return _inplace(self, _fill, value, True, cast_any=True)


_CONVERSIONS = tuple((name, np.dtype(t)) for name, t in (
    ("float", np.float32), ("double", np.float64), ("half", np.float16), ("long", np.int64),
    ("int", np.int32), ("bool", np.bool_), ("short", np.int16), ("char", np.int8),
    ("byte", np.uint8)))


# -- PyTorch's method spellings of the operators and the habits around them ------------------
def _div(self, other, *, rounding_mode=None):
    if rounding_mode is None:
        return self / other
    if rounding_mode == "floor":
        return ops.floor_divide(self, other)
    if rounding_mode == "trunc":
        if self.dtype.kind in "fV" or getattr(other, "dtype", np.dtype(type(other))).kind == "f":
            return ops.trunc(self / other)
        return ops.floor_divide(self - ops.fmod(self, other), other)   # exact on integers
    raise ValueError(f"div expected rounding_mode to be one of None, 'trunc', or 'floor' but "
                     f"found '{rounding_mode}'")


def _matrix_product(name, ndim):
    def product(self, other):
        if self.ndim != ndim or getattr(other, "ndim", None) != ndim:
            raise ValueError(f"{name}: expected {ndim}-D tensors, got shapes "
                             f"{shape_str(self.shape)} and "
                             f"{shape_str(getattr(other, 'shape', ()))}")
        return ops.matmul(self, other)
    return product


def _t(self):
    if self.ndim > 2:
        raise ValueError(f"t() expects a tensor with <= 2 dimensions, but self is "
                         f"{self.ndim}D")
    return ops.transpose(self, 0, 1) if self.ndim == 2 else self


def _new(make):
    """``x.new_zeros(...)`` and its kin: x's dtype and device unless given."""
    def method(self, *args, dtype=None, device=None, requires_grad=False, **kwargs):
        return make(*args, dtype=self.dtype if dtype is None else dtype,
                    device=self.device if device is None else device,
                    requires_grad=requires_grad, **kwargs)
    return method


# in-place forms of the unary maths: name -> whether its backward needs nothing of its input
# (it saves its output or nothing): no copy of the old value is kept then
_UNARY_INPLACE = {"exp": True, "log": False, "sqrt": True, "abs": False, "neg": True,
                  "square": False, "sin": False, "cos": False, "sign": True, "floor": True,
                  "ceil": True, "round": True, "trunc": True, "log1p": False,
                  "expm1": True, "rsqrt": True, "erf": False}


def _count_nonzero(self, dim=None):
    """The number of non-zero elements over ``dim`` (all when None), as int64."""
    if dim is None:
        dim = tuple(range(self.ndim))
    return ops.sum(ops.ne(self, 0), dim).to(np.int64)


def _nonzero(self, *, as_tuple=False):
    """The indices of the non-zero elements: (n, ndim) int64, or one 1-D tensor per dim."""
    refuse_host_work("nonzero")
    dev = self.device
    xp = dev.xp
    found = xp.nonzero(self._data.reshape(1) if self.ndim == 0 else self._data)
    parts = [wrap(dev.adopt(i.astype(np.int64)), dev) for i in found]
    if as_tuple:
        return tuple(parts)
    if self.ndim == 0:          # one row per non-zero element, of no coordinates
        return wrap(dev.adopt(xp.zeros((int(found[0].size), 0), dtype=np.int64)), dev)
    return ops.stack(parts, 1)


def _diff(self, n=1, dim=-1, prepend=None, append=None):
    """The n-th forward difference along ``dim``, as torch.diff."""
    if self.ndim == 0:
        raise RuntimeError("diff expects input to be at least one-dimensional")
    x = self
    if prepend is not None or append is not None:
        x = ops.cat([t for t in (prepend, x, append) if t is not None], dim)
    for _ in range(n):
        size = x.shape[dim]
        if size == 0:
            break
        later, earlier = ops.narrow(x, dim, 1, size - 1), ops.narrow(x, dim, 0, size - 1)
        x = ops.ne(later, earlier) if x.dtype == np.bool_ else later - earlier
    return x


def _install_habits(T):
    T.addcmul = lambda self, t1, t2, *, value=1: self + _scaled(t1 * t2, value)
    T.addcdiv = lambda self, t1, t2, *, value=1: self + _scaled(t1 / t2, value)
    T.addcmul_ = lambda self, t1, t2, *, value=1: self.add_(t1 * t2, alpha=value)
    T.addcdiv_ = lambda self, t1, t2, *, value=1: self.add_(t1 / t2, alpha=value)
    T.count_nonzero = _count_nonzero
    T.nonzero = _nonzero
    T.diff = _diff
    T.add = lambda self, other, *, alpha=1: self + _scaled(other, alpha)
    T.sub = lambda self, other, *, alpha=1: self - _scaled(other, alpha)
    T.subtract = T.sub
    T.mul = T.multiply = lambda self, other: self * other
    T.div = T.divide = _div
    T.true_divide = lambda self, other: self / other
    T.pow = lambda self, exponent: self ** exponent
    T.neg = T.negative = lambda self: -self
    T.reciprocal = lambda self: 1.0 / self
    T.maximum = lambda self, other: ops.maximum(self, other)
    T.minimum = lambda self, other: ops.minimum(self, other)
    T.clamp_min = lambda self, min: ops.clip(self, min=min)
    T.clamp_max = lambda self, max: ops.clip(self, max=max)
    T.clamp_min_ = lambda self, min: self.clamp_(min=min)
    T.clamp_max_ = lambda self, max: self.clamp_(max=max)
    T.type_as = lambda self, other: _to(self, other.dtype)
    T.reshape_as = lambda self, other: ops.reshape(self, tuple(other.shape))
    T.new_zeros = _new(creation.zeros)
    T.new_ones = _new(creation.ones)
    T.new_empty = _new(creation.empty)
    T.new_full = _new(creation.full)
    T.new_tensor = _new(creation.tensor)
    T.mm = _matrix_product("mm", 2)
    T.bmm = _matrix_product("bmm", 3)
    T.dot = _matrix_product("dot", 1)
    T.t = _t
    T.is_floating_point = lambda self: self.dtype.kind in "fV"
    T.is_contiguous = lambda self: bool(self._data.flags.c_contiguous)
    T.element_size = lambda self: self.dtype.itemsize
    T.nelement = lambda self: self.numel()
    T.ndimension = lambda self: self.ndim
    for name, output_only in _UNARY_INPLACE.items():
        fn = getattr(ops, name)
        setattr(T, name + "_", lambda self, _f=fn, _o=output_only: apply_inplace(
            self, _f, saves_input=not _o))


def _install():
    T = Tensor
    T.__add__, T.__radd__ = _binary(Add)
    T.__sub__, T.__rsub__ = _binary(Sub)
    T.__mul__, T.__rmul__ = _binary(Mul)
    T.__truediv__, T.__rtruediv__ = _binary(Div, true_division=True)
    # a power keeps its Python exponent: its rules look at it (x ** 0, integer powers)
    T.__pow__, T.__rpow__ = _binary(Pow, scalar_arrays=False)
    T.__matmul__ = lambda a, b: ops.matmul(a, _matmul_operand(b, a))
    T.__rmatmul__ = lambda a, b: ops.matmul(_matmul_operand(b, a), a)
    T.__neg__ = ops.neg
    T.__pos__ = lambda a: a
    T.__abs__ = ops.abs
    for name, ufunc in (("__lt__", "less"), ("__le__", "less_equal"), ("__gt__", "greater"),
                        ("__ge__", "greater_equal"), ("__eq__", "equal"),
                        ("__ne__", "not_equal")):
        setattr(T, name, _compare(ufunc))
    T.__getitem__ = ops.getitem
    for name in ("exp", "log", "tanh", "sigmoid", "relu", "sqrt", "abs", "sin", "cos",
                 "softmax", "log_softmax", "logsumexp", "sum", "mean", "max", "min", "matmul",
                 "clip", "reshape", "transpose", "permute", "broadcast_to"):
        setattr(T, name, getattr(ops, name))
    T.clamp = ops.clip
    T.view = ops.reshape
    T.flatten = lambda self: ops.reshape(self, (-1,))
    _install_inplace(T)
    T.__hash__ = object.__hash__
    T.to = _to
    for name, dtype in _CONVERSIONS:
        setattr(T, name, lambda self, _d=dtype: _to(self, _d))
    T.cpu = lambda self: _to(self, "cpu")
    T.cuda = lambda self, index=0: _to(self, f"cuda:{index}")
    T.backward = _backward
    _methods_ops.install(T)          # PyTorch's op set: maths, reductions, movement
    _install_habits(T)
    T.register_post_accumulate_grad_hook = register_post_accumulate_grad_hook


_install()
