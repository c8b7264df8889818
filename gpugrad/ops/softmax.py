"""The softmax family and the softmax cross-entropy loss, each with its backward as a
primitive of its own, so that one fused kernel serves it (``<op>_fwd``/``<op>_bwd``)."""
from __future__ import annotations

from .. import _autocast
from .._autograd.graph import Op, apply, primitive
from .._tensor import Tensor, wrap
from ._amp import to_float32
from ._common import add_terms, const_like, dim_args, normalize_axes, prod, raw, shape_str, xp_of
from .elementwise import cast, exp
from .reduce import sum
from .shape import getitem


def _rows_cost(flops, moved):
    def cost(self, in_shapes, out_shape, p):
        n = prod(in_shapes[0])
        return flops * n, moved * n
    return cost


# -- softmax family -----------------------------------------------------------------------------
def _last_axis_call(kernel, axis, arrays, out):
    """Run a last-axis kernel along ``axis`` by moving that axis last and back."""
    if axis == arrays[0].ndim - 1:
        return kernel(*arrays, out=out)
    value = kernel(*[a.swapaxes(axis, -1) for a in arrays]).swapaxes(axis, -1)
    if out is None:
        return value
    out[...] = value
    return out


@primitive
class Softmax(Op):
    """out = e^x / sum(e^x) along an axis; saves its output"""
    name = "softmax"
    save_output = True
    params = ("axis",)
    cost = _rows_cost(5, 2)

    def forward(self, dev, p, x, out=None):
        return _last_axis_call(dev.kernels.softmax_fwd, p.axis, (x,), out)

    def vjp(self, g, ins, out, p, needs):
        return (softmax_grad(g, out, p.axis),)

    def jvp(self, ts, ins, out, p):
        # the Jacobian of softmax is symmetric: the JVP is the VJP
        return softmax_grad(ts[0], out, p.axis)


def _one_axis(axis, ndim, what):
    if ndim == 0:
        raise ValueError(f"{what} needs at least one dimension")
    return normalize_axes(axis, ndim)[0]


def softmax(x, dim=-1, *, axis=None, dtype=None):
    """e^x / sum(e^x) along ``dim`` (``axis`` is accepted as an alias)."""
    dim, _ = dim_args("softmax", None if axis is not None else dim, False, axis)
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    return apply(Softmax, (x,), Softmax.Params(_one_axis(dim, x.ndim, "softmax")))


@primitive
class SoftmaxGrad(Op):
    """out = y (g - sum(g y)) along an axis (y is softmax's output)"""
    name = "softmax_grad"
    save_inputs = True
    params = ("axis",)
    cost = _rows_cost(4, 3)

    def forward(self, dev, p, g, y, out=None):
        return _last_axis_call(dev.kernels.softmax_bwd, p.axis, (g, y), out)

    def vjp(self, gy, ins, out, p, needs):
        g, y = ins
        axis = p.axis
        gg_ = softmax_grad(gy, y, axis) if needs[0] else None
        gy_ = None
        if needs[1]:
            gy_ = gy * (g - sum(g * y, axis, True)) - sum(gy * y, axis, True) * g
        return gg_, gy_

    def jvp(self, ts, ins, out, p):
        g, y = ins
        tg, ty = ts
        axis = p.axis
        return add_terms(
            None if tg is None else softmax_grad(tg, y, axis),
            None if ty is None else ty * (g - sum(g * y, axis, True)) - y * sum(g * ty, axis, True))


def softmax_grad(g, y, axis):
    return apply(SoftmaxGrad, (g, y), SoftmaxGrad.Params(axis))


@primitive
class LogSoftmax(Op):
    """out = x - logsumexp(x) along an axis; saves its output"""
    name = "log_softmax"
    save_output = True
    params = ("axis",)
    cost = _rows_cost(5, 2)

    def forward(self, dev, p, x, out=None):
        return _last_axis_call(dev.kernels.log_softmax_fwd, p.axis, (x,), out)

    def vjp(self, g, ins, out, p, needs):
        return (log_softmax_grad(g, out, p.axis),)

    def jvp(self, ts, ins, out, p):
        t = ts[0]
        return t - sum(exp(out) * t, p.axis, True)


def log_softmax(x, dim=-1, *, axis=None, dtype=None):
    """x - logsumexp(x) along ``dim`` (``axis`` is accepted as an alias)."""
    dim, _ = dim_args("log_softmax", None if axis is not None else dim, False, axis)
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    return apply(LogSoftmax, (x,), LogSoftmax.Params(_one_axis(dim, x.ndim, "log_softmax")))


@primitive
class LogSoftmaxGrad(Op):
    """out = g - e^y sum(g) along an axis (y is log_softmax's output)"""
    name = "log_softmax_grad"
    save_inputs = True
    params = ("axis",)
    cost = _rows_cost(4, 3)

    def forward(self, dev, p, g, y, out=None):
        return _last_axis_call(dev.kernels.log_softmax_bwd, p.axis, (g, y), out)

    def vjp(self, gy, ins, out, p, needs):
        g, y = ins
        axis = p.axis
        e = exp(y)
        gg_ = gy - sum(gy * e, axis, True) if needs[0] else None
        gy_ = -(gy * e * sum(g, axis, True)) if needs[1] else None
        return gg_, gy_

    def jvp(self, ts, ins, out, p):
        g, y = ins
        tg, ty = ts
        axis = p.axis
        e = exp(y)
        return add_terms(None if tg is None else log_softmax_grad(tg, y, axis),
                         None if ty is None else -(e * ty * sum(g, axis, True)))


def log_softmax_grad(g, y, axis):
    return apply(LogSoftmaxGrad, (g, y), LogSoftmaxGrad.Params(axis))


# -- softmax cross-entropy with integer labels ----------------------------------------------------
@primitive
class SoftmaxCrossEntropy(Op):
    """out = scale * sum_i (logsumexp(z_i) - z_i[label_i]); saves the logits"""
    name = "softmax_xent"
    save_inputs = True
    params = ("scale",)
    cost = _rows_cost(6, 1)

    def forward(self, dev, p, z, labels, out=None):
        return dev.kernels.softmax_xent_fwd(z, labels, p.scale, out=out)

    def vjp(self, g, ins, out, p, needs):
        z, labels = ins
        return softmax_xent_grad(z, labels, g, p.scale), None

    def jvp(self, ts, ins, out, p):
        z, labels = ins
        if ts[0] is None:
            return None
        return sum(_probs_minus_onehot(z, labels) * ts[0]) * p.scale


def _probs_minus_onehot(z, labels):
    probs = softmax(z, -1)
    onehot = _onehot(labels, z)
    return probs - onehot


def _onehot(labels, like):
    xp = xp_of(like)
    arr = xp.zeros(like.shape, dtype=like.dtype)
    arr[xp.arange(like.shape[0]), raw(labels)] = 1
    return const_like(arr, like)


@primitive
class SoftmaxCrossEntropyGrad(Op):
    """out = (softmax(z) - onehot(labels)) * g * scale, in one pass"""
    name = "softmax_xent_grad"
    save_inputs = True
    params = ("scale",)
    cost = _rows_cost(6, 2)

    def forward(self, dev, p, z, labels, g, out=None):
        return dev.kernels.softmax_xent_bwd(z, labels, g, p.scale, out=out)

    def vjp(self, gy, ins, out, p, needs):
        z, labels, g = ins
        scale = p.scale
        gz = gg_ = None
        if needs[0]:
            gz = softmax_grad(gy, softmax(z, -1), -1) * (g * scale)
        if needs[2]:
            gg_ = sum(_probs_minus_onehot(z, labels) * gy) * scale
        return gz, None, gg_

    def jvp(self, ts, ins, out, p):
        z, labels, g = ins
        tz, _, tg = ts
        scale = p.scale
        return add_terms(
            None if tz is None else softmax_grad(tz, softmax(z, -1), -1) * (g * scale),
            None if tg is None else _probs_minus_onehot(z, labels) * (tg * scale))


def softmax_xent_grad(z, labels, g, scale):
    return apply(SoftmaxCrossEntropyGrad, (z, labels, g), SoftmaxCrossEntropyGrad.Params(scale))


def softmax_cross_entropy(logits, labels, reduction="mean"):
    """Cross-entropy of softmax(logits) against integer class labels, per row; in float32
    under autocast."""
    if _autocast.active:
        logits = to_float32(logits)
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
    if labels.device.is_host and labels._data.size:
        # a host check costs nothing there; on a GPU it would be a sync per call
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
        picked = getitem(log_softmax(logits, -1),
                         (wrap(logits.device.xp.arange(n), logits.device), labels))
        return -picked
    else:
        raise ValueError(f"unknown reduction '{reduction}': expected 'mean', 'sum' or 'none'")
    return apply(SoftmaxCrossEntropy, (logits, labels), SoftmaxCrossEntropy.Params(scale))
