"""Tensor methods and operators for PyTorch's op set (maths, reductions and scans,
movement and selection), bound by ``_methods._install``."""
from __future__ import annotations

import numpy as np

from . import ops
from ._tensor import Tensor, wrap

_SCALARS = (int, float, bool, np.number, np.bool_)

# method name -> the ops function it calls with the tensor first
_METHODS = """
floor ceil round trunc fix sign sgn tan asin acos atan arcsin arccos arctan atan2 arctan2 sinh
cosh asinh acosh atanh arcsinh arccosh arctanh erf exp2 log2 log10 log1p expm1 rsqrt square
logaddexp lerp isnan isinf isposinf isneginf isfinite isclose allclose equal logical_and
logical_or logical_not logical_xor bitwise_and bitwise_or bitwise_xor bitwise_not
bitwise_left_shift bitwise_right_shift eq ne lt le gt ge greater greater_equal less less_equal
not_equal remainder fmod floor_divide
min amax amin argmax argmin prod any all var std cumsum cumprod logcumsumexp norm
squeeze unsqueeze flatten unflatten expand expand_as view_as contiguous clone repeat
repeat_interleave tile roll flip fliplr flipud split chunk unbind tensor_split narrow movedim
moveaxis gather scatter scatter_add index_select masked_fill masked_select masked_scatter tril
triu diagonal diag diag_embed trace sort argsort msort topk kthvalue outer ger take_along_dim
nansum nanmean median nanmedian mode unique unique_consecutive scatter_reduce
""".split()


def _operand(value, like):
    """A number stays as it is; an array or a list becomes a constant tensor beside
    ``like``; anything else is not ours to handle."""
    if isinstance(value, (Tensor,) + _SCALARS):
        return value
    if isinstance(value, (list, tuple)) or hasattr(value, "__array__"):
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


def install(T):
    """Bind the methods and the operators // % & | ^ ~ onto Tensor."""
    for name in _METHODS:
        setattr(T, name, getattr(ops, name))
    T.__floordiv__, T.__rfloordiv__ = _binary(ops.floor_divide)
    T.__mod__, T.__rmod__ = _binary(ops.remainder)
    T.__and__, T.__rand__ = _binary(ops.bitwise_and)
    T.__or__, T.__ror__ = _binary(ops.bitwise_or)
    T.__xor__, T.__rxor__ = _binary(ops.bitwise_xor)
    T.__lshift__, T.__rlshift__ = _binary(ops.bitwise_left_shift)
    T.__rshift__, T.__rrshift__ = _binary(ops.bitwise_right_shift)
    T.__invert__ = ops.bitwise_not
