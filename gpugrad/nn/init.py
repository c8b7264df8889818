"""Parameter initialisation as torch.nn.init: in place, under no_grad, drawing from the
tensor's device generator (seeded by gg.manual_seed), with PyTorch's gains and fan modes."""
import math

import numpy as np

from .._autograd.mode import no_grad
from .._tensor import Tensor, bump_version

__all__ = ["calculate_gain", "uniform_", "normal_", "constant_", "ones_", "zeros_",
           "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_"]


def calculate_gain(nonlinearity, param=None):
    """The recommended gain for a nonlinearity (PyTorch's table)."""
    linear = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
    if nonlinearity in linear:
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif isinstance(param, (int, float)) and not isinstance(param, bool):
            slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _check(tensor, what):
    if not isinstance(tensor, Tensor):
        raise TypeError(f"{what} expects a Tensor, got {type(tensor).__name__}")
    if tensor.dtype.kind != "f":
        raise TypeError(f"{what} expects a floating-point tensor, got dtype {tensor.dtype}")


def _write(tensor, arr):
    with no_grad():
        tensor._data[...] = arr
        bump_version(tensor._ver)
    return tensor


def _uniform(tensor, low, high, what):
    _check(tensor, what)
    dev = tensor.device
    with dev.context():
        u = dev.generator.uniform(tensor.shape, np.dtype(np.float64)
                                  if tensor.dtype == np.float64 else np.dtype(np.float32))
        return _write(tensor, (u * (high - low) + low).astype(tensor.dtype, copy=False))


def _normal(tensor, mean, std, what):
    _check(tensor, what)
    dev = tensor.device
    with dev.context():
        z = dev.generator.normal(tensor.shape, np.dtype(np.float64)
                                 if tensor.dtype == np.float64 else np.dtype(np.float32))
        return _write(tensor, (z * std + mean).astype(tensor.dtype, copy=False))


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    """Fill with U(a, b)."""
    return _uniform(tensor, a, b, "uniform_")


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    """Fill with N(mean, std^2)."""
    return _normal(tensor, mean, std, "normal_")


def constant_(tensor, val):
    _check(tensor, "constant_")
    return _write(tensor, val)


def ones_(tensor):
    return constant_(tensor, 1.0)


def zeros_(tensor):
    return constant_(tensor, 0.0)


def _fans(tensor):
    """(fan_in, fan_out): dimension 1 and 0 times the receptive field (PyTorch's rule)."""
    if tensor.ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 "
                         f"dimensions (got shape {tuple(tensor.shape)})")
    receptive = 1
    for s in tensor.shape[2:]:
        receptive *= s
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


def _fan(tensor, mode):
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"Mode {mode} not supported, please use one of fan_in, fan_out")
    fan_in, fan_out = _fans(tensor)
    return fan_in if mode == "fan_in" else fan_out


def xavier_uniform_(tensor, gain=1.0, generator=None):
    """U(-a, a), a = gain sqrt(6 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor)
    a = gain * math.sqrt(6.0 / float(fan_in + fan_out))
    return _uniform(tensor, -a, a, "xavier_uniform_")


def xavier_normal_(tensor, gain=1.0, generator=None):
    """N(0, std^2), std = gain sqrt(2 / (fan_in + fan_out))."""
    fan_in, fan_out = _fans(tensor)
    return _normal(tensor, 0.0, gain * math.sqrt(2.0 / float(fan_in + fan_out)),
                   "xavier_normal_")


def kaiming_uniform_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """U(-b, b), b = gain(nonlinearity, a) sqrt(3 / fan)."""
    fan = _fan(tensor, mode)
    if fan == 0:
        return tensor        # PyTorch warns and leaves a zero-element tensor alone
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return _uniform(tensor, -bound, bound, "kaiming_uniform_")


def kaiming_normal_(tensor, a=0.0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    """N(0, std^2), std = gain(nonlinearity, a) / sqrt(fan)."""
    fan = _fan(tensor, mode)
    if fan == 0:
        return tensor
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return _normal(tensor, 0.0, std, "kaiming_normal_")
