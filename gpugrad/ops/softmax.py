"""The softmax family and the softmax cross-entropy loss, each with its backward as a
primitive of its own, so that one fused kernel serves it (``<op>_fwd``/``<op>_bwd``)."""
from __future__ import annotations

from .. import _autocast
from .._autograd.graph import Op, apply, primitive
from .._tensor import Tensor, wrap
from ..kernels.reference import all_labels_in_range, labels_in_range
from ._amp import to_float32
from ._common import (
    add_terms,
    dim_args,
    fixed_like,
    normalize_axes,
    prod,
    raw,
    refuse_host_work,
    shape_str,
    xp_of,
)
from ._derivative import row_shares
from .elementwise import cast, exp
from .reduce import sum
from .shape import getitem, reshape


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
    if ndim == 0 and axis not in (0, -1):
        raise IndexError(f"{what}: dimension out of range (expected to be in range of [-1, 0], "
                         f"but got {axis})")
    return normalize_axes(axis, ndim)[0] if ndim else 0


def _over_rows(op, x, axis):
    """op along ``axis``; a 0-d x is one row of one element (1 for softmax, 0 for
    log_softmax, as PyTorch gives); an empty x gives an empty result."""
    if x.ndim == 0:
        return reshape(apply(op, (reshape(x, (1,)),), op.Params(0)), ())
    if 0 in x.shape:
        return x * 0.0           # no rows, or rows of nothing: an empty result, as PyTorch
    return apply(op, (x,), op.Params(axis))


def softmax(x, dim=-1, *, axis=None, dtype=None):
    """e^x / sum(e^x) along ``dim`` (``axis`` is accepted as an alias)."""
    dim, _ = dim_args("softmax", None if axis is not None else dim, False, axis)
    if _autocast.active:
        x = to_float32(x)
    if dtype is not None:
        x = cast(x, dtype)
    return _over_rows(Softmax, x, _one_axis(dim, x.ndim, "softmax"))


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
    return _over_rows(LogSoftmax, x, _one_axis(dim, x.ndim, "log_softmax"))


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
# A row whose label lies outside [0, C) is ignored (PyTorch's ignore_index): it adds 0 to the
# loss, gets a zero gradient row, and a mean divides by the number of the other rows (nan for
# none). The kernels count those rows on the device, so a GPU never syncs for it.
@primitive
class SoftmaxCrossEntropy(Op):
    """out = sum_i (logsumexp(z_i) - z_i[label_i]) over the rows whose label is in [0, C),
    divided by their number if ``mean``; saves the logits"""
    name = "softmax_xent"
    save_inputs = True
    params = ("mean",)
    cost = _rows_cost(6, 1)

    def forward(self, dev, p, z, labels, out=None):
        return dev.kernels.softmax_xent_fwd(z, labels, p.mean, out=out)

    def vjp(self, g, ins, out, p, needs):
        z, labels = ins
        return softmax_xent_grad(z, labels, g, p.mean), None

    def jvp(self, ts, ins, out, p):
        z, labels = ins
        if ts[0] is None:
            return None
        return sum(_xent_gradient(z, labels, p.mean) * ts[0])


def _xent_gradient(z, labels, mean):
    """The loss's gradient with respect to the logits (the backward with g = 1)."""
    one = fixed_like(xp_of(z).ones((), dtype=z.dtype), z)
    return softmax_xent_grad(z, labels, one, mean)


def _row_weights(z, labels, mean):
    """(N, 1) constant: each row's share of the loss (0 for an ignored row)."""
    return row_shares(labels, z.shape[1], mean, raw(z).dtype)


@primitive
class SoftmaxCrossEntropyGrad(Op):
    """out = (softmax(z) - onehot(labels)) * g, divided by the number of rows in range if
    ``mean``, 0 on an ignored row; in one pass"""
    name = "softmax_xent_grad"
    save_inputs = True
    params = ("mean",)
    cost = _rows_cost(6, 2)

    def forward(self, dev, p, z, labels, g, out=None):
        return dev.kernels.softmax_xent_bwd(z, labels, g, p.mean, out=out)

    def vjp(self, gy, ins, out, p, needs):
        z, labels, g = ins
        gz = gg_ = None
        if needs[0]:
            gz = softmax_grad(gy, softmax(z, -1), -1) * (_row_weights(z, labels, p.mean) * g)
        if needs[2]:
            gg_ = sum(_xent_gradient(z, labels, p.mean) * gy)
        return gz, None, gg_

    def jvp(self, ts, ins, out, p):
        z, labels, g = ins
        tz, _, tg = ts
        return add_terms(
            None if tz is None else
            softmax_grad(tz, softmax(z, -1), -1) * (_row_weights(z, labels, p.mean) * g),
            None if tg is None else softmax_xent_grad(z, labels, tg, p.mean))


def softmax_xent_grad(z, labels, g, mean):
    return apply(SoftmaxCrossEntropyGrad, (z, labels, g), SoftmaxCrossEntropyGrad.Params(mean))


def softmax_cross_entropy(logits, labels, reduction="mean", ignore_index=-100):
    """Cross-entropy of softmax(logits) against integer class labels, per row; in float32
    under autocast. A row labelled ``ignore_index`` is ignored, as PyTorch's: it adds 0, gets
    a zero gradient and does not count in a mean (nan when every row is ignored). A label
    outside [0, C) must be ``ignore_index`` (which must lie outside it): on a host device any
    other raises a ValueError; on a GPU it is treated as ignored, since checking it there
    would cost a host sync per call."""
    if _autocast.active:
        logits = to_float32(logits)
    dev = logits.device
    if not isinstance(labels, Tensor):
        labels = wrap(dev.asarray(labels), dev)
    shape, lab = logits.shape, labels._data
    if len(shape) != 2:
        raise ValueError(f"cross_entropy expects logits of shape (N, C), got "
                         f"{shape_str(shape)}")
    if lab.dtype.kind not in "iu":
        raise TypeError(f"cross_entropy expects integer class labels, got dtype {lab.dtype}")
    if lab.shape != shape[:1]:
        raise ValueError(f"cross_entropy: labels of shape {shape_str(lab.shape)} do not "
                         f"match logits of shape {shape_str(shape)}")
    if labels.device is not dev:
        raise ValueError(f"cross_entropy: logits on {dev}, labels on {labels.device}")
    classes = shape[1]
    if 0 <= ignore_index < classes:
        raise ValueError(f"softmax_cross_entropy: ignore_index {ignore_index} is a class "
                         f"(in [0, {classes})); use F.cross_entropy, which handles that")
    if dev.is_host and lab.size:
        # a host check costs nothing there; on a GPU it would be a sync per call
        bad = () if all_labels_in_range(lab, classes) else \
            lab[~labels_in_range(lab, classes) & (lab != ignore_index)]
        if len(bad):
            raise ValueError(f"cross_entropy: label {int(bad[0])} is out of range for "
                             f"{classes} classes (and is not ignore_index {ignore_index})")
    if reduction in ("mean", "sum"):
        return apply(SoftmaxCrossEntropy, (logits, labels),
                     SoftmaxCrossEntropy.Params(reduction == "mean"))
    if reduction != "none":
        raise ValueError(f"unknown reduction '{reduction}': expected 'mean', 'sum' or 'none'")
    refuse_host_work("softmax_cross_entropy(reduction='none') (its row mask)")
    dev, xp = logits.device, logits.device.xp
    lab = labels._data
    valid = (lab >= 0) & (lab < classes)
    rows = wrap(xp.arange(logits.shape[0]), dev)
    picked = getitem(log_softmax(logits, -1), (rows, wrap(xp.where(valid, lab, 0), dev)))
    return -picked * wrap(valid.astype(logits.dtype), dev)
