"""Layer normalisation, with its backward as a primitive of its own, so that one fused
row-wise kernel serves each (``layer_norm_fwd``/``layer_norm_bwd`` in kernels/norm.cu).

Both ops normalise over the last ``ndim`` axes of x. Their derivative rules are written
with ops (the normalised input recomputed by the forward kernel, the reciprocal standard
deviation as a composition), so every order of derivative is available.
"""
from __future__ import annotations

from .._autograd.graph import Op, apply, primitive
from ._common import add_terms, prod, shape_str
from .elementwise import sqrt
from .reduce import mean, sum


def _rows_cols(shape, ndim):
    return prod(shape[:len(shape) - ndim]), prod(shape[len(shape) - ndim:])


def _norm_cost(flops, moved):
    def cost(self, in_shapes, out_shape, p):
        n = prod(in_shapes[0])
        return flops * n, moved * n
    return cost


def _call(kernel, p, shape, arrays, out):
    """Run a last-axis kernel on (rows, cols) views of the arrays, giving ``shape``."""
    rows, cols = _rows_cols(shape, p.ndim)
    flat = [None if a is None else a.reshape((rows, cols) if a.ndim == len(shape) else cols)
            for a in arrays]
    if out is None:
        return kernel(*flat, p.eps).reshape(shape)
    if out.flags.c_contiguous:
        kernel(*flat, p.eps, out=out.reshape(rows, cols))     # a view: written in place
    else:
        out[...] = kernel(*flat, p.eps).reshape(shape)
    return out


def _axes(x, p):
    return tuple(range(x.ndim - p.ndim, x.ndim))


def _lead(x, p):
    return tuple(range(x.ndim - p.ndim))


def _rstd(x, p):
    """1 / sqrt(var + eps) over the normalised axes (kept), as a composition of ops."""
    axes = _axes(x, p)
    centred = x - mean(x, axes, True)
    return 1 / sqrt(mean(centred * centred, axes, True) + p.eps)


@primitive
class LayerNorm(Op):
    """out = (x - mean) / sqrt(var + eps) * w + b over the last ``ndim`` axes; the inputs are
    (x,) or (x, w, b)"""
    name = "layer_norm"
    params = ("ndim", "eps")
    save_inputs = True
    cost = _norm_cost(8, 2)

    def forward(self, dev, p, x, w=None, b=None, out=None):
        return _call(dev.kernels.layer_norm_fwd, p, x.shape, (x, w, b), out)

    def vjp(self, g, ins, out, p, needs):
        x = ins[0]
        w = ins[1] if len(ins) == 3 else None
        gx = layer_norm_grad(g, x, w, p) if needs[0] else None
        if len(ins) == 1:
            return (gx,)
        lead = _lead(x, p)
        gw = sum(g * layer_norm(x, p), lead) if needs[1] else None
        gb = sum(g, lead) if needs[2] else None
        return gx, gw, gb

    def jvp(self, ts, ins, out, p):
        x = ins[0]
        tx = ts[0]
        t = None if tx is None else layer_norm_grad(tx, x, None, p)
        if len(ins) == 1:
            return t
        w = ins[1]
        tw, tb = ts[1], ts[2]
        return add_terms(None if t is None else t * w,
                         None if tw is None else layer_norm(x, p) * tw, tb)


@primitive
class LayerNormGrad(Op):
    """out = r (q - mean(q) - xh mean(q xh)) over the last ``ndim`` axes, q = g w (or g),
    xh the normalised x, r = 1 / sqrt(var + eps); the inputs are (g, x) or (g, x, w)"""
    name = "layer_norm_grad"
    params = ("ndim", "eps")
    save_inputs = True
    save_output = True
    cost = _norm_cost(12, 3)

    def forward(self, dev, p, g, x, w=None, out=None):
        return _call(dev.kernels.layer_norm_bwd, p, x.shape, (g, x, w), out)

    def vjp(self, u, ins, out, p, needs):
        g, x = ins[0], ins[1]
        w = ins[2] if len(ins) == 3 else None
        axes = _axes(x, p)
        ju = layer_norm_grad(u, x, None, p)         # the Jacobian of x -> xh is symmetric
        gg_ = (ju if w is None else ju * w) if needs[0] else None
        gx = None
        if needs[1]:
            xh = layer_norm(x, p)
            r = _rstd(x, p)
            q = g if w is None else g * w
            gx = -(r * (mean(out * u, axes, True) * xh + mean(q * xh, axes, True) * ju
                        + mean(u * xh, axes, True) * out))
        if w is None:
            return gg_, gx
        gw = sum(ju * g, _lead(x, p)) if needs[2] else None
        return gg_, gx, gw

    def jvp(self, ts, ins, out, p):
        g, x = ins[0], ins[1]
        w = ins[2] if len(ins) == 3 else None
        tg, tx = ts[0], ts[1]
        tw = ts[2] if len(ts) == 3 else None
        tq = add_terms(None if tg is None else (tg if w is None else tg * w),
                       None if tw is None else g * tw)
        result = None if tq is None else layer_norm_grad(tq, x, None, p)
        if tx is None:
            return result
        axes = _axes(x, p)
        xh = layer_norm(x, p)
        r = _rstd(x, p)
        q = g if w is None else g * w
        jt = layer_norm_grad(tx, x, None, p)
        dx = -(r * (out * mean(xh * tx, axes, True) + mean(q * xh, axes, True) * jt
                    + xh * mean(q * jt, axes, True)))
        return add_terms(result, dx)


def layer_norm(x, p, w=None, b=None):
    """The primitive on (x,) or (x, w, b) with a Params record (rules call this)."""
    return apply(LayerNorm, (x,) if w is None else (x, w, b), p)


def layer_norm_grad(g, x, w, p):
    return apply(LayerNormGrad, (g, x) if w is None else (g, x, w), p)


def layer_norm_params(ndim, eps):
    return LayerNorm.Params(int(ndim), float(eps))


def check_normalized_shape(x, normalized_shape, weight, bias):
    """The number of normalised axes, or an error naming the shapes."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else \
        tuple(int(s) for s in normalized_shape)
    if not shape or tuple(x.shape[x.ndim - len(shape):]) != shape or x.ndim < len(shape):
        raise ValueError(f"layer_norm: normalized_shape {shape_str(shape)} is not the trailing "
                         f"shape of the input {shape_str(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and tuple(t.shape) != shape:
            raise ValueError(f"layer_norm: {name} of shape {shape_str(t.shape)} does not match "
                             f"normalized_shape {shape_str(shape)}")
    return len(shape)
