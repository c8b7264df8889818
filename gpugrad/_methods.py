"""Operators and math methods of Tensor, bound to the ops."""
from __future__ import annotations

import numpy as np

from . import ops
from ._tensor import Tensor, wrap

_SCALARS = (int, float, bool, np.number, np.bool_)


def _operand(value, like):
    """A Python scalar stays as it is (NumPy treats it as weakly typed); an array or
    list becomes a constant tensor on ``like``'s device."""
    if isinstance(value, (Tensor,) + _SCALARS):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__") or hasattr(value, "dtype"):
        return wrap(like.device.asarray(value), like.device)
    return NotImplemented


def _binary(fn):
    def forward(self, other):
        other = _operand(other, self)
        return NotImplemented if other is NotImplemented else fn(self, other)

    def reflected(self, other):
        other = _operand(other, self)
        return NotImplemented if other is NotImplemented else fn(other, self)
    return forward, reflected


def _compare(ufunc_name):
    def method(self, other):
        other = _operand(other, self)
        if other is NotImplemented:
            return NotImplemented
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
        return wrap(result, self.device)
    return method


def _matmul_operand(value, like):
    value = _operand(value, like)
    if isinstance(value, _SCALARS):
        raise ValueError("matmul: a scalar operand is not allowed, use *")
    return value


def _install():
    T = Tensor
    T.__add__, T.__radd__ = _binary(ops.add)
    T.__sub__, T.__rsub__ = _binary(ops.sub)
    T.__mul__, T.__rmul__ = _binary(ops.mul)
    T.__truediv__, T.__rtruediv__ = _binary(ops.div)
    T.__pow__, T.__rpow__ = _binary(ops.pow)
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


_install()
