"""Kernels: raw CUDA C in ``*.cu`` beside this file, and their NumPy twins.

``table_for(device)`` gives the table an op's forward calls into: the twins on the CPU,
the compiled CUDA kernels (falling back to the twins for any entry not compiled) on CuPy.
"""
from __future__ import annotations

from . import reference


def table_for(dev):
    if dev.type == "cpu":
        return reference
    from . import cuda
    return cuda.table(dev)
