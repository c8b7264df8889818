"""Functional layers and losses, compositions of the primitive ops."""
from .. import _autocast, ops
from .._tensor import Tensor
from ..ops._amp import to_low as _to_low
from ..ops._common import shape_str as _shape_str

__all__ = [
    "relu", "tanh", "sigmoid", "gelu", "softmax", "log_softmax", "linear", "cross_entropy",
    "mse_loss", "dropout"
]

relu = ops.relu
tanh = ops.tanh
sigmoid = ops.sigmoid
softmax = ops.softmax
log_softmax = ops.log_softmax


def gelu(x, approximate="none"):
    """GELU as PyTorch's: exact, x/2 (1 + erf(x / sqrt 2)), or with ``approximate="tanh"``
    x/2 (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    if approximate == "none":
        return ops.gelu(x)
    if approximate == "tanh":
        return ops.gelu_tanh(x)
    raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got '{approximate}'")


def linear(x, weight, bias=None, activation="none"):
    """activation(x @ weight.T + bias), with PyTorch's layout: weight has shape (out, in).
    ``activation``: none or a name of the activation table (relu, tanh, sigmoid, gelu
    (exact), gelu_tanh); bias and activation run as one fused kernel. Under autocast, in
    its low dtype with float32 accumulation."""
    if _autocast.active:
        x, weight, bias = _to_low(x, weight, bias)
    if (bias is not None and activation in ops.LINEAR_ACTS and weight.ndim == 2
            and x.ndim >= 1 and x.shape[-1] == weight.shape[1]
            and bias.shape == (weight.shape[0],) and x.dtype == weight.dtype == bias.dtype):
        return ops.linear_act(x, weight, bias, activation)
    if weight.ndim != 2:
        raise ValueError(f"linear: weight must be 2-D (out, in), got {_shape_str(weight.shape)}")
    if x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {_shape_str(x.shape)} does not fit weight of "
                         f"shape {_shape_str(weight.shape)} (in_features {weight.shape[1]})")
    y = ops.matmul(x, ops.swap_last(weight))
    if bias is not None:
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"linear: bias of shape {_shape_str(bias.shape)} does not fit "
                             f"weight of shape {_shape_str(weight.shape)}")
        return ops.bias_act(y, bias, activation)
    if activation != "none":
        if activation not in ops.ACTIVATIONS:
            raise ValueError(f"unknown activation '{activation}': expected none, "
                             + ", ".join(ops.ACTIVATIONS))
        return ops.activation(activation, y)
    return y


def cross_entropy(logits, labels, reduction="mean"):
    """Softmax cross-entropy of (N, C) logits against N integer class labels."""
    return ops.softmax_cross_entropy(logits, labels, reduction)


def mse_loss(input, target, reduction="mean"):
    """Mean (or sum) of squared differences; shapes must match."""
    if isinstance(target, Tensor) and target.shape != input.shape:
        raise ValueError(f"mse_loss: input of shape {_shape_str(input.shape)} and target of "
                         f"shape {_shape_str(target.shape)} differ")
    diff = input - target
    sq = diff * diff
    if reduction == "mean":
        return ops.mean(sq)
    if reduction == "sum":
        return ops.sum(sq)
    if reduction == "none":
        return sq
    raise ValueError(f"unknown reduction '{reduction}': expected 'mean', 'sum' or 'none'")


def dropout(x, p=0.5, training=True):
    """Zero each element with probability p and scale the rest by 1/(1-p). The mask is
    drawn by a counter-based generator (Philox): the backward pass redraws it, and a
    compiled step draws a new one at every replay."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return ops.dropout(x, p)
