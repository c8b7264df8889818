"""Neural-network layers, losses and functional forms."""
from . import functional

__all__ = ["functional"]
