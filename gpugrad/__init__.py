"""gpugrad: a tensor autodiff engine on CuPy, with the same code running on NumPy."""
import numpy as _np

from . import (
                       _cuda,  # noqa: F401  (registers the CUDA device; imports CuPy lazily)
                       _dtypes,
                       _methods,  # noqa: F401  (binds Tensor's operators)
                       amp,
                       autograd,
                       data,
                       krylov,
                       memory,
                       nn,
                       ops,
                       optim,
                       profiler,
                       utils,
                       viz,
)
from ._autograd.forward import jvp
from ._autograd.mode import (
                       enable_grad,
                       inference_mode,
                       is_grad_enabled,
                       no_grad,
                       set_grad_enabled,
)
from ._compile import compile
from ._device import Device, cuda_available, default_device, device, manual_seed
from ._tensor import Size, Tensor
from .amp import autocast
from .creation import (
                       arange,
                       empty,
                       empty_like,
                       eye,
                       from_numpy,
                       full,
                       full_like,
                       linspace,
                       logspace,
                       ones,
                       ones_like,
                       rand,
                       rand_like,
                       randint,
                       randint_like,
                       randn,
                       randn_like,
                       randperm,
                       tensor,
                       zeros,
                       zeros_like,
)
from .dlpack import from_dlpack
from .functional import grad, hessian, hvp, jacobian, jacobian_plan, value_and_grad, vjp
from .gradcheck import GradcheckError, gradcheck
from .ops import (
                       abs,
                       acos,
                       acosh,
                       all,
                       allclose,
                       amax,
                       amin,
                       any,
                       arccos,
                       arccosh,
                       arcsin,
                       arcsinh,
                       arctan,
                       arctan2,
                       arctanh,
                       argmax,
                       argmin,
                       argsort,
                       asin,
                       asinh,
                       atan,
                       atan2,
                       atanh,
                       bitwise_and,
                       bitwise_left_shift,
                       bitwise_not,
                       bitwise_or,
                       bitwise_right_shift,
                       bitwise_xor,
                       broadcast_to,
                       cat,
                       ceil,
                       chunk,
                       clip,
                       clone,
                       concat,
                       concatenate,
                       cos,
                       cosh,
                       cumprod,
                       cumsum,
                       diag,
                       diag_embed,
                       diagonal,
                       einsum,
                       eq,
                       equal,
                       erf,
                       exp,
                       exp2,
                       expm1,
                       fix,
                       flatten,
                       flip,
                       fliplr,
                       flipud,
                       floor,
                       floor_divide,
                       fmod,
                       gather,
                       ge,
                       ger,
                       greater,
                       greater_equal,
                       gt,
                       hstack,
                       index_add,
                       index_copy,
                       index_fill,
                       index_put,
                       index_select,
                       isclose,
                       isfinite,
                       isinf,
                       isnan,
                       isneginf,
                       isposinf,
                       kthvalue,
                       le,
                       lerp,
                       less,
                       less_equal,
                       log,
                       log1p,
                       log2,
                       log10,
                       log_softmax,
                       logaddexp,
                       logcumsumexp,
                       logical_and,
                       logical_not,
                       logical_or,
                       logical_xor,
                       logsumexp,
                       lt,
                       masked_fill,
                       masked_scatter,
                       masked_select,
                       matmul,
                       max,
                       maximum,
                       mean,
                       meshgrid,
                       min,
                       minimum,
                       moveaxis,
                       movedim,
                       msort,
                       narrow,
                       ne,
                       norm,
                       not_equal,
                       outer,
                       permute,
                       prod,
                       relu,
                       remainder,
                       repeat_interleave,
                       reshape,
                       roll,
                       round,
                       rsqrt,
                       scatter,
                       scatter_add,
                       sgn,
                       sigmoid,
                       sign,
                       sin,
                       sinh,
                       softmax,
                       sort,
                       split,
                       sqrt,
                       square,
                       squeeze,
                       stack,
                       std,
                       std_mean,
                       sum,
                       take_along_dim,
                       tan,
                       tanh,
                       tensor_split,
                       tensordot,
                       tile,
                       topk,
                       trace,
                       transpose,
                       tril,
                       triu,
                       trunc,
                       unbind,
                       unflatten,
                       unsqueeze,
                       var,
                       var_mean,
                       vstack,
                       where,
)
from .serialization import load, save
from .utils.checkpoint import checkpoint

__version__ = "0.1.0"

float16 = _np.dtype(_np.float16)
if _dtypes.bfloat16 is not None:
    bfloat16 = _dtypes.bfloat16
float32 = _np.dtype(_np.float32)
float64 = _np.dtype(_np.float64)
int32 = _np.dtype(_np.int32)
int64 = _np.dtype(_np.int64)
bool_ = _np.dtype(_np.bool_)
# PyTorch's names of the other integer dtypes and of bool
int8 = _np.dtype(_np.int8)
int16 = _np.dtype(_np.int16)
uint8 = _np.dtype(_np.uint8)
bool = bool_        # noqa: A001  (torch.bool; the builtin stays reachable as builtins.bool)

__all__ = [
    # namespaces
    "amp", "autograd", "data", "krylov", "memory", "nn", "ops", "optim", "profiler", "utils",
    "viz",
    # devices, grad modes, the tensor
    "Device", "cuda_available", "default_device", "device", "manual_seed",
    "enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled", "Size", "Tensor",
    # dtypes
    "float16", "float32", "float64", "int8", "int16", "int32", "int64", "uint8", "bool",
    "bool_",
    # mixed precision, checkpointing, interchange
    "autocast", "checkpoint", "from_dlpack",
    # creation
    "arange", "empty", "empty_like", "eye", "from_numpy", "full", "full_like", "linspace",
    "logspace", "ones", "ones_like", "rand", "rand_like", "randint", "randint_like", "randn",
    "randn_like", "randperm", "tensor", "zeros", "zeros_like",
    # transforms, compiled steps and checks
    "compile", "jvp", "grad", "hessian", "hvp", "jacobian", "jacobian_plan", "value_and_grad",
    "vjp",
    "GradcheckError", "gradcheck",
    # ops
    "abs", "acos", "acosh", "all", "allclose", "amax", "amin", "any", "arccos", "arccosh",
    "arcsin", "arcsinh", "arctan", "arctan2", "arctanh", "argmax", "argmin", "argsort", "asin",
    "asinh", "atan", "atan2", "atanh", "bitwise_and", "bitwise_left_shift", "bitwise_not",
    "bitwise_or", "bitwise_right_shift", "bitwise_xor", "broadcast_to", "cat", "ceil", "chunk",
    "clip", "clone", "concat", "concatenate", "cos", "cosh", "cumprod", "cumsum", "diag",
    "diag_embed", "diagonal", "einsum", "eq", "equal", "erf", "exp", "exp2", "expm1", "fix",
    "flatten", "flip", "fliplr", "flipud", "floor", "floor_divide", "fmod", "gather", "ge", "ger",
    "greater", "greater_equal", "gt", "hstack", "index_add", "index_copy", "index_fill",
    "index_put", "index_select", "isclose", "isfinite",
    "isinf", "isnan", "isneginf", "isposinf", "kthvalue", "le", "lerp", "less", "less_equal",
    "log", "log10", "log1p", "log2", "log_softmax", "logaddexp", "logcumsumexp", "logical_and",
    "logical_not", "logical_or", "logical_xor", "logsumexp", "lt", "masked_fill", "masked_scatter",
    "masked_select", "matmul", "max", "maximum", "mean", "meshgrid", "min", "minimum", "moveaxis",
    "movedim", "msort", "narrow", "ne", "norm", "not_equal", "outer", "permute", "prod", "relu",
    "remainder",
    "repeat_interleave", "reshape", "roll", "round", "rsqrt", "scatter", "scatter_add", "sgn",
    "sigmoid", "sign", "sin", "sinh", "softmax", "sort", "split", "sqrt", "square", "squeeze",
    "stack", "std", "std_mean", "sum", "take_along_dim", "tan", "tanh", "tensor_split",
    "tensordot", "tile", "topk", "trace", "transpose", "tril", "triu", "trunc", "unbind",
    "unflatten", "unsqueeze", "var", "var_mean", "vstack", "where",
    # files
    "load", "save",
]
if _dtypes.bfloat16 is not None:
    __all__.append("bfloat16")


def __getattr__(name):
    if name == "bfloat16":
        _dtypes.require_bfloat16()   # raises, naming the package to install
    raise AttributeError(f"module 'gpugrad' has no attribute '{name}'")
