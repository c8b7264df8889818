"""Neural-network layers, losses and functional forms (PyTorch's names and layouts)."""
from . import functional
from .modules import (
                      GELU,
                      MLP,
                      CrossEntropyLoss,
                      Dropout,
                      Linear,
                      Module,
                      MSELoss,
                      Parameter,
                      ReLU,
                      Sequential,
                      Sigmoid,
                      Tanh,
)

__all__ = ["functional", "Module", "Parameter", "Linear", "ReLU", "Tanh", "GELU", "Sigmoid",
           "Sequential", "MLP", "Dropout", "CrossEntropyLoss", "MSELoss"]
