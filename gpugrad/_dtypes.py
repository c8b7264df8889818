"""Floating-point dtypes beyond NumPy's own: bfloat16 comes from ``ml_dtypes`` (the
package JAX uses; CuPy accepts its dtype too). Without ml_dtypes, ``bfloat16`` is None
and asking for it raises an error that says what to install."""
from __future__ import annotations

import numpy as np

try:
    import ml_dtypes as _ml_dtypes
    bfloat16 = np.dtype(_ml_dtypes.bfloat16)
except ImportError:  # a dependency, but a broken install should still import gpugrad
    bfloat16 = None

float16 = np.dtype(np.float16)
float32 = np.dtype(np.float32)
# the dtypes autocast computes in; both are stored in two bytes and computed in float32
LOW_FLOATS = frozenset(d for d in (float16, bfloat16) if d is not None)


def is_floating(dtype) -> bool:
    """float16/32/64, complex, and bfloat16 (whose NumPy kind is 'V', not 'f')."""
    dtype = np.dtype(dtype)
    return dtype.kind in "fc" or dtype == bfloat16


def require_bfloat16():
    if bfloat16 is None:
        raise ImportError("gg.bfloat16 needs the ml_dtypes package: pip install ml_dtypes")
    return bfloat16
