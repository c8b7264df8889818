"""The activation table and the ops made from it.

One row per activation. From it come: the activation op (``relu``), its gradient op with a
fused backward kernel (``relu_grad``, PyTorch's ``threshold_backward``), the fused
bias + activation op (``bias_relu``), the activations that the fused ``linear`` op
accepts, the kernel names (``relu_fwd``, ``relu_bwd``, ``bias_relu_fwd`` in
``kernels/elementwise.cu`` and ``kernels/reference.py``), ``F.linear``'s dispatch, the nn
modules and the tests.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from .. import _autocast
from .._autograd.graph import Elementwise, Op, apply, primitive, register
from .._tensor import Tensor
from ..kernels.reference import GELU_C, GELU_K, INV_SQRT_2PI
from ._amp import to_low
from ._common import add_terms, elementwise_cost, prod, shape_str
from ._derivative import above_mask
from .elementwise import exp, to_float, where
from .linalg import MatMul, matmul
from .shape import reshape, swap_last


def _tanh_curvature(y):
    return -2 * y                     # d/dy (1 - y^2)


def _sigmoid_curvature(y):
    return 1 - 2 * y                  # d/dy y (1 - y)


def _gelu_curvature(x):
    return exp(-0.5 * x * x) * INV_SQRT_2PI * (2 - x * x)   # gelu''(x) = phi(x) (2 - x^2)


def _silu_curvature(x):
    s = sigmoid(x)
    return s * (1 - s) * (2 + x * (1 - 2 * s))     # silu''(x)


def _elu_curvature(x, alpha):
    return where(x > 0, 0.0, alpha * exp(x))


def _gelu_tanh_curvature(x):
    """The tanh form's second derivative, written with ops."""
    u = GELU_K * (x + GELU_C * x * x * x)
    t = tanh(u)
    du = GELU_K * (1 + 3 * GELU_C * x * x)
    d2u = 6 * GELU_K * GELU_C * x
    return (1 - t * t) * (du + 0.5 * x * (d2u - 2 * t * du * du))


@dataclass(frozen=True)
class Activation:
    name: str              # op, F.linear activation= and kernel prefix
    formula: str
    saves: str             # "output" or "input": what its derivative is computed from
    module: tuple          # the nn module: class name and keyword arguments
    curvature: Callable    # d/d(saved) of the derivative factor, with ops; None if zero
    flops: int = 4
    param: str = None      # the name of the row's one parameter (its kernels' trailing float)
    default: float = None  # and its default value

    @property
    def params(self):
        return () if self.param is None else (self.param,)


class ActivationOp(Op):
    """out = act(x); its derivative is the row's gradient op"""

    def __init__(self, row):
        self.row = row
        self.name = row.name
        self.__doc__ = f"out = {row.formula}"
        self.save_output = row.saves == "output"
        self.save_inputs = None if self.save_output else True
        self.params = row.params
        # a row with a parameter passes it to its kernel after the arrays (see forward)
        self.kernel = None if row.param else f"{row.name}_fwd"
        self.cost = elementwise_cost(row.flops).__get__(self)

    def forward(self, dev, p, x, out=None):
        return dev.function(f"{self.name}_fwd")(x, *p, out=out)

    def _saved(self, ins, out):
        return out if self.save_output else ins[0]

    def vjp(self, g, ins, out, p, needs):
        return (apply(self.grad_op, (g, out if self.save_output else ins[0]), p),)

    def jvp(self, ts, ins, out, p):
        return apply(self.grad_op, (ts[0], self._saved(ins, out)), p)


class ActivationGrad(Op):
    """out = g * act'(s), s the saved output or input; linear in g"""

    save_inputs = True

    def __init__(self, row):
        self.row = row
        self.name = f"{row.name}_grad"
        self.params = row.params
        self.kernel = None if row.param else f"{row.name}_bwd"
        self.cost = elementwise_cost(row.flops).__get__(self)

    def forward(self, dev, p, g, s, out=None):
        return dev.function(f"{self.row.name}_bwd")(g, s, *p, out=out)

    def _curvature(self, s, p):
        curve = self.row.curvature
        return None if curve is None else curve(s, *(p or ()))

    def vjp(self, gy, ins, out, p, needs):
        g, s = ins
        curve = self._curvature(s, p) if needs[1] else None
        return (apply(self, (gy, s), p) if needs[0] else None,
                gy * g * curve if curve is not None else None)

    def jvp(self, ts, ins, out, p):
        g, s = ins
        tg, ts_ = ts
        curve = None if ts_ is None else self._curvature(s, p)
        return add_terms(None if tg is None else apply(self, (tg, s), p),
                         None if curve is None else g * curve * ts_)


class BiasActivation(Op):
    """out = act(x + b), b broadcast over the rows of x: one pass instead of two. The bias
    cotangent is the row sum of the pre-activation's, which the scheduler makes when it
    sums the cotangent back to b's shape."""

    broadcasting = True

    def __init__(self, row):
        self.row = row
        self.name = f"bias_{row.name}"
        self.save_output = row.saves == "output"
        # a GELU's derivative needs the pre-activation: saved as its parts, x + b redone
        self.save_inputs = None if self.save_output else True
        self.params = row.params

    def forward(self, dev, p, x, b, out=None):
        return dev.kernels.bias_act_fwd(x, b, self.row.name, *(p or ()), out=out)

    def _saved(self, ins, out):
        return out if self.save_output else ins[0] + ins[1]

    def vjp(self, g, ins, out, p, needs):
        gz = apply(self.grad_op, (g, self._saved(ins, out)), p)
        return gz, gz

    def jvp(self, ts, ins, out, p):
        return apply(self.grad_op, (add_terms(ts[0], ts[1]), self._saved(ins, out)), p)


ACTIVATIONS = {row.name: row for row in (
    Activation("relu", "max(x, 0)", "output", ("ReLU", {}), None, flops=1),
    Activation("tanh", "tanh x", "output", ("Tanh", {}), _tanh_curvature, flops=8),
    Activation("sigmoid", "1 / (1 + e^-x)", "output", ("Sigmoid", {}), _sigmoid_curvature,
               flops=8),
    Activation("gelu", "x/2 (1 + erf(x / sqrt 2)), the exact GELU (PyTorch's default)",
               "input", ("GELU", {}), _gelu_curvature, flops=12),
    Activation("gelu_tanh", "x/2 (1 + tanh(k (x + c x^3))), GELU in its tanh form", "input",
               ("GELU", {"approximate": "tanh"}), _gelu_tanh_curvature, flops=12),
    # the activations of the nn.functional set that MLPs use; their derivative is taken at
    # the input (leaky_relu's and elu's output does not give it for every parameter)
    Activation("silu", "x sigmoid(x)", "input", ("SiLU", {}), _silu_curvature, flops=10),
    Activation("leaky_relu", "x if x > 0 else negative_slope x", "input", ("LeakyReLU", {}),
               None, flops=2, param="negative_slope", default=0.01),
    Activation("elu", "x if x > 0 else alpha (e^x - 1)", "input", ("ELU", {}),
               _elu_curvature, flops=8, param="alpha", default=1.0),
)}
ACTIVATION_OPS = {}
GRAD_OPS = {}
BIAS_OPS = {}
for _row in ACTIVATIONS.values():
    _op, _grad, _bias = ActivationOp(_row), ActivationGrad(_row), BiasActivation(_row)
    _op.grad_op = _bias.grad_op = _grad
    ACTIVATION_OPS[_row.name] = register(_op)
    GRAD_OPS[_row.name] = register(_grad)
    BIAS_OPS[_row.name] = register(_bias)


def _params(name, params):
    """The Params record of row ``name`` (its default parameter when none is given)."""
    row = ACTIVATIONS[name]
    if row.param is None:
        if params:
            raise TypeError(f"activation '{name}' takes no parameter, got {params}")
        return None
    if len(params) > 1:
        raise TypeError(f"activation '{name}' takes one parameter ({row.param}), got {params}")
    return ACTIVATION_OPS[name].Params(float(params[0]) if params else row.default)


def activation(name, x, *params):
    """The activation ``name`` of the table applied to x (then its parameter, if it has one:
    leaky_relu's negative_slope, elu's alpha)."""
    op = ACTIVATION_OPS.get(name)
    if op is None:
        raise ValueError(f"unknown activation '{name}': expected one of "
                         + ", ".join(ACTIVATIONS))
    if not params and not op.params:
        return apply(op, (x,))
    return apply(op, (x,), _params(name, params))


def activation_grad(name, g, saved, *params):
    return apply(GRAD_OPS[name], (g, saved), _params(name, params))


def relu(x):
    return apply(ACTIVATION_OPS["relu"], (x,))


def tanh(x):
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)    # integers become the default float, as in PyTorch
    return apply(ACTIVATION_OPS["tanh"], (x,))


def sigmoid(x):
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)    # integers become the default float, as in PyTorch
    return apply(ACTIVATION_OPS["sigmoid"], (x,))


def gelu(x):
    return apply(ACTIVATION_OPS["gelu"], (x,))


def gelu_tanh(x):
    return apply(ACTIVATION_OPS["gelu_tanh"], (x,))


def silu(x):
    return apply(ACTIVATION_OPS["silu"], (x,))


def leaky_relu(x, negative_slope=0.01):
    return apply(ACTIVATION_OPS["leaky_relu"], (x,), _params("leaky_relu", (negative_slope,)))


def elu(x, alpha=1.0):
    return apply(ACTIVATION_OPS["elu"], (x,), _params("elu", (alpha,)))


def bias_act(x, b, act, *params):
    """act(x + b) for a bias b of shape (x.shape[-1],), in one fused kernel; ``params``: the
    row's parameter, if it has one."""
    if act == "none":
        return x + b
    if act not in BIAS_OPS:
        raise ValueError(f"unknown activation '{act}': expected none, " + ", ".join(BIAS_OPS))
    if b.ndim != 1 or x.ndim < 1 or x.shape[-1] != b.shape[0]:
        raise ValueError(f"bias_act: bias of shape {shape_str(b.shape)} does not fit input of "
                         f"shape {shape_str(x.shape)}")
    return apply(BIAS_OPS[act], (x, b), _params(act, params))


# -- linear layer with its activation, fused ------------------------------------------------
# the activations whose derivative needs only the output: the GEMM's buffer then holds the
# activation in place and no pre-activation array is kept
LINEAR_ACTS = ("none",) + tuple(name for name, row in ACTIVATIONS.items()
                                if row.saves == "output" and row.param is None)


class LinearAct(Op):
    """out = act(x @ w.T + b) for a weight w of shape (out, in): one GEMM into a buffer that
    the bias + activation kernel then rewrites in place; saves its inputs and output.
    A measured win over the composition (transpose, matmul, bias_act): five primitives
    fewer per layer and step, and no pre-activation array."""
    name = "linear"
    params = ("act",)
    save_inputs = True
    save_output = True

    def cost(self, in_shapes, out_shape, p):
        return 2 * prod(out_shape) * in_shapes[0][-1], \
            prod(in_shapes[0]) + prod(in_shapes[1]) + prod(out_shape)

    def forward(self, dev, p, x, w, b, out=None):
        # the device's matmul entry (float32 accumulation for float16/bfloat16): a captured
        # graph swaps in its own cuBLAS handle there
        y = dev.function("matmul")(x, w.T, out=out)
        return dev.kernels.bias_act_fwd(y, b, p.act, out=y)

    def _pre_grad(self, g, out, p):
        return g if p.act == "none" else apply(GRAD_OPS[p.act], (g, out))

    def vjp(self, g, ins, out, p, needs):
        x, w, b = ins
        gz = self._pre_grad(g, out, p)
        # the products' shapes and dtypes are those of the forward's: the primitive itself,
        # without matmul()'s checks
        gx = apply(MatMul, (gz, w)) if needs[0] else None
        gw = None
        if needs[1]:
            gz2 = gz if gz.ndim == 2 else reshape(gz, (-1, gz.shape[-1]))
            x2 = x if x.ndim == 2 else reshape(x, (-1, x.shape[-1]))
            gw = apply(MatMul, (swap_last(gz2), x2))
        return gx, gw, (gz if needs[2] else None)

    def jvp(self, ts, ins, out, p):
        x, w, b = ins
        tx, tw, tb = ts
        tz = add_terms(None if tx is None else matmul(tx, swap_last(w)),
                       None if tw is None else matmul(x, swap_last(tw)), tb)
        return None if tz is None else self._pre_grad(tz, out, p)


LinearAct = register(LinearAct())
_LINEAR_PARAMS = {act: LinearAct.Params(act) for act in LINEAR_ACTS}


def linear_act(x, w, b, act="none"):
    """act(x @ w.T + b) as one primitive; act one of LINEAR_ACTS. Under autocast in its
    low dtype, accumulating in float32."""
    if _autocast.active:
        x, w, b = to_low(x, w, b)
    return apply(LinearAct, (x, w, b), _LINEAR_PARAMS[act])


# -- softplus: a plain elementwise op (two parameters, and not an MLP's hot path) -------------
@primitive
class Softplus(Elementwise):
    """out = log(1 + e^(beta x)) / beta, or x where beta x > threshold (PyTorch's rule)"""
    name = "softplus"
    params = ("beta", "threshold")
    save_inputs = True
    broadcasting = False
    cost = elementwise_cost(8)

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        z = x * x.dtype.type(p.beta)
        value = xp.logaddexp(x.dtype.type(0), z) / x.dtype.type(p.beta)
        value = xp.where(z > p.threshold, x, value).astype(x.dtype, copy=False)
        if out is None:
            return value
        out[...] = value
        return out

    def partials(self, ins, out, p, needs):
        x = ins[0]
        slope = sigmoid(x * p.beta)
        if p.threshold == float("inf"):
            return (slope,)
        return (where(above_mask(x, p.beta, p.threshold), 1.0, slope),)


def softplus(x, beta=1.0, threshold=20.0):
    """log(1 + e^(beta x)) / beta, linear where beta x > threshold, as PyTorch's."""
    return apply(Softplus, (x,), Softplus.Params(float(beta), float(threshold)))
