"""Operators and methods of Tensor, bound to the ops and to autograd: the tensor module
below knows nothing of either."""
from __future__ import annotations

import numpy as np

from . import _device, ops
from ._autograd.backward import backward
from ._autograd.graph import apply
from ._tensor import Tensor, wrap
from .ops.elementwise import Add, Div, Mul, Pow, Sub

_SCALARS = (int, float, bool, np.number, np.bool_)
_FAST_SCALARS = frozenset((int, float))


def _operand(value, like):
    """A Python scalar stays as it is (NumPy treats it as weakly typed); an array or
    list becomes a constant tensor on ``like``'s device."""
    if isinstance(value, (Tensor,) + _SCALARS):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__") or hasattr(value, "dtype"):
        return wrap(like.device.asarray(value), like.device)
    return NotImplemented


def _binary(op):
    """The operator and its reflection, calling ``apply`` directly: they are the
    busiest entry points of the engine."""
    def forward(self, other):
        if other.__class__ is not Tensor and other.__class__ not in _FAST_SCALARS:
            other = _operand(other, self)
            if other is NotImplemented:
                return NotImplemented
        return apply(op, (self, other))

    def reflected(self, other):
        if other.__class__ is not Tensor and other.__class__ not in _FAST_SCALARS:
            other = _operand(other, self)
            if other is NotImplemented:
                return NotImplemented
        return apply(op, (other, self))
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


def _backward(self, gradient=None, retain_graph=None, create_graph=False):
    """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
    backward(self, gradient, retain_graph=retain_graph, create_graph=create_graph)


def _install():
    T = Tensor
    T.__add__, T.__radd__ = _binary(Add)
    T.__sub__, T.__rsub__ = _binary(Sub)
    T.__mul__, T.__rmul__ = _binary(Mul)
    T.__truediv__, T.__rtruediv__ = _binary(Div)
    T.__pow__, T.__rpow__ = _binary(Pow)
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
                 "softmax", "log_softmax", "logsumexp", "sum", "mean", "max", "matmul",
                 "clip"):
        setattr(T, name, getattr(ops, name))
    T.reshape = ops.reshape
    T.view = ops.reshape
    T.transpose = ops.transpose
    T.broadcast_to = ops.broadcast_to
    T.flatten = lambda self: ops.reshape(self, (-1,))
    T.__hash__ = object.__hash__
    T.to = _to
    T.cpu = lambda self: _to(self, "cpu")
    T.cuda = lambda self, index=0: _to(self, f"cuda:{index}")
    T.backward = _backward


_install()
