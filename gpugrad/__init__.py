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
                       full,
                       full_like,
                       ones,
                       ones_like,
                       rand,
                       randn,
                       tensor,
                       zeros,
                       zeros_like,
)
from .dlpack import from_dlpack
from .functional import grad, hessian, hvp, jacobian, jacobian_plan, value_and_grad, vjp
from .gradcheck import GradcheckError, gradcheck
from .ops import (
                       abs,
                       broadcast_to,
                       clip,
                       concatenate,
                       cos,
                       exp,
                       log,
                       log_softmax,
                       logsumexp,
                       matmul,
                       max,
                       maximum,
                       mean,
                       min,
                       minimum,
                       permute,
                       relu,
                       reshape,
                       sigmoid,
                       sin,
                       softmax,
                       sqrt,
                       stack,
                       sum,
                       tanh,
                       transpose,
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

__all__ = [
    # namespaces
    "amp", "autograd", "data", "krylov", "memory", "nn", "ops", "optim", "profiler", "utils",
    "viz",
    # devices, grad modes, the tensor
    "Device", "cuda_available", "default_device", "device", "manual_seed",
    "enable_grad", "is_grad_enabled", "no_grad", "set_grad_enabled", "Size", "Tensor",
    # dtypes
    "float16", "float32", "float64", "int32", "int64", "bool_",
    # mixed precision, checkpointing, interchange
    "autocast", "checkpoint", "from_dlpack",
    # creation
    "arange", "empty", "full", "full_like", "ones", "ones_like", "rand", "randn", "tensor",
    "zeros", "zeros_like",
    # transforms, compiled steps and checks
    "compile", "jvp", "grad", "hessian", "hvp", "jacobian", "jacobian_plan", "value_and_grad",
    "vjp",
    "GradcheckError", "gradcheck",
    # ops
    "abs", "broadcast_to", "clip", "concatenate", "cos", "exp", "log", "log_softmax",
    "logsumexp", "matmul", "max", "maximum", "mean", "min", "minimum", "permute", "relu",
    "reshape", "sigmoid", "sin", "softmax", "sqrt", "stack", "sum", "tanh", "transpose", "where",
    # files
    "load", "save",
]
if _dtypes.bfloat16 is not None:
    __all__.append("bfloat16")


def __getattr__(name):
    if name == "bfloat16":
        _dtypes.require_bfloat16()   # raises, naming the package to install
    raise AttributeError(f"module 'gpugrad' has no attribute '{name}'")
