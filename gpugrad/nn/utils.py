"""Gradient clipping as torch.nn.utils: in place on the gradients, without a host sync on the
GPU (the clip factor stays on the device)."""
import math

from .. import _tensor
from .._autograd.mode import no_grad
from .._tensor import Tensor
from ..ops._common import refuse_host_work

__all__ = ["clip_grad_norm_", "clip_grad_value_"]


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p._grad for p in parameters if p._grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale the gradients so that their joint ``norm_type`` norm is at most ``max_norm``
    (by max_norm / (norm + 1e-6) where it exceeds it); returns the norm before clipping as
    a 0-d tensor."""
    grads = _grads(parameters)
    norm_type = float(norm_type)
    if not grads:
        return _tensor.Tensor(0.0)
    refuse_host_work("clip_grad_norm_")
    dev = grads[0].device
    xp = dev.xp
    for g in grads:
        if g.device is not dev:
            raise ValueError(f"clip_grad_norm_: gradients on {dev} and {g.device}")
    with no_grad(), dev.context():
        arrays = [g._data for g in grads]
        if norm_type == math.inf:
            total = xp.max(xp.stack([xp.abs(a).max() for a in arrays]))
        else:
            per = xp.stack([(xp.abs(a.astype(xp.float64 if a.dtype == xp.float64 else
                                               xp.float32)) ** norm_type).sum()
                            for a in arrays])
            total = per.sum() ** (1.0 / norm_type)
        if error_if_nonfinite and not bool(xp.isfinite(total)):     # a sync, as PyTorch
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                               "`parameters` is non-finite, so it cannot be clipped. To disable "
                               "this error and scale the gradients by the non-finite norm "
                               "anyway, set `error_if_nonfinite=False`")
        coef = xp.minimum(max_norm / (total + 1e-6), 1.0)
        for g in grads:
            g._data *= coef.astype(g.dtype)
            _tensor.bump_version(g._ver)
        result = dev.adopt(xp.asarray(total, dtype=grads[0].dtype))
    return _tensor.wrap(result, dev)


def clip_grad_value_(parameters, clip_value, foreach=None):
    """Clamp every gradient element to [-clip_value, clip_value] in place."""
    clip_value = float(clip_value)
    refuse_host_work("clip_grad_value_")
    with no_grad():
        for g in _grads(parameters):
            g.device.xp.clip(g._data, -clip_value, clip_value, out=g._data)
            _tensor.bump_version(g._ver)
