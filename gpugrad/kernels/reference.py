"""NumPy twins of the CUDA kernels in ``kernels/*.cu``.

Each function has the signature and the semantics of its CUDA entry point and is the
reference the GPU kernels are tested against. They are written against the array
module of their arguments, so the CPU device runs them on NumPy; with ``out=`` they
write into a caller-given buffer.
"""
from __future__ import annotations

import math

import numpy as np

from . import host_blas

GELU_K = math.sqrt(2.0 / math.pi)
GELU_C = 0.044715
SQRT1_2 = math.sqrt(0.5)
INV_SQRT_2PI = 1 / math.sqrt(2 * math.pi)

# array type -> (array module, its elementwise erf). The CUDA device registers CuPy's when it
# starts, so that this module never imports CuPy.
_np_erf = np.frompyfunc(math.erf, 1, 1)


def _numpy_erf(a):
    """NumPy has no erf: math.erf per element, exact to float64."""
    a = np.asarray(a)
    values = np.asarray(_np_erf(a), dtype=np.float64)   # a 0-d input gives a plain float
    return values.astype(a.dtype if a.dtype.kind == "f" else np.float64, copy=False)


_MODULES = {np.ndarray: (np, _numpy_erf)}


class _ModuleOf(dict):
    """array class -> its array module; NumPy for any class not registered (NumPy scalars).
    The twins index it with ``x.__class__``: a lookup, not a call, on every twin call."""

    def __missing__(self, cls):
        return np


_xp = _ModuleOf({np.ndarray: np})


def register_array_module(array_type, module, erf):
    _MODULES[array_type] = (module, erf)
    _xp[array_type] = module


def array_module(a):
    """NumPy for NumPy arrays and scalars, else the module registered for ``type(a)``."""
    entry = _MODULES.get(type(a))
    return np if entry is None else entry[0]


def erf(a):
    entry = _MODULES.get(type(a))
    return (_numpy_erf if entry is None else entry[1])(a)




def _result(value, out):
    if out is None:
        return value
    out[...] = value
    return out


# -- matrix products -------------------------------------------------------------------------
# dtype characters of float16 and bfloat16 (ml_dtypes)
_LOW_CHARS = "eE"


def matmul(a, b, out=None):
    """out = a @ b; two float16 or two bfloat16 operands accumulate in float32"""
    # the item size first: the one test a float32 product pays
    if a.itemsize == 2 and a.dtype.char in _LOW_CHARS and b.dtype == a.dtype:
        return lowp_matmul(a, b, out=out)
    return _xp[a.__class__].matmul(a, b, out=out)


def _numpy_matmul(a, b, out=None):
    """matmul on NumPy arrays"""
    if a.itemsize == 2 and a.dtype.char in _LOW_CHARS and b.dtype == a.dtype:
        return lowp_matmul(a, b, out=out)
    return np.matmul(a, b, out=out)


def lowp_matmul(a, b, out=None):
    """out = a @ b for two float16 or two bfloat16 operands: the products summed in
    float32 and the result rounded once to the operands' dtype, the rounding points of a
    cuBLAS GEMM with compute type 32F (NumPy has no fast low-precision GEMM)"""
    value = _xp[a.__class__].matmul(a.astype(np.float32), b.astype(np.float32))
    return _result(value.astype(a.dtype), out)


# -- activations: forward and backward -----------------------------------------------------
def relu_fwd(x, out=None):
    """out = max(x, 0)"""
    return _xp[x.__class__].maximum(x, 0, out=out)


def relu_bwd(g, y, out=None):
    """out = g where y > 0 else 0 (y is relu's output)"""
    return _xp[g.__class__].multiply(g, y > 0, out=out)


def tanh_fwd(x, out=None):
    return _xp[x.__class__].tanh(x, out=out)


# the twins as the CPU device runs them: on NumPy arrays alone, without asking which module
NUMPY_FORMS = {"tanh_fwd": np.tanh, "matmul": _numpy_matmul}


def tanh_bwd(g, y, out=None):
    """out = g * (1 - y^2) (y is tanh's output), as g - (g y) y: three array operations and
    no Python scalar, which NumPy handles at twice an array's cost"""
    gy = g * y
    gy *= y
    return _xp[g.__class__].subtract(g, gy, out=out)


def sigmoid_fwd(x, out=None):
    """out = 1 / (1 + e^-x), computed without overflow for large |x|"""
    xp = _xp[x.__class__]
    e = xp.exp(-xp.abs(x))
    value = xp.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)
    return _result(value, out)


def sigmoid_bwd(g, y, out=None):
    """out = g * y * (1 - y) (y is sigmoid's output), as g y - (g y) y"""
    gy = g * y
    return _xp[g.__class__].subtract(gy, gy * y, out=out)


def gelu_tanh_fwd(x, out=None):
    """out = x/2 (1 + tanh(k (x + c x^3))), GELU in its tanh form"""
    xp = _xp[x.__class__]
    u = GELU_K * (x + GELU_C * x * x * x)
    return _result((0.5 * x * (1 + xp.tanh(u))).astype(x.dtype, copy=False), out)


def gelu_tanh_bwd(g, x, out=None):
    """out = g * d/dx gelu_tanh(x)"""
    xp = _xp[x.__class__]
    t = xp.tanh(GELU_K * (x + GELU_C * x * x * x))
    du = GELU_K * (1 + 3 * GELU_C * x * x)
    value = g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du)
    return _result(value.astype(g.dtype, copy=False), out)


def gelu_fwd(x, out=None):
    """out = x/2 (1 + erf(x / sqrt 2)), the exact GELU"""
    return _result((0.5 * x * (1 + erf(x * SQRT1_2))).astype(x.dtype, copy=False), out)


def gelu_bwd(g, x, out=None):
    """out = g * (Phi(x) + x phi(x)), the exact GELU's derivative"""
    xp = _xp[x.__class__]
    value = g * (0.5 * (1 + erf(x * SQRT1_2)) + x * INV_SQRT_2PI * xp.exp(-0.5 * x * x))
    return _result(value.astype(g.dtype, copy=False), out)


# rows added with the nn.functional set; a row's parameter follows its array arguments
def silu_fwd(x, out=None):
    """out = x * sigmoid(x)"""
    return _result((x * sigmoid_fwd(x)).astype(x.dtype, copy=False), out)


def silu_bwd(g, x, out=None):
    """out = g * s (1 + x (1 - s)), s = sigmoid(x)"""
    s = sigmoid_fwd(x)
    return _result((g * s * (1 + x * (1 - s))).astype(g.dtype, copy=False), out)


def leaky_relu_fwd(x, negative_slope, out=None):
    """out = x where x > 0 else negative_slope * x"""
    return _result(_xp[x.__class__].where(x > 0, x, x * x.dtype.type(negative_slope)), out)


def leaky_relu_bwd(g, x, negative_slope, out=None):
    """out = g where x > 0 else negative_slope * g (x is the input, as PyTorch)"""
    return _result(_xp[g.__class__].where(x > 0, g, g * g.dtype.type(negative_slope)), out)


def elu_fwd(x, alpha, out=None):
    """out = x where x > 0 else alpha (e^x - 1)"""
    xp = _xp[x.__class__]
    return _result(xp.where(x > 0, x, x.dtype.type(alpha) * xp.expm1(x)), out)


def elu_bwd(g, x, alpha, out=None):
    """out = g where x > 0 else g alpha e^x (x is the input)"""
    xp = _xp[g.__class__]
    return _result(xp.where(x > 0, g, g * g.dtype.type(alpha) * xp.exp(x)), out)


def bias_act_fwd(x, b, act, *params, out=None):
    """out = act(x + b), b broadcast over the rows of x; act 'none' or a row of the
    activation table, followed by the row's parameter if it has one"""
    z = _xp[x.__class__].add(x, b, out=out)
    if act == "none":
        return z
    return _activation_twin(act, "fwd")(z, *params, out=z)     # in place: z is ours


# (activation, "fwd" or "bwd") -> its twin, found by name once
_activation_twins: dict = {}


def _activation_twin(act, direction):
    fn = _activation_twins.get((act, direction))
    if fn is None:
        fn = _activation_twins[act, direction] = globals()[f"{act}_{direction}"]
    return fn


def activation_fwd(act, x, *params, out=None):
    """The forward twin of an activation of the table, ``<act>_fwd``."""
    return _activation_twin(act, "fwd")(x, *params, out=out)


def activation_bwd(act, g, saved, *params, out=None):
    """The backward twin of an activation of the table, ``<act>_bwd``."""
    return _activation_twin(act, "bwd")(g, saved, *params, out=out)


# (rows, dtype character) -> a read-only vector of that many ones: bias_grad's GEMV operand
_ONES: dict = {}


def bias_grad(g, out=None):
    """out[j] = sum_i g[i, j], the gradient of a bias added to every row. On the host in
    float32 or float64 a GEMV with a vector of ones, which BLAS runs over whole columns at
    once: NumPy's sum over axis 0 of the medium MLP's (128, 512) float32 gradient takes
    about 11 us, the GEMV 4, and sums as accurately (both add the rows in order, in blocks)."""
    if g.__class__ is np.ndarray and g.ndim == 2 and g.dtype.char in "fd":
        key = (g.shape[0], g.dtype.char)
        ones = _ONES.get(key)
        if ones is None:
            if len(_ONES) > 64:        # many batch sizes: keep the cache small
                _ONES.clear()
            ones = _ONES[key] = np.ones(g.shape[0], g.dtype)
            ones.flags.writeable = False
        return np.matmul(ones, g, out=out)
    return g.sum(axis=0, out=out)


# -- softmax family over the last axis ------------------------------------------------------
def softmax_fwd(x, out=None):
    xp = _xp[x.__class__]
    e = xp.exp(x - x.max(axis=-1, keepdims=True))
    return _result(e / e.sum(axis=-1, keepdims=True), out)


def softmax_bwd(g, y, out=None):
    """out = y * (g - sum(g * y)) (y is softmax's output)"""
    return _result(y * (g - (g * y).sum(axis=-1, keepdims=True)), out)


def log_softmax_fwd(x, out=None):
    xp = _xp[x.__class__]
    shifted = x - x.max(axis=-1, keepdims=True)
    return _result(shifted - xp.log(xp.exp(shifted).sum(axis=-1, keepdims=True)), out)


def log_softmax_bwd(g, y, out=None):
    """out = g - e^y * sum(g) (y is log_softmax's output)"""
    xp = _xp[g.__class__]
    return _result(g - xp.exp(y) * g.sum(axis=-1, keepdims=True), out)


# a signed label read as unsigned: a negative one becomes huge, so one comparison with the
# class count tells the labels in [0, C)
_UNSIGNED = {np.dtype(t): np.dtype(u) for t, u in (
    (np.int8, np.uint8), (np.int16, np.uint16), (np.int32, np.uint32), (np.int64, np.uint64))}


def _as_unsigned(labels):
    unsigned = _UNSIGNED.get(labels.dtype)
    return labels if unsigned is None else labels.view(unsigned)


def labels_in_range(labels, classes):
    """Whether each label lies in [0, classes) (a mask of the labels' shape)."""
    return _as_unsigned(labels) < classes


def all_labels_in_range(labels, classes):
    """Whether every label of a host array lies in [0, classes): one reduction, no mask."""
    return not labels.size or np.maximum.reduce(_as_unsigned(labels), axis=None) < classes


def _rows_in_range(labels, classes, xp):
    """(in range or None when every row is, labels with the others replaced by 0): a row
    whose label lies outside [0, classes) is ignored (PyTorch's ignore_index). On the host
    the common case, every label a class, is told by one test and costs nothing more; a
    device keeps the mask (testing it there would be a host sync)."""
    labels = xp.asarray(labels)
    if xp is np and all_labels_in_range(labels, classes):
        return None, labels
    valid = labels_in_range(labels, classes)
    return valid, xp.where(valid, labels, 0)


def _row_max(x, xp):
    """x.max(axis=-1, keepdims=True) for (N, C) logits. On the host with few classes it
    runs over a transposed copy, as whole-column passes (128 x 10: 11 -> 2 us; NumPy's
    reduction along a short last axis pays per row); the maximum is exact, a zero's sign
    aside, which the cross-entropy twins subtract and exponentiate away."""
    if xp is np and x.ndim == 2 and x.shape[1] <= 32 and x.shape[0] >= 4 * x.shape[1]:
        return np.maximum.reduce(np.ascontiguousarray(x.T), axis=0)[:, None]
    return x.max(axis=-1, keepdims=True)


def softmax_xent_fwd(logits, labels, mean, out=None, exps=None, sums=None):
    """out = the sum over rows of logsumexp(logits[i]) - logits[i, labels[i]], divided (mean)
    by the number of rows whose label is in [0, C) (nan for none); a row whose label lies
    outside it counts 0. A 0-d array; no host sync on CuPy. Given ``exps`` (N, C) and
    ``sums`` (N, 1) (gg.compile's host replay), exp(logits - row max) and its row sums are
    left there for ``softmax_xent_bwd_kept``, which then computes what the backward twin
    would without computing them again."""
    xp = _xp[logits.__class__]
    valid, safe = _rows_in_range(labels, logits.shape[-1], xp)
    shifted = xp.subtract(logits, _row_max(logits, xp), out=exps)
    picked = shifted[xp.arange(shifted.shape[0]), safe]
    xp.exp(shifted, out=shifted)
    if sums is None:
        lse = xp.log(shifted.sum(axis=-1))
    else:
        lse = xp.log(xp.add.reduce(shifted, axis=-1, keepdims=True, out=sums).reshape(-1))
    lse -= picked
    if valid is None:
        total = lse.sum()
        count = lse.shape[0]
    else:
        total = xp.where(valid, lse, 0).sum()
        count = valid.sum()
    if mean:
        if xp is np:     # on the host: a plain test (0 / 0 is nan, as PyTorch, unwarned)
            total = total / count if count else np.nan
        else:            # on a device: no sync, and no warning is raised there
            total = total / count
    return _result(xp.asarray(total, dtype=logits.dtype), out)


def softmax_xent_bwd(logits, labels, g, mean, out=None):
    """out = (softmax(logits) - onehot(labels)) * g, divided (mean) by the number of rows whose
    label is in [0, C); g a 0-d array. A row whose label lies outside it gets 0."""
    xp = _xp[logits.__class__]
    valid, safe = _rows_in_range(labels, logits.shape[-1], xp)
    p = xp.subtract(logits, _row_max(logits, xp), out=out)
    xp.exp(p, out=p)
    p /= p.sum(axis=-1, keepdims=True)
    return _xent_grad_rest(p, valid, safe, g, mean, xp)


def softmax_xent_bwd_kept(sums, labels, g, mean, out):
    """``softmax_xent_bwd`` where ``out`` holds exp(logits - row max) and ``sums`` its row
    sums, as ``softmax_xent_fwd`` left them (``exps=out``): the same bits, the row maximum,
    the exponentials and the sums not computed twice (host arrays)."""
    valid, safe = _rows_in_range(labels, out.shape[-1], np)
    out /= sums
    return _xent_grad_rest(out, valid, safe, g, mean, np)


def _xent_grad_rest(p, valid, safe, g, mean, xp):
    """The backward twin after the softmax: the label's 1 subtracted, scaled, ignored rows
    zeroed."""
    p[xp.arange(p.shape[0]), safe] -= 1
    if valid is None:
        p *= g / p.dtype.type(p.shape[0]) if mean else g
        return p
    if mean:
        p *= g / xp.maximum(valid.sum(), 1).astype(p.dtype)
    else:
        p *= g
    xp.copyto(p, 0, where=~valid[:, None])
    return p


# -- optimizer updates, in place on the parameter and its state ------------------------------
# The CUDA kernels make one pass and no temporaries; the twins use at most one scratch
# array of the parameter's size, where NumPy cannot fuse the arithmetic, freed when the
# update ends (a scratch kept between steps would hold the largest parameter's size for
# good: bench/memory.py counts it).
# On the host a large parameter is updated in blocks where its update needs temporaries:
# they then stay in the cache instead of streaming a parameter-sized array through memory
# (the medium MLP's SGD step: 490 -> 340 us, the NumPy floor's time), the arithmetic of each
# element, hence its bits, unchanged. SGD without temporaries (plain, or momentum without
# Nesterov) is whole BLAS axpy calls instead (host_blas: 340 -> 280 us there).
UPDATE_BLOCK = 1 << 16


def _in_blocks(update, arrays, *rest):
    """Whether ``update(*arrays, *rest)`` ran over aligned flat blocks of the arrays (None
    entries passed as they are): where they are contiguous NumPy arrays of one shape
    (callers test the size first, so that a small update pays one comparison)."""
    first = arrays[0]
    if type(first) is not np.ndarray or not all(
            a is None or (type(a) is np.ndarray and a.shape == first.shape
                          and a.flags.c_contiguous) for a in arrays):
        return False
    flat = [None if a is None else a.reshape(-1) for a in arrays]
    for i in range(0, first.size, UPDATE_BLOCK):
        update(*[None if a is None else a[i:i + UPDATE_BLOCK] for a in flat], *rest)
    return True


# Python numbers: NumPy computes ``array * number`` in the array's dtype. A NumPy float64
# learning rate makes ``lr * d`` float64 (and ``param -= step`` round once, from float64):
# a float32 scratch would round the product first, so it is not used then.
_WEAK_SCALARS = (float, int)


def _scratch_for(scratch, like):
    """A buffer of ``like``'s shape and dtype from the flat ``scratch`` where it holds that
    many elements of that dtype (a temporary of the update otherwise)."""
    if scratch is None or scratch.dtype != like.dtype or scratch.size < like.size:
        return None
    return scratch[:like.size].reshape(like.shape)


def sgd_update(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first,
               maximize=False, scratch=None):
    """PyTorch's SGD step on one parameter; ``buf`` is the momentum buffer (None when
    momentum is 0), ``first`` whether this is its first step, ``maximize`` whether to
    ascend (the gradient negated). ``scratch`` (gg.compile's host replay), a flat array of
    at least ``update_scratch_size(param.size)`` elements of the parameter's dtype, holds
    a temporary instead of a new array: no allocation, and a buffer that stays in the
    cache. Host arrays that NumPy's BLAS takes get PyTorch's CPU bits (``_sgd_fused``)."""
    if not (momentum or weight_decay or maximize) and host_blas.axpy(-lr, grad, param):
        return          # the common case: one BLAS call
    large = param.size > 2 * UPDATE_BLOCK
    if not (large and (maximize or weight_decay or (momentum and nesterov))) and _sgd_fused(
            param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first,
            maximize, scratch):
        return
    if large and _in_blocks(sgd_update, (param, grad, buf), lr, momentum, dampening,
                            weight_decay, nesterov, first, maximize, scratch):
        return
    xp = _xp[param.__class__]
    d = -grad if maximize else grad
    if weight_decay:
        d = d + weight_decay * param
    if momentum:
        if first:
            xp.copyto(buf, d)
        else:
            buf *= momentum
            if dampening:
                buf += (1 - dampening) * d
            else:
                buf += d
        if nesterov:
            d = d + momentum * buf
        else:
            d = buf
    into = None if scratch is None or lr.__class__ not in _WEAK_SCALARS else \
        _scratch_for(scratch, d)
    step = xp.multiply(d, lr) if into is None else xp.multiply(d, lr, out=into)
    param -= step


def _sgd_fused(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first,
               maximize, scratch):
    """torch.optim.SGD's arithmetic with each of its ``y + a x`` (``add(..., alpha=)``) one
    BLAS axpy, rounded once as PyTorch's CPU kernels round it, and the update one pass over
    the parameter; a temporary (``scratch`` where it fits) only for a gradient that is
    negated, decayed or given Nesterov's term. False where NumPy's BLAS cannot take the
    arrays (nothing is changed then)."""
    fn = host_blas.fusable(param, grad, buf)
    if fn is None:
        return False
    axpy = host_blas.call
    d = grad
    if maximize or weight_decay or (momentum and nesterov):
        d = _scratch_for(scratch, grad)
        if d is None:
            d = np.empty_like(grad)
        if maximize:
            np.negative(grad, out=d)
        else:
            np.copyto(d, grad)
        if weight_decay:
            axpy(fn, weight_decay, param, d)
    if momentum:
        if first:
            np.copyto(buf, d)
        else:
            buf *= momentum
            if dampening:
                axpy(fn, 1 - dampening, d, buf)
            else:
                buf += d        # alpha = 1: the rounded sum either way
        if nesterov:
            axpy(fn, momentum, buf, d)     # d is the temporary here
        else:
            d = buf
    axpy(fn, -lr, d, param)
    return True


def update_scratch_size(size):
    """The elements of a ``scratch`` that an update of a parameter of ``size`` elements
    uses: one block where it runs in blocks, else the parameter's size."""
    return UPDATE_BLOCK if size > 2 * UPDATE_BLOCK else size


def sgd_update_host(param, grad, buf, scalars, nesterov, first, maximize=False, scratch=None):
    """``sgd_update_dev``'s arguments run as ``sgd_update`` with the scalars as they are
    (gg.compile's host replay of ``Optimizer._device_updates``): no float conversion, so
    that a learning rate held as a NumPy float64 computes as eager's ``step()`` does."""
    lr, momentum, dampening, weight_decay = scalars
    sgd_update(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first,
               maximize, scratch)


def sgd_update_dev(param, grad, buf, scalars, nesterov, first, maximize=False):
    """``sgd_update`` with lr, momentum, dampening and weight_decay from ``scalars``."""
    lr, momentum, dampening, weight_decay = (float(s) for s in scalars[:4])
    sgd_update(param, grad, buf, lr, momentum, dampening, weight_decay, nesterov, first,
               maximize)


def adam_bias_terms(lr, beta1, beta2, step):
    """(step_size, inv_sqrt_bias2) = (lr / (1 - beta1^t), 1 / sqrt(1 - beta2^t)): computed
    on the host in float64, here once for the kernels' launchers and gg.compile's feed, so
    that an eager and a captured step round the same numbers."""
    return lr / (1 - beta1 ** step), 1 / math.sqrt(1 - beta2 ** step)


def adam_scalars(lr, beta1, beta2, eps, weight_decay, step):
    """The seven scalars ``adam_update_dev`` reads, in its order."""
    return (lr, beta1, beta2, eps, weight_decay) + adam_bias_terms(lr, beta1, beta2, step)


def adam_update(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled,
                vmax=None, maximize=False):
    """PyTorch's Adam (``decoupled=False``, L2 weight decay) or AdamW step on one
    parameter, updating the moments ``m`` and ``v`` in place; with ``vmax`` (AMSGrad) the
    running maximum of ``v`` is kept there and divides instead of ``v``; ``maximize``
    ascends (the gradient negated)."""
    _adam(param, grad, m, v, vmax, (lr, beta1, beta2, eps, weight_decay)
          + adam_bias_terms(lr, beta1, beta2, step), decoupled, maximize)


def adam_update_dev(param, grad, m, v, vmax, scalars, decoupled, maximize=False):
    """``adam_update`` with the scalars of ``adam_scalars`` read from ``scalars``."""
    _adam(param, grad, m, v, vmax, [float(s) for s in scalars[:7]], decoupled, maximize)


def adam_update_host(param, grad, m, v, vmax, scalars, decoupled, maximize=False,
                     scratch=None):
    """``adam_update_dev``'s arguments with the scalars as ``adam_scalars`` gave them, as
    ``adam_update`` computes (gg.compile's host replay; ``scratch`` as ``sgd_update``'s)."""
    _adam(param, grad, m, v, vmax, scalars, decoupled, maximize, scratch)


def _adam(param, grad, m, v, vmax, scalars, decoupled, maximize, spare=None):
    if param.size > 2 * UPDATE_BLOCK and _in_blocks(
            _adam, (param, grad, m, v, vmax), scalars, decoupled, maximize, spare):
        return
    xp = _xp[param.__class__]
    lr, beta1, beta2, eps, weight_decay, step_size, inv_sqrt_bias2 = scalars
    if maximize:
        grad = -grad
    if weight_decay:
        if decoupled:
            param *= 1 - lr * weight_decay
        else:
            grad = grad + weight_decay * param
    # m = beta1 m + (1 - beta1) g, written as m = beta1 (m - g) + g: no temporary
    m -= grad
    m *= beta1
    m += grad
    into = None if spare is None else _scratch_for(spare, grad)
    scratch = xp.multiply(grad, grad) if into is None else xp.multiply(grad, grad, out=into)
    scratch *= 1 - beta2
    v *= beta2
    v += scratch
    if vmax is not None:
        xp.maximum(vmax, v, out=vmax)
    xp.sqrt(v if vmax is None else vmax, out=scratch)
    scratch *= inv_sqrt_bias2
    scratch += eps
    xp.divide(m, scratch, out=scratch)
    scratch *= step_size
    param -= scratch


# -- random numbers: Philox4x32-10, counter-based (kernels/random.cu) --------------------------
_PHILOX_M = (np.uint64(0xD2511F53), np.uint64(0xCD9E8D57))
_PHILOX_W = (np.uint32(0x9E3779B9), np.uint32(0xBB67AE85))
_LOW32 = np.uint64(0xFFFFFFFF)
_U32 = np.uint64(32)


def philox4x32_10(groups, offset, seed):
    """The four 32-bit words of Philox4x32-10 for each counter (group, offset) under key
    ``seed``: an array of shape (len(groups), 4), uint32."""
    groups = np.asarray(groups, dtype=np.uint64)
    offset = np.uint64(offset % 2**64)
    seed = np.uint64(seed % 2**64)
    c0 = (groups & _LOW32).astype(np.uint64)
    c1 = (groups >> _U32).astype(np.uint64)
    c2 = np.full_like(c0, offset & _LOW32)
    c3 = np.full_like(c0, offset >> _U32)
    k0, k1 = np.uint32(seed & _LOW32), np.uint32(seed >> _U32)
    with np.errstate(over="ignore"):
        for _ in range(10):
            p0 = _PHILOX_M[0] * c0
            p1 = _PHILOX_M[1] * c2
            c0, c1, c2, c3 = ((p1 >> _U32) ^ c1 ^ np.uint64(k0), p1 & _LOW32,
                              (p0 >> _U32) ^ c3 ^ np.uint64(k1), p0 & _LOW32)
            k0 = np.uint32(k0 + _PHILOX_W[0])
            k1 = np.uint32(k1 + _PHILOX_W[1])
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def dropout_keep(n, seed, offset, p):
    """Element i is kept when (word_i >> 8) / 2^24 >= p, word_i the Philox word i % 4 of
    counter (i / 4, offset): a boolean array of n elements."""
    words = philox4x32_10(np.arange(-(-n // 4), dtype=np.uint64), offset, seed).reshape(-1)[:n]
    uniform = (words >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / 16777216.0)
    return uniform >= np.float32(p)


def dropout(x, seed, offset, p, scale, out=None):
    """out = x * scale where the Philox draw of (seed, offset, element) is kept, else x * 0:
    PyTorch's product with the mask, so a dropped negative is -0 and a dropped NaN or
    infinity NaN"""
    keep = dropout_keep(x.size, seed, offset, p).reshape(x.shape)
    xp = _xp[x.__class__]
    if xp is not np:
        keep = xp.asarray(keep)
    # float16 and bfloat16 are scaled in float32 and rounded once, as the kernel does
    work = np.float32 if x.dtype in (np.float16, np.float32) or x.dtype.name == "bfloat16" \
        else x.dtype.type
    value = x.astype(work, copy=False) * xp.where(keep, work(scale), work(0))
    return _result(value.astype(x.dtype, copy=False), out)


# -- layer normalisation over the last axis (kernels/norm.cu) --------------------------------
def _norm_stats(x, eps):
    """(x - mean, 1 / sqrt(var + eps)) over the last axis, in float32 at least."""
    xp = _xp[x.__class__]
    x = x.astype(np.promote_types(x.dtype, np.float32), copy=False)
    centred = x - x.mean(axis=-1, keepdims=True)
    rstd = 1 / xp.sqrt((centred * centred).mean(axis=-1, keepdims=True) + eps)
    return centred, rstd


def layer_norm_fwd(x, w, b, eps, out=None):
    """out = (x - mean) / sqrt(var + eps) * w + b over the last axis of x; w and b (the
    size of that axis) may be None"""
    centred, rstd = _norm_stats(x, eps)
    y = centred * rstd
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return _result(y.astype(x.dtype, copy=False), out)


def layer_norm_bwd(g, x, w, eps, out=None):
    """out = r (a - mean(a) - xh mean(a xh)) over the last axis: the cotangent of x for the
    cotangent g of layer_norm_fwd's output; a = g w (w may be None), xh the normalised x,
    r = 1 / sqrt(var + eps)"""
    centred, rstd = _norm_stats(x, eps)
    xh = centred * rstd
    a = g.astype(xh.dtype, copy=False) if w is None else g * w.astype(xh.dtype, copy=False)
    value = rstd * (a - a.mean(axis=-1, keepdims=True)
                    - xh * (a * xh).mean(axis=-1, keepdims=True))
    return _result(value.astype(g.dtype, copy=False), out)
