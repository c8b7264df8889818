"""Matrix products (cuBLAS through CuPy on the GPU, BLAS through NumPy on the CPU)."""
from __future__ import annotations

from .. import _autocast
from .._autograd.graph import Op, apply, primitive
from ._amp import to_low
from ._common import add_terms, prod, raw, shape_str
from .shape import reshape, sum_to, swap_last


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
