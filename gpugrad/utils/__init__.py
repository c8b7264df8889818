"""Utilities with PyTorch's names: ``gg.utils.checkpoint``."""
from . import checkpoint

__all__ = ["checkpoint"]
