"""Autocast at the op entry points: matmul and linear cast their float32 operands down,
softmax, losses and reductions cast low-precision inputs up to float32. Entry points
call these only when ``_autocast.active`` is set; bare arrays (rules running in a
backward pass that records nothing) pass through unchanged."""
from __future__ import annotations

import numpy as np

from .. import _autocast
from .._dtypes import LOW_FLOATS
from .._tensor import Tensor
from .elementwise import cast

_FLOAT32 = np.dtype(np.float32)


def to_low(*tensors):
    """The tensors cast to this thread's autocast dtype where they are float32 or the other
    low dtype (float64 stays, as PyTorch's autocast leaves it); unchanged outside autocast."""
    dtype = _autocast.low_dtype()
    if dtype is None:
        return tensors
    return tuple(cast(t, dtype) if isinstance(t, Tensor) and t.dtype != dtype
                 and (t.dtype == _FLOAT32 or t.dtype in LOW_FLOATS) else t
                 for t in tensors)


def to_float32(x):
    """x cast to float32 when autocast is on and x is float16 or bfloat16."""
    if isinstance(x, Tensor) and x.dtype in LOW_FLOATS and _autocast.low_dtype() is not None:
        return cast(x, _FLOAT32)
    return x
