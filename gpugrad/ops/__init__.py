"""Every primitive op and its public function. ``PRIMITIVES`` is the registry (name ->
op) that the tests enumerate."""
from .._autograd.graph import PRIMITIVES
from .activation import (
    ACTIVATIONS,
    LINEAR_ACTS,
    activation,
    activation_grad,
    bias_act,
    gelu,
    gelu_tanh,
    linear_act,
    relu,
    sigmoid,
    tanh,
)
from .elementwise import (
    abs,
    add,
    cast,
    clip,
    cos,
    div,
    exp,
    identity,
    log,
    maximum,
    minimum,
    mul,
    neg,
    pow,
    sin,
    sqrt,
    sub,
    to_device,
    where,
)
from .linalg import matmul
from .random import dropout
from .reduce import logsumexp, max, mean, min, sum
from .shape import (
    broadcast_to,
    concatenate,
    getitem,
    index_add_zeros,
    index_put,
    permute,
    reshape,
    stack,
    sum_to,
    swap_last,
    transpose,
)
from .softmax import (
    log_softmax,
    log_softmax_grad,
    softmax,
    softmax_cross_entropy,
    softmax_grad,
    softmax_xent_grad,
)

__all__ = [
    "ACTIVATIONS", "LINEAR_ACTS", "PRIMITIVES", "abs", "activation", "activation_grad", "add",
    "bias_act", "broadcast_to", "cast", "clip", "concatenate", "cos", "div", "dropout", "exp",
    "gelu", "gelu_tanh", "getitem", "identity", "index_add_zeros", "linear_act", "log",
    "log_softmax", "log_softmax_grad", "logsumexp", "matmul", "max", "maximum", "mean",
    "min", "minimum", "mul", "index_put", "permute", "neg", "pow", "relu", "reshape",
    "sigmoid", "sin", "softmax",
    "softmax_cross_entropy", "softmax_grad", "softmax_xent_grad", "sqrt", "stack", "sub",
    "sum", "sum_to", "swap_last", "tanh", "to_device", "transpose", "where",
]
