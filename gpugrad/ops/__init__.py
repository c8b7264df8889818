"""Every primitive op and its public function."""
from .elementwise import (abs, add, cast, clip, cos, div, exp, identity, log, maximum,
                          minimum, mul, neg, pow, sin, sqrt, sub, to_device, where)
from .linalg import matmul
from .nn import (LINEAR_ACTS, bias_act, gelu, linear_act, gelu_grad, log_softmax, log_softmax_grad, relu, relu_grad, sigmoid,
                 sigmoid_grad, softmax, softmax_cross_entropy, softmax_grad,
                 softmax_xent_grad, tanh, tanh_grad)
from .reduce import logsumexp, max, mean, sum
from .shape import (broadcast_to, concatenate, getitem, index_add_zeros, reshape, stack,
                    sum_to, swap_last, transpose)

__all__ = [
    "LINEAR_ACTS", "abs", "add", "bias_act", "linear_act", "broadcast_to", "cast", "clip", "concatenate", "cos", "div", "exp",
    "gelu", "gelu_grad", "getitem", "identity", "index_add_zeros", "log", "log_softmax",
    "log_softmax_grad", "logsumexp", "matmul", "max", "maximum", "mean", "minimum", "mul",
    "neg", "pow", "relu", "relu_grad", "reshape", "sigmoid", "sigmoid_grad", "sin",
    "softmax", "softmax_cross_entropy", "softmax_grad", "softmax_xent_grad", "sqrt",
    "stack", "sub", "sum", "sum_to", "swap_last", "tanh", "tanh_grad", "to_device",
    "transpose", "where",
]
