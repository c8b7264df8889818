"""The CUDA kernel table of a CuPy device.

Each entry has the signature and semantics of its NumPy twin in ``reference.py``. The
``.cu`` sources are read as text (their shared header inlined, so that CuPy's on-disk
cache key covers it) and compiled once per process with ``cupy.RawModule``. Storage
types other than float32, float16 and bfloat16, and non-contiguous operands where a kernel needs
contiguous ones, run the twin, which is written against CuPy as well as NumPy.
"""
from __future__ import annotations

import functools
import os

import numpy as np

from .. import _dtypes
from . import cublas, reference

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
SOURCES = ("elementwise", "softmax", "reduce", "optim", "random", "norm")
THREADS = 256
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float16): "f16"}
if _dtypes.bfloat16 is not None:
    _SUFFIX[_dtypes.bfloat16] = "bf16"
# dtype characters of float16 and bfloat16 (ml_dtypes), the operands of lowp_matmul
_LOW_CHARS = "eE"


def read_source(name):
    """A kernel file's text with ``common.cuh`` inlined."""
    with open(os.path.join(KERNEL_DIR, f"{name}.cu")) as fh:
        code = fh.read()
    with open(os.path.join(KERNEL_DIR, "common.cuh")) as fh:
        header = fh.read().replace("#pragma once", "")
    return code.replace('#include "common.cuh"', header)


def _address(a):
    if isinstance(a, np.ndarray):      # NumPy (the shim): a.data is a memoryview, which
        return a.ctypes.data           # cannot describe bfloat16
    return a.data.ptr


def _aligned(*arrays):
    return all(_address(a) % 16 == 0 for a in arrays)


def _floats(params):
    """An activation row's parameters as the trailing float arguments of its kernels."""
    return tuple(np.float32(v) for v in params)


def _row_launch(rows, cols):
    """(variant, grid, block) of a row-wise kernel (softmax.cu, norm.cu): a warp per row
    holding it in registers up to 1024 columns, a block per row beyond."""
    if cols <= 1024:
        per_lane = next(k for k in (1, 4, 16, 32) if 32 * k >= cols)
        return f"w{per_lane}", (max(1, -(-rows // (THREADS // 32))),), (THREADS,)
    return "block", (max(1, rows),), (512,)


class _NoContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


class CudaKernels:
    """Launchers for the kernels of ``kernels/*.cu``.

    ``xp`` is the array module of the operands and ``load(source)`` gives a module
    with ``get_function(name)``: CuPy and cupy.RawModule on a GPU, or NumPy and the CPU
    shim's modules in tests without one. ``max_blocks`` caps grid-stride launches.
    ``gemm_ex(args, a, b, out)``, given by the CUDA device, runs cuBLAS's GemmEx with
    float32 accumulation (``_cuda.gemm_ex``); without it low-precision products run the
    twin.
    """

    def __init__(self, xp, load, max_blocks, context=None, gemm_ex=None):
        self.xp = xp
        self._gemm_ex = gemm_ex
        self._load = load
        self.max_blocks = max_blocks
        self._context = context or _NoContext
        self._functions = {}
        with self._context():
            self._dummy_labels = xp.zeros(1, dtype=np.int64)
            self._dummy_scale = xp.ones(1, dtype=np.float32)
            self._dummy_rows = xp.zeros(1, dtype=np.float32)

    # -- compilation ----------------------------------------------------------------------
    def function(self, source, name):
        fn = self._functions.get(name)
        if fn is None:
            with self._context():
                fn = self._load(source).get_function(name)
            self._functions[name] = fn
        return fn

    def compiled_names(self):
        return sorted(self._functions)

    def _grid(self, work):
        return (max(1, min(self.max_blocks, -(-work // THREADS))),)

    # -- matrix products ------------------------------------------------------------------
    def matmul(self, a, b, out=None):
        """a @ b; two float16 or two bfloat16 operands go to ``lowp_matmul``."""
        if a.itemsize == 2 and a.dtype.char in _LOW_CHARS and b.dtype == a.dtype:
            return self.lowp_matmul(a, b, out=out)
        return self.xp.matmul(a, b, out=out)

    def lowp_matmul(self, a, b, out=None):
        """a @ b for two float16 or two bfloat16 arrays, accumulating in float32 and rounding
        once (the twin's numerics): cuBLAS's GemmEx with compute type 32F for 2-D operands,
        each row- or column-major (a transposed weight is column-major); the twin
        otherwise."""
        if (self._gemm_ex is None or a.ndim != 2 or b.ndim != 2 or a.dtype != b.dtype
                or 0 in a.shape or 0 in b.shape or a.shape[1] != b.shape[0]
                or (out is not None and not out.flags.c_contiguous)):
            return reference.lowp_matmul(a, b, out=out)
        if out is None:
            out = self.xp.empty((a.shape[0], b.shape[1]), dtype=a.dtype)
        try:
            args = cublas.gemm_arguments(a.shape, a.strides, b.shape, b.strides, out.shape,
                                         out.strides, a.itemsize)
        except ValueError:             # an operand neither row- nor column-major
            return reference.lowp_matmul(a, b, out=out)
        self._gemm_ex(args, a, b, out)
        return out

    # -- elementwise ----------------------------------------------------------------------
    def __getattr__(self, name):
        """``<act>_fwd`` and ``<act>_bwd`` for every activation that has twins."""
        act, _, direction = name.rpartition("_")
        if direction in ("fwd", "bwd") and hasattr(reference, name) and \
                not name.startswith(("softmax", "log_softmax", "bias")):
            launcher = self.activation_fwd if direction == "fwd" else self.activation_bwd
            return functools.partial(launcher, act)
        raise AttributeError(name)

    def activation_fwd(self, act, x, *params, out=None):
        """``<act>_fwd`` of elementwise.cu for an activation of the table; a row's parameter
        (leaky_relu's slope, elu's alpha) follows as a trailing float."""
        sfx = _SUFFIX.get(x.dtype)
        if sfx is None or not x.flags.c_contiguous:
            return reference.activation_fwd(act, x, *params, out=out)
        if out is None:
            out = self.xp.empty_like(x)
        vec = _aligned(x, out)
        n = x.size
        work = n // (16 // x.itemsize) if vec else n
        self.function("elementwise", f"{act}_fwd_{sfx}")(
            self._grid(work), (THREADS,),
            (x, out, np.int64(n), np.int32(vec)) + _floats(params))
        return out

    def activation_bwd(self, act, g, saved, *params, out=None):
        """``<act>_bwd``: g times the derivative, from what the activation saved."""
        sfx = _SUFFIX.get(g.dtype)
        if sfx is None or g.dtype != saved.dtype or g.shape != saved.shape:
            return reference.activation_bwd(act, g, saved, *params, out=out)
        g = self.xp.ascontiguousarray(g)
        saved = self.xp.ascontiguousarray(saved)
        if out is None:
            out = self.xp.empty_like(g)
        vec = _aligned(g, saved, out)
        n = g.size
        work = n // (16 // g.itemsize) if vec else n
        self.function("elementwise", f"{act}_bwd_{sfx}")(
            self._grid(work), (THREADS,),
            (g, saved, out, np.int64(n), np.int32(vec)) + _floats(params))
        return out

    def bias_act_fwd(self, x, b, act, *params, out=None):
        sfx = _SUFFIX.get(x.dtype)
        if (sfx is None or b.dtype != x.dtype or b.ndim != 1 or x.ndim < 1
                or x.shape[-1] != b.shape[0] or not x.flags.c_contiguous):
            return reference.bias_act_fwd(x, b, act, *params, out=out)
        b = self.xp.ascontiguousarray(b)
        if out is None:
            out = self.xp.empty_like(x)
        cols = b.shape[0]
        per_pack = 16 // x.itemsize
        vec = _aligned(x, b, out) and cols % per_pack == 0
        n = x.size
        work = n // per_pack if vec else n
        self.function("elementwise", f"bias_{act}_fwd_{sfx}")(
            self._grid(work), (THREADS,),
            (x, b, out, np.int64(n), np.int32(cols), np.int32(vec)) + _floats(params))
        return out

    # -- column sums ----------------------------------------------------------------------
    def bias_grad(self, g, out=None):
        sfx = _SUFFIX.get(g.dtype)
        if sfx is None or g.ndim != 2:
            return reference.bias_grad(g, out=out)
        cp = self.xp
        g = cp.ascontiguousarray(g)
        rows, cols = g.shape
        if out is None:
            out = cp.empty(cols, dtype=g.dtype)
        col_blocks = -(-cols // 32)
        chunks = max(1, min(-(-rows // 64), self.max_blocks // 4 // col_blocks))
        rows_per_chunk = -(-rows // chunks)
        chunks = -(-rows // rows_per_chunk) if rows else 1
        partial = cp.empty((chunks, cols), dtype=np.float32)
        self.function("reduce", f"bias_grad_partial_{sfx}")(
            (col_blocks, chunks), (32, 8),
            (g, partial, np.int32(rows), np.int32(cols), np.int32(rows_per_chunk)))
        self.function("reduce", f"bias_grad_finish_{sfx}")(
            (-(-cols // THREADS),), (THREADS,), (partial, out, np.int32(chunks), np.int32(cols)))
        return out

    # -- softmax family over the last axis ---------------------------------------------------
    def _rows(self, mode, a, b=None, labels=None, gscale=None, scale=1.0, row_out=None,
              out=None):
        cp = self.xp
        sfx = _SUFFIX[a.dtype]
        cols = a.shape[-1]
        rows = a.size // cols if cols else 0
        a = cp.ascontiguousarray(a)
        b = a if b is None else cp.ascontiguousarray(b)
        if out is None:
            out = cp.empty_like(a)
        variant, grid, block = _row_launch(rows, cols)
        self.function("softmax", f"{mode}_{variant}_{sfx}")(
            grid, block,
            (a, b, self._dummy_labels if labels is None else labels,
             self._dummy_scale if gscale is None else gscale, out,
             self._dummy_rows if row_out is None else row_out,
             np.int32(rows), np.int32(cols), np.float32(scale)))
        return out

    def _row_ok(self, *arrays):
        first = arrays[0]
        return (first.dtype in _SUFFIX and first.ndim >= 1 and first.size > 0
                and all(x.dtype == first.dtype and x.shape == first.shape for x in arrays))

    def softmax_fwd(self, x, out=None):
        if not self._row_ok(x):
            return reference.softmax_fwd(x, out=out)
        return self._rows("softmax_fwd", x, out=out)

    def log_softmax_fwd(self, x, out=None):
        if not self._row_ok(x):
            return reference.log_softmax_fwd(x, out=out)
        return self._rows("log_softmax_fwd", x, out=out)

    def softmax_bwd(self, g, y, out=None):
        if not self._row_ok(g, y):
            return reference.softmax_bwd(g, y, out=out)
        return self._rows("softmax_bwd", g, y, out=out)

    def log_softmax_bwd(self, g, y, out=None):
        if not self._row_ok(g, y):
            return reference.log_softmax_bwd(g, y, out=out)
        return self._rows("log_softmax_bwd", g, y, out=out)

    def softmax_xent_fwd(self, logits, labels, mean, out=None):
        if not self._row_ok(logits) or logits.ndim != 2:
            return reference.softmax_xent_fwd(logits, labels, mean, out=out)
        cp = self.xp
        labels = cp.ascontiguousarray(labels, dtype=np.int64)
        rows, cols = logits.shape
        per_row = cp.empty(rows, dtype=np.float32)
        self._rows("softmax_xent_fwd", logits, labels=labels, row_out=per_row,
                   out=self._dummy_out(logits))
        if out is None:
            out = cp.empty((), dtype=logits.dtype)
        # the per-row losses summed (and the rows in range counted) by one block, in a
        # fixed order
        self.function("softmax", f"xent_sum_{_SUFFIX[logits.dtype]}")(
            (1,), (1024,), (per_row, labels, out, np.int32(rows), np.int32(cols),
                            np.int32(bool(mean))))
        return out

    def _dummy_out(self, like):
        # the forward cross-entropy writes no (rows, cols) output; a one-element array
        # of the right type stands in for the pointer
        return self.xp.empty(1, dtype=like.dtype)

    def softmax_xent_bwd(self, logits, labels, g, mean, out=None):
        if not self._row_ok(logits) or logits.ndim != 2:
            return reference.softmax_xent_bwd(logits, labels, g, mean, out=out)
        cp = self.xp
        labels = cp.ascontiguousarray(labels, dtype=np.int64)
        rows, cols = logits.shape
        if mean:
            # g over the number of rows in range, counted on the device: no host sync
            g = cp.ascontiguousarray(g, dtype=logits.dtype).reshape(1)
            gscale = cp.empty(1, dtype=np.float32)
            self.function("softmax", f"xent_grad_scale_{_SUFFIX[logits.dtype]}")(
                (1,), (1024,), (g, labels, gscale, np.int32(rows), np.int32(cols),
                                np.int32(1)))
        else:
            gscale = cp.asarray(g, dtype=np.float32).reshape(1)
        return self._rows("softmax_xent_bwd", logits, labels=labels, gscale=gscale, out=out)

    # -- layer normalisation over the last axis (norm.cu) ------------------------------------
    def _norm(self, mode, a, x, w, b, eps, out):
        cp = self.xp
        sfx = _SUFFIX[a.dtype]
        rows, cols = a.shape
        a = cp.ascontiguousarray(a)
        x = cp.ascontiguousarray(x)
        w_arg = a if w is None else cp.ascontiguousarray(w)   # a stands in for a null pointer
        b_arg = a if b is None else cp.ascontiguousarray(b)
        if out is None:
            out = cp.empty_like(a)
        variant, grid, block = _row_launch(rows, cols)
        self.function("norm", f"{mode}_{variant}_{sfx}")(
            grid, block,
            (a, x, w_arg, b_arg, out, np.int32(rows), np.int32(cols), np.float32(eps),
             np.int32(w is not None), np.int32(b is not None)))
        return out

    def _norm_ok(self, first, *others):
        return (first.dtype in _SUFFIX and first.ndim == 2 and first.size > 0
                and all(o is None or o.dtype == first.dtype for o in others))

    def layer_norm_fwd(self, x, w, b, eps, out=None):
        if not self._norm_ok(x, w, b):
            return reference.layer_norm_fwd(x, w, b, eps, out=out)
        return self._norm("layer_norm_fwd", x, x, w, b, eps, out)

    def layer_norm_bwd(self, g, x, w, eps, out=None):
        if not self._norm_ok(g, x, w) or g.shape != x.shape:
            return reference.layer_norm_bwd(g, x, w, eps, out=out)
        return self._norm("layer_norm_bwd", g, x, w, None, eps, out)

    # -- optimizer updates -------------------------------------------------------------------
    def _update_ok(self, param, *others):
        return (param.dtype in _SUFFIX and param.flags.c_contiguous
                and all(o is None or (o.dtype == param.dtype and o.flags.c_contiguous)
                        for o in others))

    def fused_update_ok(self, param, *others):
        """Whether the update kernels take these arrays (else the launchers run the twin):
        gg.compile captures only updates that run as kernels."""
        return self._update_ok(param, *others) and all(
            o is None or o.shape == param.shape for o in others)

    def sgd_update(self, param, grad, buf, lr, momentum, dampening, weight_decay, nesterov,
                   first, maximize=False):
        grad = self.xp.ascontiguousarray(grad, dtype=param.dtype)
        if not self._update_ok(param, buf):
            return reference.sgd_update(param, grad, buf, lr, momentum, dampening,
                                        weight_decay, nesterov, first, maximize)
        n = param.size
        self.function("optim", f"sgd_update_{_SUFFIX[param.dtype]}")(
            self._grid(n), (THREADS,),
            (param, grad, param if buf is None else buf, np.int64(n), np.float32(lr),
             np.float32(momentum), np.float32(dampening), np.float32(weight_decay),
             np.int32(bool(nesterov)), np.int32(bool(first)), np.int32(bool(maximize))))

    def sgd_update_dev(self, param, grad, buf, scalars, nesterov, first, maximize=False):
        """``sgd_update`` with lr, momentum, dampening and weight_decay read from
        ``scalars`` (four float64 on the device) when the kernel runs: the form a captured
        graph launches."""
        grad = self.xp.ascontiguousarray(grad, dtype=param.dtype)
        if not self._update_ok(param, buf):
            return reference.sgd_update_dev(param, grad, buf, scalars, nesterov, first,
                                            maximize)
        n = param.size
        self.function("optim", f"sgd_update_dev_{_SUFFIX[param.dtype]}")(
            self._grid(n), (THREADS,),
            (param, grad, param if buf is None else buf, np.int64(n), _doubles(scalars, 4),
             np.int32(bool(nesterov)), np.int32(bool(first)), np.int32(bool(maximize))))

    def adam_update(self, param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step,
                    decoupled, vmax=None, maximize=False):
        grad = self.xp.ascontiguousarray(grad, dtype=param.dtype)
        if not self._update_ok(param, m, v, vmax):
            return reference.adam_update(param, grad, m, v, lr, beta1, beta2, eps,
                                         weight_decay, step, decoupled, vmax, maximize)
        n = param.size
        step_size, inv_sqrt_bias2 = reference.adam_bias_terms(lr, beta1, beta2, step)
        self.function("optim", f"adam_update_{_SUFFIX[param.dtype]}")(
            self._grid(n), (THREADS,),
            (param, grad, m, v, param if vmax is None else vmax, np.int64(n), np.float32(lr),
             np.float32(beta1), np.float32(beta2), np.float32(eps), np.float32(weight_decay),
             np.float32(step_size), np.float32(inv_sqrt_bias2), np.int32(bool(decoupled)),
             np.int32(vmax is not None), np.int32(bool(maximize))))

    def adam_update_dev(self, param, grad, m, v, vmax, scalars, decoupled, maximize=False):
        """``adam_update`` with lr, beta1, beta2, eps, weight_decay, step_size and
        inv_sqrt_bias2 (``reference.adam_scalars``) read from ``scalars`` (seven float64 on
        the device) when the kernel runs: the form a captured graph launches."""
        grad = self.xp.ascontiguousarray(grad, dtype=param.dtype)
        if not self._update_ok(param, m, v, vmax):
            return reference.adam_update_dev(param, grad, m, v, vmax, scalars, decoupled,
                                             maximize)
        n = param.size
        self.function("optim", f"adam_update_dev_{_SUFFIX[param.dtype]}")(
            self._grid(n), (THREADS,),
            (param, grad, m, v, param if vmax is None else vmax, np.int64(n),
             _doubles(scalars, 7), np.int32(bool(decoupled)), np.int32(vmax is not None),
             np.int32(bool(maximize))))

    # -- random numbers (random.cu) -------------------------------------------------------------
    def dropout(self, x, seed, offset, p, scale, out=None):
        """x * scale where the Philox draw of (seed, offset, element) is kept, else 0."""
        sfx = _SUFFIX.get(x.dtype)
        if sfx is None or not x.flags.c_contiguous:
            return reference.dropout(x, seed, offset, p, scale, out=out)
        if out is None:
            out = self.xp.empty_like(x)
        n = x.size
        self.function("random", f"dropout_{sfx}")(
            self._grid(-(-n // 4)), (THREADS,),
            (x, out, np.int64(n), _signed64(seed), _signed64(offset), np.float32(p),
             np.float32(scale)))
        return out

    def dropout_state(self, x, state, delta, p, scale, out):
        """As ``dropout``, with the seed and base offset read from ``state`` (two int64 on
        the device, [seed, offset]) plus ``delta``: the form a captured graph runs, so
        that each replay draws new masks once ``philox_advance`` has moved the offset."""
        sfx = _SUFFIX[x.dtype]
        n = x.size
        self.function("random", f"dropout_state_{sfx}")(
            self._grid(-(-n // 4)), (THREADS,),
            (x, out, np.int64(n), state, np.int64(delta), np.float32(p), np.float32(scale)))
        return out

    def philox_advance(self, state, count):
        """state[1] += count on the device."""
        self.function("random", "philox_advance")((1,), (1,), (state, np.int64(count)))


def _doubles(scalars, count):
    if scalars.dtype != np.float64 or scalars.shape != (count,) or not scalars.flags.c_contiguous:
        raise ValueError(f"an update's device scalars must be {count} contiguous float64, got "
                         f"shape {tuple(scalars.shape)} {scalars.dtype}")
    return scalars


def _signed64(value):
    """A 64-bit counter or key as the int64 of the same bits (how the kernel receives it)."""
    return np.uint64(value % 2**64).view(np.int64)
