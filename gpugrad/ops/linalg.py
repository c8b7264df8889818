"""Matrix products (cuBLAS through CuPy on the GPU, BLAS through NumPy on the CPU)."""
from __future__ import annotations

from .. import _autocast
from .._autograd.graph import Op, apply, primitive
from ._amp import to_low
from ._common import add_terms, prod, raw, shape_str
from .shape import permute, reshape, sum_to, swap_last


def matmul_cost(self, in_shapes, out_shape, p):
    a, b = in_shapes
    n_out = prod(out_shape)
    return 2 * n_out * a[-1], prod(a) + prod(b) + n_out


@primitive
class MatMul(Op):
    """out = a @ b (NumPy's matmul: 1-D operands, batched broadcasting; two float16 or two
    bfloat16 operands accumulate in float32)"""
    name = "matmul"
    kernel = "matmul"
    save_inputs = True
    cost = matmul_cost

    def vjp(self, g, ins, out, p, needs):
        a, b = ins
        a2 = reshape(a, (1,) + a.shape) if a.ndim == 1 else a
        b2 = reshape(b, b.shape + (1,)) if b.ndim == 1 else b
        if a.ndim == 1 and b.ndim == 1:
            g2 = reshape(g, (1, 1))
        elif a.ndim == 1:
            g2 = reshape(g, g.shape[:-1] + (1, g.shape[-1]))
        elif b.ndim == 1:
            g2 = reshape(g, g.shape + (1,))
        else:
            g2 = g
        ga = gb = None
        if needs[0]:
            if _transposed(a2):
                # a is a transposed view (x.T): make (g b^T)^T = b g^T contiguous, so that
                # the transpose's own VJP hands the leaf a contiguous gradient
                ga = swap_last(matmul(b2, swap_last(g2)))
            else:
                ga = matmul(g2, swap_last(b2))
            ga = reshape(sum_to(ga, a2.shape), a.shape)
        if needs[1]:
            if _transposed(b2):
                # b is a transposed view (the weight of a linear layer, W.T): likewise
                gb = swap_last(matmul(swap_last(g2), a2))
            else:
                gb = matmul(swap_last(a2), g2)
            gb = reshape(sum_to(gb, b2.shape), b.shape)
        return ga, gb

    def jvp(self, ts, ins, out, p):
        ta, tb = ts
        a, b = ins
        return add_terms(None if ta is None else matmul(ta, b),
                         None if tb is None else matmul(a, tb))


def _transposed(t):
    """Whether a 2-D tensor's array is the transpose of a contiguous one."""
    flags = raw(t).flags
    return t.ndim == 2 and flags.f_contiguous and not flags.c_contiguous


def matmul(a, b):
    """Matrix product with NumPy's rules for 1-D and batched operands; under autocast in
    its low dtype, accumulating in float32."""
    if _autocast.active:
        a, b = to_low(a, b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError("matmul: operands must have at least one dimension, got shapes "
                         f"{shape_str(a.shape)} and {shape_str(b.shape)}")
    da, db = raw(a).dtype, raw(b).dtype
    if da != db:
        raise TypeError(f"matmul: expected both operands to have the same dtype, but got: "
                        f"{da} != {db} (convert one with .to(dtype); gpugrad, like PyTorch, "
                        "does not promote matrix products)")
    ka = a.shape[-1]
    kb = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if ka != kb:
        raise ValueError(f"matmul: shapes {shape_str(a.shape)} and {shape_str(b.shape)} "
                         f"do not match: {ka} != {kb} in the contracted dimension")
    return apply(MatMul, (a, b))


# -- the nuclear norm ------------------------------------------------------------------------------
# Its derivative is the polar factor Q = U V^T of the thin SVD X = U S V^T; the derivative of Q
# (a linear map of the perturbation, self-adjoint: the nuclear norm's Hessian) is one more
# primitive. Each is smooth where X has full rank, as the nuclear norm is.
def _svd_cost(self, in_shapes, out_shape, p):
    shape = in_shapes[-1]
    m, n = shape[-2], shape[-1]
    batch = prod(shape[:-2])
    return 4 * batch * m * n * min(m, n), sum(prod(s) for s in in_shapes) + prod(out_shape)


def _swap(a, xp):
    return xp.swapaxes(a, -1, -2)


@primitive
class NuclearNorm(Op):
    """out = the sum of the singular values of x over its last two axes"""
    name = "nuclear_norm"
    save_inputs = True
    cost = _svd_cost

    def forward(self, dev, p, x, out=None):
        value = dev.xp.linalg.svd(x, compute_uv=False).sum(axis=-1)
        if out is None:
            return value
        out[...] = value
        return out

    def vjp(self, g, ins, out, p, needs):
        g = reshape(g, tuple(g.shape) + (1, 1))
        return (g * apply(Polar, (ins[0],)),)

    def jvp(self, ts, ins, out, p):
        products = ts[0] * apply(Polar, (ins[0],))
        return reshape(sum_to(products, tuple(out.shape) + (1, 1)), tuple(out.shape))


@primitive
class Polar(Op):
    """out = U V^T for the thin SVD x = U S V^T (the nuclear norm's gradient)"""
    name = "polar"
    save_inputs = True
    cost = _svd_cost

    def forward(self, dev, p, x, out=None):
        u, _, vh = dev.xp.linalg.svd(x, full_matrices=False)
        return dev.xp.matmul(u, vh, out=out)

    def vjp(self, g, ins, out, p, needs):
        return (apply(PolarDerivative, (g, ins[0])),)

    def jvp(self, ts, ins, out, p):
        return apply(PolarDerivative, (ts[0], ins[0]))


_THIRD = ("the third derivative of the nuclear norm (the derivative of its polar factor's "
          "derivative with respect to the matrix) is not implemented")


@primitive
class PolarDerivative(Op):
    """out = dQ, the derivative of the polar factor Q = U V^T of x in the direction t:
    U (K o (A - A^T)) V^T + (I - U U^T) t V S^-1 V^T + U S^-1 U^T t (I - V V^T), with
    A = U^T t V and K_ij = 1 / (s_i + s_j). Linear in t and self-adjoint."""
    name = "polar_derivative"
    save_inputs = True
    cost = _svd_cost

    def forward(self, dev, p, t, x, out=None):
        xp = dev.xp
        u, s, vh = xp.linalg.svd(x, full_matrices=False)
        v, ut = _swap(vh, xp), _swap(u, xp)
        a = ut @ t @ v
        k = 1.0 / (s[..., :, None] + s[..., None, :])
        value = u @ (k * (a - _swap(a, xp))) @ vh
        m, n = x.shape[-2], x.shape[-1]
        if m > n:
            value += (t - u @ (ut @ t)) @ (v / s[..., None, :]) @ vh
        elif n > m:
            value += (u / s[..., None, :]) @ ut @ (t - (t @ v) @ vh)
        value = value.astype(x.dtype, copy=False)
        if out is None:
            return value
        out[...] = value
        return out

    def vjp(self, g, ins, out, p, needs):
        if needs[1]:
            raise NotImplementedError(_THIRD)
        return apply(self, (g, ins[1])), None

    def jvp(self, ts, ins, out, p):
        if ts[1] is not None:
            raise NotImplementedError(_THIRD)
        return None if ts[0] is None else apply(self, (ts[0], ins[1]))


def nuclear_norm(x, dim=(-2, -1), keepdim=False):
    """The sum of the singular values of the matrices of x over the two dims ``dim``."""
    if x.dtype.kind not in "fc":
        raise TypeError(f"nuclear norm: expected a floating tensor, got dtype {x.dtype}")
    if len(dim) != 2:
        raise ValueError(f"nuclear norm: dim must be a 2-tuple, got {dim}")
    d0, d1 = (int(d) % x.ndim if -x.ndim <= int(d) < x.ndim else None for d in dim)
    if d0 is None or d1 is None or x.ndim < 2:
        raise IndexError(f"nuclear norm: dim {tuple(dim)} is out of range for a tensor of "
                         f"{x.ndim} dimension(s)")
    if d0 == d1:
        raise ValueError(f"nuclear norm: dims must be different, got {tuple(dim)}")
    rest = [i for i in range(x.ndim) if i not in (d0, d1)]
    if (d0, d1) != (x.ndim - 2, x.ndim - 1):
        x = permute(x, tuple(rest) + (d0, d1))
    if 0 in x.shape[-2:]:
        raise ValueError(f"nuclear norm: the matrices of shape {shape_str(x.shape[-2:])} are "
                         "empty")
    out = apply(NuclearNorm, (x,))
    if keepdim:
        shape = list(out.shape)
        for d in sorted((d0, d1)):
            shape.insert(d, 1)
        out = reshape(out, tuple(shape))
    return out
