"""Reverse-mode automatic differentiation: ``backward``, ``grad`` and the grad modes.

The engine itself lives in ``gpugrad._autograd`` (modes, graph, backward scheduler,
forward mode); this module is its public face, as ``torch.autograd`` is PyTorch's.
"""

from ._autograd.anomaly import detect_anomaly, is_anomaly_enabled
from ._autograd.backward import backward, grad, queue_callback, register_post_accumulate_grad_hook
from ._autograd.mode import (
    enable_grad,
    inference_mode,
    is_grad_enabled,
    no_grad,
    set_grad_enabled,
)

__all__ = ["backward", "detect_anomaly", "enable_grad", "grad", "inference_mode",
           "is_anomaly_enabled", "is_grad_enabled", "no_grad", "queue_callback",
           "register_post_accumulate_grad_hook", "set_grad_enabled"]
