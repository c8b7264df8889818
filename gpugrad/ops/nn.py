"""Activations, softmax family and the cross-entropy loss, each with its backward as a
primitive of its own, so that one fused kernel serves it (``<op>_fwd``/``<op>_bwd``).
"""
from __future__ import annotations

import numpy as np

from .._graph import Op, apply
from .._tensor import Tensor, wrap
from ..kernels.reference import GELU_C, GELU_K, INV_SQRT_2PI
from ._common import add_terms, normalize_axes, shape_str
from .elementwise import exp
from .linalg import matmul
from .reduce import sum
from .shape import reshape, swap_last


def _n(shape):
    return int(np.prod(shape))


# -- relu ---------------------------------------------------------------------------------------
class Relu(Op):
    """out = max(x, 0); saves its output, not its input"""
    name = "relu"
    kernel = "relu_fwd"
    save_output = True

    def vjp(g, ins, out, p, needs):
        return (relu_grad(g, out),)

    def jvp(ts, ins, out, p):
        return relu_grad(ts[0], out)


def relu(x):
    return apply(Relu, (x,))


class ReluGrad(Op):
    """out = g where y > 0 else 0"""
    name = "relu_grad"
    kernel = "relu_bwd"
    save_inputs = (False, True)

    def vjp(gy, ins, out, p, needs):
        return relu_grad(gy, ins[1]), None

    def jvp(ts, ins, out, p):
        return None if ts[0] is None else relu_grad(ts[0], ins[1])


def relu_grad(g, y):
    return apply(ReluGrad, (g, y))


# -- tanh ---------------------------------------------------------------------------------------
class Tanh(Op):
    """out = tanh x; saves its output"""
    name = "tanh"
    kernel = "tanh"
    save_output = True

    def vjp(g, ins, out, p, needs):
        return (tanh_grad(g, out),)

    def jvp(ts, ins, out, p):
        return tanh_grad(ts[0], out)


def tanh(x):
    return apply(Tanh, (x,))


class TanhGrad(Op):
    """out = g (1 - y^2)"""
    name = "tanh_grad"
    kernel = "tanh_bwd"
    save_inputs = True

    def vjp(gy, ins, out, p, needs):
        g, y = ins
        return (tanh_grad(gy, y) if needs[0] else None,
                -2 * gy * g * y if needs[1] else None)

    def jvp(ts, ins, out, p):
        g, y = ins
        tg, ty = ts
        return add_terms(None if tg is None else tanh_grad(tg, y),
                         None if ty is None else -2 * g * y * ty)


def tanh_grad(g, y):
    return apply(TanhGrad, (g, y))


# -- sigmoid ------------------------------------------------------------------------------------
class Sigmoid(Op):
    """out = 1 / (1 + e^-x); saves its output"""
    name = "sigmoid"
    kernel = "sigmoid_fwd"
    save_output = True

    def vjp(g, ins, out, p, needs):
        return (sigmoid_grad(g, out),)

    def jvp(ts, ins, out, p):
        return sigmoid_grad(ts[0], out)


def sigmoid(x):
    return apply(Sigmoid, (x,))


class SigmoidGrad(Op):
    """out = g y (1 - y)"""
    name = "sigmoid_grad"
    kernel = "sigmoid_bwd"
    save_inputs = True

    def vjp(gy, ins, out, p, needs):
        g, y = ins
        return (sigmoid_grad(gy, y) if needs[0] else None,
                gy * g * (1 - 2 * y) if needs[1] else None)

    def jvp(ts, ins, out, p):
        g, y = ins
        tg, ty = ts
        return add_terms(None if tg is None else sigmoid_grad(tg, y),
                         None if ty is None else g * (1 - 2 * y) * ty)


def sigmoid_grad(g, y):
    return apply(SigmoidGrad, (g, y))


# -- gelu, exact and in its tanh form -------------------------------------------------------------
def _gelu_second(x):
    """gelu''(x) = phi(x) (2 - x^2), written with ops so that it can be differentiated."""
    return exp(-0.5 * x * x) * INV_SQRT_2PI * (2 - x * x)


def _gelu_tanh_second(x):
    """The tanh form's second derivative, written with ops."""
    u = GELU_K * (x + GELU_C * x * x * x)
    t = tanh(u)
    du = GELU_K * (1 + 3 * GELU_C * x * x)
    d2u = 6 * GELU_K * GELU_C * x
    return (1 - t * t) * (du + 0.5 * x * (d2u - 2 * t * du * du))


class _GeluGradRule(Op):
    """out = g gelu'(x) for one form of GELU; linear in g, and its x-derivative is the
    form's second derivative."""
    save_inputs = True
    second = None

    @classmethod
    def vjp(cls, gy, ins, out, p, needs):
        g, x = ins
        return (apply(cls, (gy, x)) if needs[0] else None,
                gy * g * cls.second(x) if needs[1] else None)

    @classmethod
    def jvp(cls, ts, ins, out, p):
        g, x = ins
        tg, tx = ts
        return add_terms(None if tg is None else apply(cls, (tg, x)),
                         None if tx is None else g * cls.second(x) * tx)


class GeluGrad(_GeluGradRule):
    """out = g gelu'(x) = g (Phi(x) + x phi(x))"""
    name = "gelu_grad"
    kernel = "gelu_erf_bwd"
    second = staticmethod(_gelu_second)


class GeluTanhGrad(_GeluGradRule):
    """out = g d/dx gelu_tanh(x)"""
    name = "gelu_tanh_grad"
    kernel = "gelu_bwd"
    second = staticmethod(_gelu_tanh_second)


class _GeluRule(Op):
    """A GELU: saves its input; the derivative is its own primitive."""
    save_inputs = True
    grad_op = None

    @classmethod
    def vjp(cls, g, ins, out, p, needs):
        return (apply(cls.grad_op, (g, ins[0])),)

    @classmethod
    def jvp(cls, ts, ins, out, p):
        return apply(cls.grad_op, (ts[0], ins[0]))


class Gelu(_GeluRule):
    """out = x/2 (1 + erf(x / sqrt 2)), the exact GELU (PyTorch's default)"""
    name = "gelu"
    kernel = "gelu_erf_fwd"
    grad_op = GeluGrad


class GeluTanh(_GeluRule):
    """out = x/2 (1 + tanh(k (x + c x^3))), GELU in its tanh form"""
    name = "gelu_tanh"
    kernel = "gelu_fwd"
    grad_op = GeluTanhGrad


def gelu(x):
    return apply(Gelu, (x,))


def gelu_grad(g, x):
    return apply(GeluGrad, (g, x))


def gelu_tanh(x):
    return apply(GeluTanh, (x,))


def gelu_tanh_grad(g, x):
    return apply(GeluTanhGrad, (g, x))


# -- softmax family -----------------------------------------------------------------------------
def _last_axis_call(kernel, axis, *arrays):
    """Run a last-axis kernel along ``axis`` by moving that axis last and back."""
    if axis == arrays[0].ndim - 1:
        return kernel(*arrays)
    xp_moved = [a.swapaxes(axis, -1) for a in arrays]
    return kernel(*xp_moved).swapaxes(axis, -1)


class Softmax(Op):
    """out = e^x / sum(e^x) along an axis; saves its output"""
    name = "softmax"
    save_output = True
    cost = staticmethod(lambda i, o, p: (5 * _n(o), 2 * _n(o)))

    def forward(dev, p, x):
        return _last_axis_call(dev.kernels.softmax_fwd, p[0], x)

    def vjp(g, ins, out, p, needs):
        return (softmax_grad(g, out, p[0]),)

    def jvp(ts, ins, out, p):
        # the Jacobian of softmax is symmetric: the JVP is the VJP
        return softmax_grad(ts[0], out, p[0])


def _one_axis(axis, ndim, what):
    if ndim == 0:
        raise ValueError(f"{what} needs at least one dimension")
    return normalize_axes(axis, ndim)[0]


def softmax(x, axis=-1):
    return apply(Softmax, (x,), (_one_axis(axis, x.ndim, "softmax"),))


class SoftmaxGrad(Op):
    """out = y (g - sum(g y)) along an axis (y is softmax's output)"""
    name = "softmax_grad"
    save_inputs = True
    cost = staticmethod(lambda i, o, p: (4 * _n(o), 3 * _n(o)))

    def forward(dev, p, g, y):
        return _last_axis_call(dev.kernels.softmax_bwd, p[0], g, y)

    def vjp(gy, ins, out, p, needs):
        g, y = ins
        axis = p[0]
        gg_ = softmax_grad(gy, y, axis) if needs[0] else None
        gy_ = None
        if needs[1]:
            gy_ = gy * (g - sum(g * y, axis, True)) - sum(gy * y, axis, True) * g
        return gg_, gy_

    def jvp(ts, ins, out, p):
        g, y = ins
        tg, ty = ts
        axis = p[0]
        return add_terms(
            None if tg is None else softmax_grad(tg, y, axis),
            None if ty is None else ty * (g - sum(g * y, axis, True)) - y * sum(g * ty, axis, True))


def softmax_grad(g, y, axis):
    return apply(SoftmaxGrad, (g, y), (axis,))


class LogSoftmax(Op):
    """out = x - logsumexp(x) along an axis; saves its output"""
    name = "log_softmax"
    save_output = True
    cost = staticmethod(lambda i, o, p: (5 * _n(o), 2 * _n(o)))

    def forward(dev, p, x):
        return _last_axis_call(dev.kernels.log_softmax_fwd, p[0], x)

    def vjp(g, ins, out, p, needs):
        return (log_softmax_grad(g, out, p[0]),)

    def jvp(ts, ins, out, p):
        t = ts[0]
        return t - sum(exp(out) * t, p[0], True)


def log_softmax(x, axis=-1):
    return apply(LogSoftmax, (x,), (_one_axis(axis, x.ndim, "log_softmax"),))


class LogSoftmaxGrad(Op):
    """out = g - e^y sum(g) along an axis (y is log_softmax's output)"""
    name = "log_softmax_grad"
    save_inputs = True
    cost = staticmethod(lambda i, o, p: (4 * _n(o), 3 * _n(o)))

    def forward(dev, p, g, y):
        return _last_axis_call(dev.kernels.log_softmax_bwd, p[0], g, y)

    def vjp(gy, ins, out, p, needs):
        g, y = ins
        axis = p[0]
        e = exp(y)
        gg_ = gy - sum(gy * e, axis, True) if needs[0] else None
        gy_ = -(gy * e * sum(g, axis, True)) if needs[1] else None
        return gg_, gy_

    def jvp(ts, ins, out, p):
        g, y = ins
        tg, ty = ts
        axis = p[0]
        e = exp(y)
        return add_terms(None if tg is None else log_softmax_grad(tg, y, axis),
                         None if ty is None else -(e * ty * sum(g, axis, True)))


def log_softmax_grad(g, y, axis):
    return apply(LogSoftmaxGrad, (g, y), (axis,))


# -- softmax cross-entropy with integer labels ----------------------------------------------------
class SoftmaxCrossEntropy(Op):
    """out = scale * sum_i (logsumexp(z_i) - z_i[label_i]); saves the logits"""
    name = "softmax_xent"
    save_inputs = True
    cost = staticmethod(lambda i, o, p: (6 * _n(i[0]), _n(i[0])))

    def forward(dev, p, z, labels):
        return dev.kernels.softmax_xent_fwd(z, labels, p[0])

    def vjp(g, ins, out, p, needs):
        z, labels = ins
        return softmax_xent_grad(z, labels, g, p[0]), None

    def jvp(ts, ins, out, p):
        z, labels = ins
        if ts[0] is None:
            return None
        return sum(_probs_minus_onehot(z, labels) * ts[0]) * p[0]


def _probs_minus_onehot(z, labels):
    probs = softmax(z, -1)
    onehot = _onehot(labels, z)
    return probs - onehot


def _onehot(labels, like):
    xp = like.device.xp
    arr = xp.zeros(like.shape, dtype=like.dtype)
    arr[xp.arange(like.shape[0]), labels._data] = 1
    return wrap(arr, like.device)


class SoftmaxCrossEntropyGrad(Op):
    """out = (softmax(z) - onehot(labels)) * g * scale, in one pass"""
    name = "softmax_xent_grad"
    save_inputs = True
    cost = staticmethod(lambda i, o, p: (6 * _n(o), 2 * _n(o)))

    def forward(dev, p, z, labels, g):
        return dev.kernels.softmax_xent_bwd(z, labels, g, p[0])

    def vjp(gy, ins, out, p, needs):
        z, labels, g = ins
        scale = p[0]
        gz = gg_ = None
        if needs[0]:
            gz = softmax_grad(gy, softmax(z, -1), -1) * (g * scale)
        if needs[2]:
            gg_ = sum(_probs_minus_onehot(z, labels) * gy) * scale
        return gz, None, gg_

    def jvp(ts, ins, out, p):
        z, labels, g = ins
        tz, _, tg = ts
        scale = p[0]
        return add_terms(
            None if tz is None else softmax_grad(tz, softmax(z, -1), -1) * (g * scale),
            None if tg is None else _probs_minus_onehot(z, labels) * (tg * scale))


def softmax_xent_grad(z, labels, g, scale):
    return apply(SoftmaxCrossEntropyGrad, (z, labels, g), (scale,))


def softmax_cross_entropy(logits, labels, reduction="mean"):
    """Cross-entropy of softmax(logits) against integer class labels, per row."""
    if not isinstance(labels, Tensor):
        labels = wrap(logits.device.asarray(labels), logits.device)
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got "
                         f"{shape_str(logits.shape)}")
    if labels.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy expects integer class labels, got dtype {labels.dtype}")
    if labels.shape != logits.shape[:1]:
        raise ValueError(f"cross_entropy: labels of shape {shape_str(labels.shape)} do not "
                         f"match logits of shape {shape_str(logits.shape)}")
    if labels.device is not logits.device:
        raise ValueError(f"cross_entropy: logits on {logits.device}, labels on {labels.device}")
    if labels.device.type == "cpu" and labels.size:
        lo, hi = int(labels._data.min()), int(labels._data.max())
        if lo < 0 or hi >= logits.shape[1]:
            raise ValueError(f"cross_entropy: label {lo if lo < 0 else hi} is out of range for "
                             f"{logits.shape[1]} classes")
    n = logits.shape[0]
    if reduction == "mean":
        scale = 1.0 / n if n else float("nan")
    elif reduction == "sum":
        scale = 1.0
    elif reduction == "none":
        from .shape import getitem
        picked = getitem(log_softmax(logits, -1),
                         (wrap(logits.device.xp.arange(n), logits.device), labels))
        return -picked
    else:
        raise ValueError(f"unknown reduction '{reduction}': expected 'mean', 'sum' or 'none'")
    return apply(SoftmaxCrossEntropy, (logits, labels), (scale,))


# -- bias + activation, fused ---------------------------------------------------------------
class _BiasAct(Op):
    """out = act(x + b), b broadcast over the rows of x: one pass instead of two.
    The bias cotangent is the row sum of the pre-activation's, which the scheduler makes
    when it sums the cotangent back to b's shape."""
    broadcasting = True
    act = "none"

    def forward(dev, p, x, b):
        return dev.kernels.bias_act_fwd(x, b, p[0])


class _BiasActSavingOutput(_BiasAct):
    """relu, tanh and sigmoid: the derivative is a function of the output"""
    save_output = True
    act_grad = None

    @classmethod
    def vjp(cls, g, ins, out, p, needs):
        gz = cls.act_grad(g, out)
        return gz, gz

    @classmethod
    def jvp(cls, ts, ins, out, p):
        tz = add_terms(ts[0], ts[1])
        return cls.act_grad(tz, out)


class BiasRelu(_BiasActSavingOutput):
    """out = relu(x + b)"""
    name = "bias_relu"
    act_grad = staticmethod(relu_grad)


class BiasTanh(_BiasActSavingOutput):
    """out = tanh(x + b)"""
    name = "bias_tanh"
    act_grad = staticmethod(tanh_grad)


class BiasSigmoid(_BiasActSavingOutput):
    """out = sigmoid(x + b)"""
    name = "bias_sigmoid"
    act_grad = staticmethod(sigmoid_grad)


class BiasGelu(_BiasAct):
    """out = gelu(x + b), exact or in its tanh form (p[0]); saves its inputs and
    recomputes x + b for the derivative"""
    name = "bias_gelu"
    save_inputs = True

    def vjp(g, ins, out, p, needs):
        gz = _GELU_GRAD[p[0]](g, ins[0] + ins[1])
        return gz, gz

    def jvp(ts, ins, out, p):
        return _GELU_GRAD[p[0]](add_terms(ts[0], ts[1]), ins[0] + ins[1])


_GELU_GRAD = {"gelu": gelu_grad, "gelu_tanh": gelu_tanh_grad}
_BIAS_ACT = {"relu": BiasRelu, "tanh": BiasTanh, "sigmoid": BiasSigmoid, "gelu": BiasGelu,
             "gelu_tanh": BiasGelu}


def bias_act(x, b, act):
    """act(x + b) for a bias b of shape (x.shape[-1],), in one fused kernel."""
    if act == "none":
        return x + b
    if act not in _BIAS_ACT:
        raise ValueError(f"unknown activation '{act}': expected none, "
                         + ", ".join(_BIAS_ACT))
    if b.ndim != 1 or x.ndim < 1 or x.shape[-1] != b.shape[0]:
        raise ValueError(f"bias_act: bias of shape {shape_str(b.shape)} does not fit input of "
                         f"shape {shape_str(x.shape)}")
    return apply(_BIAS_ACT[act], (x, b), (act,))


# -- linear layer with its activation, fused ------------------------------------------------
class LinearAct(Op):
    """out = act(x @ w.T + b) for a weight w of shape (out, in): one GEMM into a buffer that
    the bias + activation kernel then rewrites in place; saves its inputs and output.
    A measured win over the composition (transpose, matmul, bias_act): five primitives
    fewer per layer and step, and no pre-activation array."""
    name = "linear"
    save_inputs = True
    save_output = True
    cost = staticmethod(lambda i, o, p: (2 * _n(o) * i[0][-1], _n(i[0]) + _n(i[1]) + _n(o)))

    def forward(dev, p, x, w, b):
        y = dev.xp.matmul(x, w.T)
        return dev.kernels.bias_act_fwd(y, b, p[0], out=y)

    def vjp(g, ins, out, p, needs):
        x, w, b = ins
        gz = _ACT_GRAD[p[0]](g, out) if p[0] != "none" else g
        gx = matmul(gz, w) if needs[0] else None
        gw = None
        if needs[1]:
            gz2 = gz if gz.ndim == 2 else reshape(gz, (-1, gz.shape[-1]))
            x2 = x if x.ndim == 2 else reshape(x, (-1, x.shape[-1]))
            gw = matmul(swap_last(gz2), x2)
        return gx, gw, (gz if needs[2] else None)

    def jvp(ts, ins, out, p):
        x, w, b = ins
        tx, tw, tb = ts
        tz = add_terms(None if tx is None else matmul(tx, swap_last(w)),
                       None if tw is None else matmul(x, swap_last(tw)), tb)
        if tz is None:
            return None
        return _ACT_GRAD[p[0]](tz, out) if p[0] != "none" else tz


_ACT_GRAD = {"relu": relu_grad, "tanh": tanh_grad, "sigmoid": sigmoid_grad}
LINEAR_ACTS = ("none", "relu", "tanh", "sigmoid")


def linear_act(x, w, b, act="none"):
    """act(x @ w.T + b) as one primitive; act one of none, relu, tanh, sigmoid."""
    return apply(LinearAct, (x, w, b), (act,))
