"""The CUDA kernel table of a CuPy device.

Entries compiled from ``kernels/*.cu`` replace the twins of the same name; any entry
without a CUDA kernel runs its twin, which is written against CuPy as well as NumPy.
"""
from __future__ import annotations

import types

from . import reference

_tables = {}


def table(dev):
    key = dev.index
    if key not in _tables:
        entries = {name: getattr(reference, name) for name in dir(reference)
                   if not name.startswith("_") and callable(getattr(reference, name))}
        _tables[key] = types.SimpleNamespace(**entries)
    return _tables[key]
