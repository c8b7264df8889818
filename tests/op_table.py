"""One table of ops: how to call each, its NumPy reference, and how to make valid inputs.

test_ops.py derives forward, VJP, JVP and second-order checks from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

import gpugrad as gg
import gpugrad.nn.functional as F
from gpugrad.kernels import reference


@dataclass
class OpCase:
    name: str
    fn: Callable                 # gpugrad callable on Tensors
    ref: Callable                # NumPy callable on arrays
    shapes: Callable             # rng -> list of input shapes
    domain: str = "real"         # real | positive | away (from 0 and from each other)
    smooth: bool = True          # check second order
    consts: Callable = None      # rng, shapes -> extra non-differentiable inputs (appended)
    gradcheck: dict = field(default_factory=dict)   # keyword arguments for gg.gradcheck
    torch_order: int = 3         # highest order compared with PyTorch (where it is smooth)


def random_shape(rng, min_ndim=0, max_ndim=3):
    ndim = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(int(s) for s in rng.integers(1, 4, size=ndim))


def broadcast_partner(rng, shape):
    """A shape that broadcasts against ``shape``: leading axes dropped, some axes 1."""
    drop = int(rng.integers(0, len(shape) + 1))
    partner = [1 if rng.random() < 0.4 else s for s in shape[drop:]]
    return tuple(partner)


def unary(rng):
    return [random_shape(rng)]


def binary(rng):
    a = random_shape(rng, 1)
    b = broadcast_partner(rng, a)
    return [a, b] if rng.random() < 0.5 else [b, a]


def matrix_last(rng):
    return [random_shape(rng, 1, 3)]


def _gelu_tanh_ref(x):
    k = np.sqrt(2 / np.pi)
    return 0.5 * x * (1 + np.tanh(k * (x + 0.044715 * x ** 3)))


_erf = np.vectorize(math.erf)


def _gelu_ref(x):
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _softmax_ref(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax_ref(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _lse_ref(x, axis=None, keepdims=False):
    m = x.max(axis=axis, keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis) if axis is not None \
        else out.reshape(())


def _xent_ref(z, labels):
    return -_log_softmax_ref(z)[np.arange(z.shape[0]), labels].mean()


def _matmul_shapes(rng):
    n, k, m = (int(v) for v in rng.integers(1, 4, size=3))
    kind = int(rng.integers(0, 5))
    if kind == 0:
        return [(n, k), (k, m)]
    if kind == 1:
        return [(k,), (k, m)]
    if kind == 2:
        return [(n, k), (k,)]
    if kind == 3:
        return [(k,), (k,)]
    b = int(rng.integers(1, 3))
    return [(b, n, k), (1, k, m)] if rng.random() < 0.5 else [(n, k), (b, k, m)]


def _labels(rng, shapes):
    n, c = shapes[0]
    return [gg.tensor(rng.integers(0, c, size=n))]


def _axis_of(shape, rng):
    return int(rng.integers(-len(shape), len(shape))) if shape else None


def _linear_shapes(rng):
    n, i, o = (int(v) for v in rng.integers(1, 4, size=3))
    return [(n, i), (o, i), (o,)]


def _sigmoid_ref(z):
    return 1 / (1 + np.exp(-z))


def _elu_ref(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(z))


_ACT_REFS = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
             "sigmoid": _sigmoid_ref, "gelu": lambda z: _gelu_ref(z),
             "gelu_tanh": lambda z: _gelu_tanh_ref(z), "silu": lambda z: z * _sigmoid_ref(z),
             "leaky_relu": lambda z: np.where(z > 0, z, 0.01 * z), "elu": _elu_ref}
_KINKED = ("relu", "leaky_relu")


def _activation_cases():
    """One case per row of the activation table for each of its ops: the activation, the
    fused bias form and (for the rows it takes) the fused linear form."""
    cases = []
    for name in gg.ops.ACTIVATIONS:
        ref = _ACT_REFS[name]
        kinked = name in _KINKED
        extra = dict(domain="away", smooth=False) if kinked else {}
        cases.append(OpCase(name, lambda x, n=name: gg.ops.activation(n, x), ref, unary,
                            **extra))
        cases.append(OpCase(f"bias_{name}", lambda x, b, n=name: gg.ops.bias_act(x, b, n),
                            lambda x, b, r=ref: r(x + b),
                            lambda rng: (lambda s: [s, s[-1:]])(random_shape(rng, 1)),
                            **extra))
        cases.append(OpCase(f"linear_{name}", lambda x, w, b, n=name: F.linear(x, w, b, n),
                            lambda x, w, b, r=ref: r(x @ w.T + b), _linear_shapes, **extra))
    return cases


def _checkpoint_closure(x, w):
    """The region reads x as its argument and h = x * w, recorded before it, through a
    closure: its gradients stop at the boundary (h's node and x), never counted twice."""
    h = x * w
    return gg.checkpoint(lambda t: gg.sin(t) * h, x) + h


def _checkpoint_pair(x, w):
    a, b = gg.checkpoint(lambda t: (gg.tanh(t @ w), t * t), x)
    return a * 2.0 + b.sum()


def _setitem_slice(x, v):
    y = x * 1.0
    y[1:, 1:3] = v[:2] * 2      # a recorded write: gradients reach both x (untouched) and v
    return y * x


def _setitem_slice_ref(x, v):
    y = x * 1.0
    y[1:, 1:3] = v[:2] * 2
    return y * x


def _setitem_index(x, v):
    y = x * 2.0
    y[gg.tensor([2, 0])] = v
    y[3] = 0.5
    return y.sin()


def _setitem_index_ref(x, v):
    y = x * 2.0
    y[[2, 0]] = v
    y[3] = 0.5
    return np.sin(y)


def _inplace_chain(a, b):
    y = a * 1.0
    y += b
    y *= b
    y -= 0.5
    y /= b + 1
    y.clamp_(-1.0, 2.5)
    return y


def _inplace_chain_ref(a, b):
    return np.clip(((a + b) * b - 0.5) / (b + 1), -1.0, 2.5)


def _write_view(x, v):
    y = x * 1.0
    row = y[1]
    row.mul_(v)              # through a view: y sees it, and y's graph with it
    col = y.T[2]
    col += 1.0
    return y * row.sum()


def _write_view_ref(x, v):
    y = x * 1.0
    y[1] *= v
    y[:, 2] += 1.0
    return y * y[1].sum()
# -- the nn.functional set: compositions and the layer_norm and softplus primitives -------------
_SELU = (1.6732632423543772848170429916717, 1.0507009873554804934193349852946)


def _softplus_ref(x, beta=1.0, threshold=20.0):
    return np.where(beta * x > threshold, x, np.logaddexp(0, beta * x) / beta)


def _layer_norm_ref(x, ndim, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - ndim, x.ndim))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


def _hardtanh_ref(x, lo, hi):
    return np.clip(x, lo, hi)


def _nll_ref(logp, t, w=None, ignore=-100):
    """PyTorch's nll_loss with 'mean' over (N, C) or (N, C, d)."""
    c = logp.shape[1]
    w = np.ones(c) if w is None else w
    logp = np.moveaxis(logp, 1, -1).reshape(-1, c)
    t = t.reshape(-1)
    keep = t != ignore
    safe = np.where(keep, t, 0)
    wi = w[safe] * keep
    return -(logp[np.arange(len(t)), safe] * wi).sum() / wi.sum()


def _smooth_ref(logp, t, w, ignore, eps):
    c = logp.shape[1]
    w = np.ones(c) if w is None else w
    keep = (t != ignore).reshape(-1)
    smooth = -(np.moveaxis(logp, 1, -1).reshape(-1, c) * w).sum(-1) * keep
    denominator = (w[np.where(keep, t.reshape(-1), 0)] * keep).sum()
    return (1 - eps) * _nll_ref(logp, t, w, ignore) + eps / c * smooth.sum() / denominator


def _softmax_np(x):
    return _softmax_ref(x, -1)


def _rows_cols(rng):
    return [(int(rng.integers(2, 4)), int(rng.integers(2, 5)))]


def _rows_cols_d(rng):
    return [(int(rng.integers(1, 3)), int(rng.integers(2, 4)), int(rng.integers(1, 3)))]


def _class_targets(rng, shapes):
    shape = shapes[0]
    return [gg.tensor(rng.integers(0, shape[1], size=shape[:1] + shape[2:]))]


def _targets_and_weights(keep):
    """Class targets (one of them ``keep``, so that not all are ignored) and class weights."""
    def make(rng, shapes):
        shape = shapes[0]
        t = rng.integers(0, shape[1], size=shape[:1] + shape[2:])
        t.flat[0] = keep
        return [gg.tensor(t), gg.tensor(rng.uniform(0.5, 2.0, size=shape[1]), dtype=gg.float64)]
    return make


def _last_dim_weights(rng, shapes):
    return [gg.tensor(rng.uniform(0.5, 3.0, size=shapes[0][-1]), dtype=gg.float64)]


def _embedding_indices(rng, shapes):
    return [gg.tensor(np.array([[0, 1, 3], [1, 2, 1]]))]


def _layer_norm_shapes(rng):
    s = random_shape(rng, 0, 2) + (int(rng.integers(2, 5)),)
    return [s, s[-1:], s[-1:]]


def _pairs(rng):
    return [random_shape(rng, 1)] * 2


def _bce_ref(x, t, pos_weight=None):
    lw = 1 if pos_weight is None else 1 + (pos_weight - 1) * t
    return np.mean((1 - t) * x + lw * np.logaddexp(0, -x))


def _sigmoid_np(z):
    return 1 / (1 + np.exp(-z))


FUNCTIONAL_OPS = [
    OpCase("layer_norm_affine", lambda x, w, b: F.layer_norm(x, x.shape[-1:], w, b),
           lambda x, w, b: _layer_norm_ref(x, 1, w, b), _layer_norm_shapes),
    OpCase("layer_norm_2d", lambda x: F.layer_norm(x, x.shape[-2:], eps=1e-3),
           lambda x: _layer_norm_ref(x, 2, eps=1e-3),
           lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("layer_norm_weight_only", lambda x, w: F.layer_norm(x, x.shape[-1:], w),
           lambda x, w: _layer_norm_ref(x, 1, w), lambda rng: _layer_norm_shapes(rng)[:2]),
    OpCase("softplus", F.softplus, _softplus_ref, unary),
    OpCase("softplus_beta_threshold", lambda x: F.softplus(x, 2.0, 2.5),
           lambda x: _softplus_ref(x, 2.0, 2.5), unary, domain="away", smooth=False),
    OpCase("leaky_relu_slope", lambda x: F.leaky_relu(x, 0.2),
           lambda x: np.where(x > 0, x, 0.2 * x), unary, domain="away", smooth=False),
    OpCase("elu_alpha", lambda x: F.elu(x, 0.6), lambda x: _elu_ref(x, 0.6), unary),
    OpCase("selu", F.selu, lambda x: _SELU[1] * _elu_ref(x, _SELU[0]), unary),
    OpCase("celu", lambda x: F.celu(x, 0.7), lambda x: 0.7 * _elu_ref(x / 0.7), unary),
    OpCase("mish", F.mish, lambda x: x * np.tanh(np.logaddexp(0, x)), unary),
    OpCase("softsign", F.softsign, lambda x: x / (1 + np.abs(x)), unary),
    OpCase("logsigmoid", F.logsigmoid, lambda x: -np.logaddexp(0, -x), unary),
    OpCase("hardtanh", lambda x: F.hardtanh(x, -0.5, 0.7), lambda x: _hardtanh_ref(x, -0.5, 0.7),
           unary, domain="away", smooth=False),
    OpCase("relu6", lambda x: F.relu6(x * 5), lambda x: _hardtanh_ref(x * 5, 0, 6), unary,
           domain="away", smooth=False),
    OpCase("hardswish", lambda x: F.hardswish(x * 3),
           lambda x: x * 3 * _hardtanh_ref(x * 3 + 3, 0, 6) / 6, unary, domain="away",
           smooth=False),
    OpCase("hardsigmoid", lambda x: F.hardsigmoid(x * 3),
           lambda x: _hardtanh_ref(x * 3 + 3, 0, 6) / 6, unary, domain="away", smooth=False),
    # linear in its input: no second derivative to check
    OpCase("nll_loss", F.nll_loss, _nll_ref, _rows_cols, consts=_class_targets, smooth=False),
    OpCase("nll_loss_weight_ignore_nd",
           lambda x, t, w: F.nll_loss(x, t, weight=w, ignore_index=1),
           lambda x, t, w: _nll_ref(x, t, w, 1), _rows_cols_d, consts=_targets_and_weights(0),
           smooth=False),
    OpCase("cross_entropy_nd", F.cross_entropy,
           lambda x, t: _nll_ref(_log_softmax_ref(x, 1), t), _rows_cols_d,
           consts=_class_targets),
    OpCase("cross_entropy_label_smoothing",
           lambda x, t, w: F.cross_entropy(x, t, weight=w, ignore_index=0, label_smoothing=0.2),
           lambda x, t, w: _smooth_ref(_log_softmax_ref(x, 1), t, w, 0, 0.2), _rows_cols_d,
           consts=_targets_and_weights(1)),
    OpCase("cross_entropy_probs",
           lambda x, q: F.cross_entropy(x, gg.softmax(q, -1), label_smoothing=0.1),
           lambda x, q: -np.sum(_log_softmax_ref(x) * (0.9 * _softmax_np(q) + 0.1 / x.shape[1]))
           / x.shape[0], lambda rng: _rows_cols(rng) * 2),
    OpCase("l1_loss", F.l1_loss, lambda a, b: np.mean(np.abs(a - b)), _pairs, domain="away",
           smooth=False),
    OpCase("smooth_l1_loss", lambda a, b: F.smooth_l1_loss(a, b, reduction="sum", beta=0.5),
           lambda a, b: np.sum(np.where(np.abs(a - b) < 0.5, (a - b) ** 2, np.abs(a - b) - 0.25)),
           _pairs, domain="away", smooth=False),
    OpCase("huber_loss", lambda a, b: F.huber_loss(a, b, delta=0.4),
           lambda a, b: np.mean(np.where(np.abs(a - b) < 0.4, 0.5 * (a - b) ** 2,
                                         0.4 * (np.abs(a - b) - 0.2))),
           _pairs, domain="away", smooth=False),
    OpCase("binary_cross_entropy",
           lambda x, t: F.binary_cross_entropy(gg.sigmoid(x), gg.sigmoid(t)),
           lambda x, t: _bce_ref(x, _sigmoid_np(t)), _pairs),
    OpCase("bce_with_logits_pos_weight",
           lambda x, t, pw: F.binary_cross_entropy_with_logits(x, gg.sigmoid(t), pos_weight=pw),
           lambda x, t, pw: _bce_ref(x, _sigmoid_np(t), pw), _pairs, consts=_last_dim_weights),
    OpCase("kl_div", lambda x, t: F.kl_div(gg.log_softmax(x, -1), gg.softmax(t, -1),
                                           reduction="batchmean"),
           lambda x, t: np.sum(_softmax_np(t) * (_log_softmax_ref(t) - _log_softmax_ref(x)))
           / x.shape[0], lambda rng: _rows_cols(rng) * 2),
    OpCase("kl_div_log_target", lambda x, t: F.kl_div(x, t, reduction="sum", log_target=True),
           lambda x, t: np.sum(np.exp(t) * (t - x)), _pairs),
    OpCase("normalize", F.normalize, lambda x: x / np.sqrt((x * x).sum(1, keepdims=True)),
           lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("normalize_p3", lambda x: F.normalize(x, p=3, dim=0),
           lambda x: x / ((np.abs(x) ** 3).sum(0, keepdims=True)) ** (1 / 3),
           lambda rng: [random_shape(rng, 1, 2)]),
    OpCase("embedding", lambda w, i: F.embedding(i, w),
           lambda w, i: w[i], lambda rng: [(4, int(rng.integers(1, 4)))],
           consts=_embedding_indices),
]


def _second_device(x):
    return "cpu:1" if x.device == "cpu" else "cpu"


OPS = [
    OpCase("add", lambda a, b: a + b, np.add, binary),
    OpCase("sub", lambda a, b: a - b, np.subtract, binary),
    OpCase("mul", lambda a, b: a * b, np.multiply, binary),
    OpCase("div", lambda a, b: a / b, np.divide, binary, domain="positive"),
    OpCase("pow", lambda a, b: a ** b, np.power, binary, domain="positive"),
    OpCase("pow_scalar", lambda a: a ** 3, lambda a: a ** 3, unary),
    OpCase("rpow_scalar", lambda a: 2.0 ** a, lambda a: 2.0 ** a, unary),
    OpCase("rsub_scalar", lambda a: 1.5 - a, lambda a: 1.5 - a, unary),
    OpCase("rdiv_scalar", lambda a: 2.0 / a, lambda a: 2.0 / a, unary, domain="positive"),
    OpCase("neg", lambda a: -a, np.negative, unary),
    OpCase("exp", gg.exp, np.exp, unary),
    OpCase("log", gg.log, np.log, unary, domain="positive"),
    OpCase("sqrt", gg.sqrt, np.sqrt, unary, domain="positive"),
    OpCase("sin", gg.sin, np.sin, unary),
    OpCase("cos", gg.cos, np.cos, unary),
    OpCase("abs", gg.abs, np.abs, unary, domain="away", smooth=False),
    OpCase("maximum", gg.maximum, np.maximum, binary, domain="away", smooth=False),
    OpCase("minimum", gg.minimum, np.minimum, binary, domain="away", smooth=False),
    OpCase("clip", lambda x: gg.clip(x, -0.5, 0.7), lambda x: np.clip(x, -0.5, 0.7), unary,
           domain="away", smooth=False),
    OpCase("where", lambda a, b: gg.where(a > 0.1, a, b), lambda a, b: np.where(a > 0.1, a, b),
           binary, domain="away", smooth=False),
    OpCase("matmul", gg.matmul, np.matmul, _matmul_shapes),
    OpCase("sum_all", lambda x: gg.sum(x), lambda x: np.sum(x), unary),
    OpCase("sum_axis", lambda x: gg.sum(x, axis=-1, keepdims=True),
           lambda x: np.sum(x, axis=-1, keepdims=True), matrix_last),
    OpCase("sum_axes", lambda x: x.sum(axis=(0, -1)), lambda x: x.sum(axis=(0, -1)),
           lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("mean", lambda x: gg.mean(x, axis=0), lambda x: np.mean(x, axis=0), matrix_last),
    OpCase("max_all", lambda x: gg.max(x), lambda x: np.max(x), matrix_last, domain="away",
           smooth=False),
    OpCase("max_axis", lambda x: gg.max(x, axis=-1).values, lambda x: np.max(x, axis=-1),
           matrix_last, domain="away", smooth=False),
    OpCase("max_dim_keepdim", lambda x: x.max(0, keepdim=True).values,
           lambda x: np.max(x, axis=0, keepdims=True), matrix_last, domain="away",
           smooth=False),
    OpCase("min_all", lambda x: x.min(), lambda x: np.min(x), matrix_last, domain="away",
           smooth=False),
    OpCase("min_dim", lambda x: gg.min(x, dim=-1).values, lambda x: np.min(x, axis=-1),
           matrix_last, domain="away", smooth=False),
    OpCase("logsumexp", lambda x: gg.logsumexp(x, axis=-1),
           lambda x: _lse_ref(x, axis=-1), matrix_last),
    OpCase("logsumexp_all", lambda x: gg.logsumexp(x), lambda x: _lse_ref(x), unary),
    OpCase("softmax", lambda x: gg.softmax(x, axis=-1), _softmax_ref, matrix_last),
    OpCase("softmax_axis0", lambda x: gg.softmax(x, axis=0), lambda x: _softmax_ref(x, 0),
           lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("log_softmax", lambda x: gg.log_softmax(x, axis=-1), _log_softmax_ref, matrix_last),
    OpCase("log_softmax_axis0", lambda x: gg.log_softmax(x, axis=0),
           lambda x: _log_softmax_ref(x, 0), lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("cross_entropy", F.cross_entropy, _xent_ref,
           lambda rng: [(int(rng.integers(1, 4)), int(rng.integers(2, 5)))], consts=_labels),
    OpCase("mse_loss", F.mse_loss, lambda a, b: np.mean((a - b) ** 2),
           lambda rng: [random_shape(rng, 1)] * 2),
    OpCase("linear", F.linear, lambda x, w, b: x @ w.T + b,
           lambda rng: (lambda n, i, o: [(n, i), (o, i), (o,)])(*rng.integers(1, 4, size=3))),
    OpCase("bias_grad", lambda g: gg.ops.sum_to(g, g.shape[1:]),
           lambda g: g.sum(axis=0), lambda rng: [random_shape(rng, 2, 2)]),
    OpCase("reshape", lambda x: x.reshape(-1), lambda x: x.reshape(-1), unary),
    OpCase("transpose", lambda x: x.transpose(0, -1), lambda x: np.swapaxes(x, 0, -1),
           lambda rng: [random_shape(rng, 1)]),
    OpCase("permute", lambda x: x.permute(*reversed(range(x.ndim))), lambda x: x.transpose(),
           unary),
    OpCase("mT", lambda x: x.mT * 2, lambda x: np.swapaxes(x, -1, -2) * 2,
           lambda rng: [random_shape(rng, 2)]),
    OpCase("T", lambda x: x.T @ x, lambda x: x.T @ x, lambda rng: [random_shape(rng, 2, 2)]),
    OpCase("broadcast_to", lambda x: gg.broadcast_to(x, (2,) + x.shape),
           lambda x: np.broadcast_to(x, (2,) + x.shape), unary),
    OpCase("concatenate", lambda a, b: gg.concatenate([a, b, a], axis=0),
           lambda a, b: np.concatenate([a, b, a], axis=0),
           lambda rng: (lambda s: [s, (2,) + s[1:]])(random_shape(rng, 1))),
    OpCase("stack", lambda a, b: gg.stack([a, b], axis=-1), lambda a, b: np.stack([a, b], -1),
           lambda rng: [random_shape(rng)] * 2),
    OpCase("getitem_basic", lambda x: x[1:, ..., ::2], lambda x: x[1:, ..., ::2],
           lambda rng: [(3,) + random_shape(rng, 1, 2)]),
    OpCase("getitem_int_array", lambda x: x[gg.tensor([0, 2, 0, 1])],
           lambda x: x[np.array([0, 2, 0, 1])], lambda rng: [(3,) + random_shape(rng, 0, 2)]),
    OpCase("getitem_scalar", lambda x: x[1], lambda x: x[1],
           lambda rng: [(2,) + random_shape(rng, 0, 2)]),
    # PyTorch's rule: the integer selects first, so the advanced index's dimension stays put
    OpCase("getitem_int_slice_list", lambda x: x[1, :, [0, 2, 2]],
           lambda x: x[1][:, [0, 2, 2]], lambda rng: [(2, int(rng.integers(1, 4)), 3)]),
    OpCase("getitem_mask", lambda x: x[gg.tensor(x.numpy() > 0)], lambda x: x[x > 0],
           lambda rng: [random_shape(rng, 1)], domain="away"),
    OpCase("setitem_slice", _setitem_slice, _setitem_slice_ref, lambda rng: [(3, 4), (4,)]),
    OpCase("setitem_index_tensor", _setitem_index, _setitem_index_ref,
           lambda rng: [(4, 3), (2, 3)]),
    OpCase("inplace_ops", _inplace_chain, _inplace_chain_ref,
           lambda rng: (lambda s: [s, broadcast_partner(rng, s)])(random_shape(rng, 1)),
           domain="positive"),
    OpCase("inplace_through_view", _write_view, _write_view_ref, lambda rng: [(3, 4), (4,)]),
    OpCase("composite", lambda a, b: (gg.tanh(a) * b + a * a).exp().mean(),
           lambda a, b: np.exp(np.tanh(a) * b + a * a).mean(), binary),
    OpCase("fanout", lambda x: x * x * x + gg.sin(x) * x,
           lambda x: x * x * x + np.sin(x) * x, unary),
    OpCase("gelu_module_form", F.gelu, _gelu_ref, unary),
    OpCase("cast", lambda x: x.to(gg.float32).to(gg.float64),
           lambda x: x.astype(np.float32).astype(np.float64), unary, smooth=False,
           gradcheck=dict(eps=1e-2)),    # float32 rounding: a wide step keeps it exact
    OpCase("to_device", lambda x: (x.to(_second_device(x)) * 2).to(x.device), lambda x: 2 * x,
           unary),
    OpCase("checkpoint", lambda x, w: gg.checkpoint(lambda t: gg.tanh(t @ w) * t, x),
           lambda x, w: np.tanh(x @ w) * x,
           lambda rng: (lambda n, k: [(n, k), (k, k)])(*rng.integers(1, 4, size=2))),
    OpCase("checkpoint_closure", _checkpoint_closure,
           lambda x, w: np.sin(x) * x * w + x * w, lambda rng: [random_shape(rng, 1)] * 2),
    OpCase("checkpoint_two_outputs", _checkpoint_pair,
           lambda x, w: np.tanh(x @ w) * 2.0 + (x * x).sum(),
           lambda rng: (lambda n, k: [(n, k), (k, k)])(*rng.integers(1, 4, size=2))),
    OpCase("dropout", lambda x: gg.ops.dropout(x, 0.3, seed=11, offset=5),
           lambda x: np.where(reference.dropout_keep(x.size, 11, 5, 0.3).reshape(x.shape),
                              x / 0.7, 0.0), unary),
    *_activation_cases(),
    *FUNCTIONAL_OPS,
]


def make_inputs(case, rng):
    """float64 inputs in the case's domain; never zeros, never ties for 'away'."""
    shapes = case.shapes(rng)
    arrays = []
    for k, shape in enumerate(shapes):
        if case.domain == "positive":
            a = rng.uniform(0.5, 2.0, size=shape)
        elif case.domain == "away":
            # distinct magnitudes at least 0.1 apart, random signs: no kinks, no ties
            n = int(np.prod(shape))
            mags = 0.15 + 0.13 * rng.permutation(n) + 0.031 * k
            a = (mags * rng.choice([-1.0, 1.0], size=n)).reshape(shape)
        else:
            a = rng.uniform(-1.5, 1.5, size=shape)
            a = np.where(np.abs(a) < 0.05, 0.3, a)
        arrays.append(np.asarray(a, dtype=np.float64))
    consts = case.consts(rng, shapes) if case.consts else []
    return arrays, consts


# -- PyTorch's op set: maths, reductions and scans, movement and selection -------------------------
def _ternary(rng):
    a = random_shape(rng, 1)
    return [a, broadcast_partner(rng, a), broadcast_partner(rng, a)]


def _float_const(low, high):
    """One non-differentiable float64 input shaped like the first input."""
    return lambda rng, shapes: [gg.tensor(rng.uniform(low, high, size=shapes[0]),
                                          dtype=gg.float64)]


def _index_const(dim, extra=0):
    """An int64 index for gather/scatter along ``dim`` (values in range, repeats allowed)."""
    def make(rng, shapes):
        shape = list(shapes[0])
        n = shape[dim]
        shape[dim] = n + extra
        return [gg.tensor(rng.integers(0, n, size=shape))]
    return make


def _perm_index_const(dim):
    """A scatter index along ``dim`` without repeats (scatter writes each place once)."""
    def make(rng, shapes):
        shape = shapes[0]
        idx = np.argsort(rng.random(shape), axis=dim)
        return [gg.tensor(idx)]
    return make


def _mask_const(rng, shapes):
    return [gg.tensor(rng.random(shapes[0]) < 0.5)]


def _np_remainder_by_zeroed(x):
    return x - x[..., :1]


def _np_pad(x, widths, mode, value=0.0):
    crop = tuple(slice(max(-a, 0), s - max(-b, 0)) for (a, b), s in zip(widths, x.shape))
    x = x[crop]
    widths = [(max(a, 0), max(b, 0)) for a, b in widths]
    if mode == "constant":
        return np.pad(x, widths, mode="constant", constant_values=value)
    return np.pad(x, widths, mode={"reflect": "reflect", "replicate": "edge",
                                   "circular": "wrap"}[mode])


def _np_lcse(x, axis):
    return np.logaddexp.accumulate(x, axis=axis)


def _np_scatter(x, idx, src, dim, add=False):
    out = x.copy()
    full = tuple(idx if a == dim else np.arange(n).reshape([-1 if b == a else 1
                                                            for b in range(idx.ndim)])
                 for a, n in enumerate(idx.shape))
    if add:
        np.add.at(out, full, src[tuple(slice(0, n) for n in idx.shape)])
    else:
        out[full] = src[tuple(slice(0, n) for n in idx.shape)]
    return out


def _slices_shapes(unique):
    """x of 2 or 3 dims and a source of k slices along dim 1 (k <= x's when ``unique``)."""
    def make(rng):
        x = random_shape(rng, 2, 3)
        k = int(rng.integers(1, x[1] + 1 if unique else 4))
        return [x, x[:1] + (k,) + x[2:]]
    return make


def _slice_index_const(unique):
    """A 1-D index into dim 1 of x, one entry per source slice (repeats unless unique)."""
    def make(rng, shapes):
        n, k = shapes[0][1], shapes[1][1]
        return [gg.tensor(rng.permutation(n)[:k] if unique else rng.integers(0, n, size=k))]
    return make


def _np_along_1(x, idx, src, how):
    out = np.moveaxis(x.copy(), 1, 0)
    if how == "add":
        np.add.at(out, idx, np.moveaxis(src, 1, 0))
    elif how == "copy":
        out[idx] = np.moveaxis(src, 1, 0)
    else:
        out[idx] = src
    return np.moveaxis(out, 0, 1)


def _rows_and_value_shapes(rng):
    """x of 1 to 3 dims and a value of k rows of x's shape (index_put on dim 0)."""
    x = random_shape(rng, 1, 3)
    return [x, (int(rng.integers(1, 4)),) + x[1:]]


def _row_index_const(rng, shapes):
    return [gg.tensor(rng.integers(0, shapes[0][0], size=shapes[1][0]))]


def _np_index_put_add(x, v, i):
    out = x.copy()
    np.add.at(out, i, v)
    return out


def _flat_positions_shapes(rng):
    x = random_shape(rng, 1, 3)
    return [x, (int(rng.integers(1, int(np.prod(x)) + 1)),)]


def _flat_positions_const(rng, shapes):
    return [gg.tensor(rng.permutation(int(np.prod(shapes[0])))[:shapes[1][0]])]


def _np_put_flat(x, v, positions):
    out = x.copy().reshape(-1)
    out[positions] = v
    return out.reshape(x.shape)


def _inplace_selection(x, s, m, T=gg):
    """Each in-place selection method once, on a non-leaf (x, s, m of one 2-D shape);
    ``T`` the module (gpugrad, or torch for its twin)."""
    r, c = x.shape
    y = x * 1.0
    y.scatter_add_(0, T.zeros((1, c), dtype=T.int64), s[:1])
    y.scatter_(1, T.zeros((r, 1), dtype=T.int64), s[:, :1] * 2.0)
    y.masked_fill_(m, 0.5)
    y.masked_scatter_(~m, s * 3.0)
    y.index_add_(0, T.tensor([r - 1]), s[:1], alpha=-1.0)
    y.index_copy_(1, T.tensor([c - 1]), s[:, :1] * 4.0)
    y.index_fill_(0, T.tensor([0]), s[0, 0] * 1.0)
    y.index_put_((T.tensor([r - 1]),), s[-1] * 5.0, accumulate=True)
    return y * y


def _inplace_selection_ref(x, s, m):
    y = x.copy()
    y[0] += s[0]
    y[:, 0] = 2.0 * s[:, 0]
    y = np.where(m, 0.5, y)
    y[~m] = (3.0 * s).reshape(-1)[:int((~m).sum())]
    y[-1] -= s[0]
    y[:, -1] = 4.0 * s[:, 0]
    y[0] = s[0, 0]
    y[-1] += 5.0 * s[-1]
    return y * y


def _matrix_pair(rng):
    shape = random_shape(rng, 2, 2)
    return [shape, shape]


def _sq3(rng):
    n = int(rng.integers(1, 4))
    return [(int(rng.integers(1, 3)), n, n)]


def _mat(rng):
    return [tuple(int(s) for s in rng.integers(1, 4, size=2))]


def _at_least(k, min_ndim=1, max_ndim=3):
    """A random shape whose dimensions are all at least k."""
    def shapes(rng):
        ndim = int(rng.integers(min_ndim, max_ndim + 1))
        return [tuple(int(s) for s in rng.integers(k, k + 3, size=ndim))]
    return shapes


def _einsum_shapes(kind):
    def shapes(rng):
        i, j, k, b = (int(v) for v in rng.integers(1, 4, size=4))
        return {"mm": [(i, j), (j, k)], "diag": [(i, i)], "all": [(i, j)],
                "batch": [(b, i, j), (b, j, k)], "ell": [(b, 1, i, j), (2, j, k)],
                "dot": [(i,), (i,)], "three": [(i, j), (j, k), (k,)],
                "outer_rep": [(i, i, j)]}[kind]
    return shapes


_EINSUM = {"mm": "ij,jk->ik", "diag": "ii->i", "all": "ij->", "batch": "bij,bjk->bik",
           "ell": "...ij,...jk", "dot": "i,i->", "three": "ij,jk,k->i",
           "outer_rep": "iij->ji"}


def _np_sort_desc(x, axis=-1):
    return -np.sort(-x, axis=axis)


OPS += [
    # smooth unary maths
    OpCase("tan", gg.tan, np.tan, unary),
    OpCase("asin", lambda x: gg.asin(x * 0.6), lambda x: np.arcsin(x * 0.6), unary),
    OpCase("acos", lambda x: gg.acos(x * 0.6), lambda x: np.arccos(x * 0.6), unary),
    OpCase("atan", gg.atan, np.arctan, unary),
    OpCase("sinh", gg.sinh, np.sinh, unary),
    OpCase("cosh", gg.cosh, np.cosh, unary),
    OpCase("asinh", gg.asinh, np.arcsinh, unary),
    OpCase("acosh", lambda x: gg.acosh(x + 1.0), lambda x: np.arccosh(x + 1.0), unary,
           domain="positive"),
    OpCase("atanh", lambda x: gg.atanh(x * 0.6), lambda x: np.arctanh(x * 0.6), unary),
    OpCase("erf", gg.erf, _erf, unary),
    OpCase("exp2", gg.exp2, np.exp2, unary),
    OpCase("expm1", gg.expm1, np.expm1, unary),
    OpCase("log2", gg.log2, np.log2, unary, domain="positive"),
    OpCase("log10", gg.log10, np.log10, unary, domain="positive"),
    OpCase("log1p", gg.log1p, np.log1p, unary, domain="positive"),
    OpCase("rsqrt", gg.rsqrt, lambda x: 1 / np.sqrt(x), unary, domain="positive"),
    OpCase("square", gg.square, np.square, unary),
    # piecewise constant: zero gradients
    OpCase("floor", lambda x: gg.floor(x * 3), lambda x: np.floor(x * 3), unary),
    OpCase("ceil", lambda x: gg.ceil(x * 3), lambda x: np.ceil(x * 3), unary),
    OpCase("trunc", lambda x: gg.trunc(x * 3), lambda x: np.trunc(x * 3), unary),
    OpCase("round", lambda x: gg.round(x * 3) + gg.round(x, decimals=1),
           lambda x: np.round(x * 3) + np.round(x, 1), unary),
    OpCase("sign", lambda x: gg.sign(x) * x, lambda x: np.sign(x) * x, unary),
    # binary maths
    OpCase("atan2", gg.atan2, np.arctan2, binary),
    OpCase("logaddexp", gg.logaddexp, np.logaddexp, binary),
    # (PyTorch has no second derivative of remainder; ours is the exact 0)
    OpCase("remainder", lambda a, b: a % b, np.remainder, binary, torch_order=1),
    OpCase("remainder_scalar", lambda a: (a % 0.7) + (2.0 % a),
           lambda a: np.remainder(a, 0.7) + np.remainder(2.0, a), unary, torch_order=1),
    OpCase("fmod", gg.fmod, np.fmod, binary, torch_order=1),
    OpCase("floor_divide", lambda x, c: x * (c // 0.7), lambda x, c: x * (c // 0.7), unary,
           consts=_float_const(-2, 2)),
    OpCase("lerp", gg.lerp, lambda a, b, w: a + w * (b - a), _ternary),
    OpCase("lerp_scalar", lambda a, b: gg.lerp(a, b, 0.3), lambda a, b: a + 0.3 * (b - a),
           binary),
    # reductions
    OpCase("amax_dims", lambda x: gg.amax(x, dim=(0, -1), keepdim=True),
           lambda x: np.max(x, axis=(0, -1), keepdims=True), lambda rng: [random_shape(rng, 2)],
           domain="away", smooth=False),
    OpCase("amin", lambda x: gg.amin(x, -1), lambda x: np.min(x, axis=-1), matrix_last,
           domain="away", smooth=False),
    OpCase("amin_all", lambda x: gg.amin(x) + gg.min(x), lambda x: 2 * np.min(x), unary,
           domain="away", smooth=False),
    OpCase("min_dim_keepdim", lambda x: x.min(dim=0).values * 2 + x.min(0, keepdim=True)[0].sum(),
           lambda x: np.min(x, 0) * 2 + np.min(x, 0, keepdims=True).sum(), matrix_last,
           domain="away", smooth=False),
    OpCase("prod_all", gg.prod, np.prod, unary),
    OpCase("prod_dim", lambda x: x.prod(dim=-1, keepdim=True),
           lambda x: np.prod(x, axis=-1, keepdims=True), matrix_last),
    OpCase("prod_zero", lambda x: gg.prod(x - x[..., :1], dim=-1),
           lambda x: np.prod(_np_remainder_by_zeroed(x), axis=-1), matrix_last),
    OpCase("cumsum", lambda x: gg.cumsum(x, dim=0), lambda x: np.cumsum(x, axis=0),
           matrix_last),
    OpCase("cumprod", lambda x: x.cumprod(-1), lambda x: np.cumprod(x, axis=-1), matrix_last),
    OpCase("cumprod_zero", lambda x: gg.cumprod(gg.roll(x - x[..., :1], 1, -1), -1),
           lambda x: np.cumprod(np.roll(_np_remainder_by_zeroed(x), 1, -1), axis=-1),
           _at_least(3, 1, 2)),
    # PyTorch's third derivative is nan (log|g| differentiated where g = 0); ours is finite
    OpCase("logcumsumexp", lambda x: gg.logcumsumexp(x, -1), lambda x: _np_lcse(x, -1),
           matrix_last, torch_order=2),
    OpCase("var", lambda x: gg.var(x, dim=-1) + x.var(correction=0),
           lambda x: np.var(x, axis=-1, ddof=1) + np.var(x), _at_least(2)),
    OpCase("std", lambda x: gg.std(x, 0, keepdim=True, unbiased=False),
           lambda x: np.std(x, axis=0, keepdims=True), _at_least(2)),
    OpCase("norm", lambda x: gg.norm(x), lambda x: np.sqrt(np.sum(x * x)), unary),
    OpCase("norm_dim", lambda x: x.norm(dim=-1, keepdim=True) + x.norm(3, dim=-1, keepdim=True),
           lambda x: np.linalg.norm(x, axis=-1, keepdims=True)
           + np.sum(np.abs(x) ** 3, axis=-1, keepdims=True) ** (1 / 3), matrix_last),
    OpCase("norm_nuc", lambda x: gg.norm(x, "nuc"), lambda x: np.linalg.norm(x, "nuc"),
           lambda rng: [random_shape(rng, 2, 2)], torch_order=2),
    OpCase("norm_nuc_dims", lambda x: x.norm("nuc", dim=(2, 0), keepdim=True)
           + gg.norm(x, "fro", dim=(0, 2), keepdim=True),
           lambda x: np.linalg.svd(np.moveaxis(x, 1, 0).transpose(0, 2, 1),
                                   compute_uv=False).sum(-1)[None, :, None]
           + np.sqrt((x * x).sum(axis=(0, 2), keepdims=True)),
           lambda rng: [random_shape(rng, 3, 3)], torch_order=2),
    OpCase("norm_1_inf", lambda x: x.norm(1) + x.norm(float("inf"), dim=0),
           lambda x: np.abs(x).sum() + np.abs(x).max(axis=0), matrix_last, domain="away",
           smooth=False),
    # movement
    OpCase("squeeze_unsqueeze", lambda x: gg.unsqueeze(gg.squeeze(x), -1).squeeze(0),
           lambda x: np.squeeze(np.squeeze(x)[..., None], 0) if np.squeeze(x).shape[:1] == (1,)
           or not np.squeeze(x).ndim else np.squeeze(x)[..., None],
           lambda rng: [random_shape(rng, 1, 3) + (1,)]),
    OpCase("unflatten", lambda x: x.flatten().unflatten(0, (-1, 1)),
           lambda x: x.reshape(-1, 1), unary),
    OpCase("expand", lambda x: x.expand(2, *x.shape) * x.expand_as(x),
           lambda x: np.broadcast_to(x, (2,) + x.shape) * x, unary),
    OpCase("repeat", lambda x: x.repeat(2, *([1] * (x.ndim - 1)), 3) if x.ndim else x.repeat(2),
           lambda x: np.tile(x, (2,) + (1,) * (x.ndim - 1) + (3,)) if x.ndim
           else np.tile(x, 2), unary),
    OpCase("tile", lambda x: gg.tile(x, (2,)), lambda x: np.tile(x, 2), unary),
    OpCase("repeat_interleave", lambda x: gg.repeat_interleave(x, 2, dim=0)
           + gg.repeat_interleave(x, gg.tensor([2] * x.shape[0]), dim=0),
           lambda x: 2 * np.repeat(x, 2, axis=0), matrix_last),
    OpCase("roll", lambda x: gg.roll(x, (1, -2), (0, -1)) + gg.roll(x, 1),
           lambda x: np.roll(x, (1, -2), (0, -1)) + np.roll(x.ravel(), 1).reshape(x.shape),
           matrix_last),
    OpCase("flip", lambda x: gg.flip(x, (0, -1)), lambda x: np.flip(x, (0, -1)),
           lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("clone", lambda x: gg.clone(x) * x.contiguous(), lambda x: x * x, unary),
    OpCase("cat_dim", lambda a, b: gg.cat([a, b], dim=-1),
           lambda a, b: np.concatenate([a, b], -1),
           lambda rng: (lambda s: [s, s[:-1] + (2,)])(random_shape(rng, 1))),
    OpCase("stack_dim", lambda a, b: gg.stack([a, b], dim=1), lambda a, b: np.stack([a, b], 1),
           lambda rng: [random_shape(rng, 1)] * 2),
    OpCase("split_chunk", lambda x: gg.cat(gg.split(x, 1)[::-1] + x.chunk(2)[:1]),
           lambda x: np.concatenate([x[::-1], x[:(x.shape[0] + 1) // 2]]), matrix_last),
    OpCase("unbind", lambda x: gg.stack(x.unbind(-1)[::-1], -1), lambda x: x[..., ::-1],
           matrix_last),
    OpCase("pad_constant", lambda x: gg.ops.pad(x, (1, 2, -1, 1), value=0.5),
           lambda x: _np_pad(x, [(0, 0)] * (x.ndim - 2) + [(-1, 1), (1, 2)], "constant", 0.5),
           lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("pad_reflect", lambda x: gg.ops.pad(x, (1, 2), mode="reflect") +
           gg.ops.pad(x, (2, 1), mode="replicate") + gg.ops.pad(x, (3, 0), mode="circular"),
           lambda x: _np_pad(x, [(0, 0)] * (x.ndim - 1) + [(1, 2)], "reflect")
           + _np_pad(x, [(0, 0)] * (x.ndim - 1) + [(2, 1)], "replicate")
           + _np_pad(x, [(0, 0)] * (x.ndim - 1) + [(3, 0)], "circular"), _at_least(3)),
    OpCase("movedim", lambda x: gg.movedim(x, 0, -1), lambda x: np.moveaxis(x, 0, -1),
           lambda rng: [random_shape(rng, 2, 3)]),
    # selection
    OpCase("gather", lambda x, i: gg.gather(x, -1, i),
           lambda x, i: np.take_along_axis(x, i, -1), matrix_last, consts=_index_const(-1, 1)),
    OpCase("take_along_dim", lambda x, i: gg.take_along_dim(x, i, 0),
           lambda x, i: np.take_along_axis(x, i, 0), matrix_last, consts=_index_const(0)),
    OpCase("index_select", lambda x: gg.index_select(x, 0, gg.tensor([0, 0, x.shape[0] - 1])),
           lambda x: x[[0, 0, x.shape[0] - 1]], matrix_last),
    OpCase("scatter", lambda x, s, i: gg.scatter(x, 0, i, s),
           lambda x, s, i: _np_scatter(x, i, s, 0), lambda rng: [random_shape(rng, 1)] * 2,
           consts=_perm_index_const(0)),
    OpCase("index_add", lambda x, s, i: gg.index_add(x, 1, i, s, alpha=1.5),
           lambda x, s, i: _np_along_1(x, i, 1.5 * s, "add"), _slices_shapes(False),
           consts=_slice_index_const(False)),
    OpCase("index_copy", lambda x, s, i: x.index_copy(1, i, s),
           lambda x, s, i: _np_along_1(x, i, s, "copy"), _slices_shapes(True),
           consts=_slice_index_const(True)),
    OpCase("index_fill", lambda x, v, i: x.index_fill(1, i, v) * gg.index_fill(x, -1, i, 0.5),
           lambda x, v, i: _np_along_1(x, i, v, "fill")
           * np.moveaxis(_np_along_1(np.moveaxis(x, -1, 1), i, 0.5, "fill"), 1, -1),
           lambda rng: [random_shape(rng, 2, 2), ()],
           consts=lambda rng, shapes: [gg.tensor(rng.integers(0, shapes[0][1], size=2))]),
    OpCase("index_put_accumulate", lambda x, v, i: gg.index_put(x, (i,), v, accumulate=True),
           lambda x, v, i: _np_index_put_add(x, v, i), _rows_and_value_shapes,
           consts=_row_index_const),
    OpCase("index_put_positions", lambda x, v, p: gg.ops.index_put(x, p, v),
           lambda x, v, p: _np_put_flat(x, v, p), _flat_positions_shapes,
           consts=_flat_positions_const),
    OpCase("inplace_selection", _inplace_selection, _inplace_selection_ref, _matrix_pair,
           consts=lambda rng, shapes: [gg.tensor(rng.random(shapes[0]) < 0.5)]),
    OpCase("scatter_add", lambda x, s, i: x.scatter_add(-1, i, s),
           lambda x, s, i: _np_scatter(x, i, s, x.ndim - 1, add=True),
           lambda rng: [random_shape(rng, 1)] * 2, consts=_index_const(-1)),
    OpCase("masked_fill", lambda x, m: x.masked_fill(m, 0.25),
           lambda x, m: np.where(m, 0.25, x), unary, consts=_mask_const),
    OpCase("masked_select", lambda x, m: gg.masked_select(x, m), lambda x, m: x[m], unary,
           consts=_mask_const),
    OpCase("tril_triu", lambda x: gg.tril(x, -1) + gg.triu(x, 1) * 2,
           lambda x: np.tril(x, -1) + 2 * np.triu(x, 1), lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("diagonal", lambda x: gg.diagonal(x, 1, -1, 0) + 0,
           lambda x: np.diagonal(x, 1, -1, 0) + 0, lambda rng: [random_shape(rng, 2, 3)]),
    OpCase("diag", lambda x: gg.diag(gg.diag(x, 1), -1), lambda x: np.diag(np.diag(x, 1), -1),
           lambda rng: [random_shape(rng, 1, 1)]),
    OpCase("sort", lambda x: gg.sort(x, 0, descending=True).values + x.sort().values,
           lambda x: _np_sort_desc(x, 0) + np.sort(x, -1), matrix_last, domain="away",
           smooth=False),
    OpCase("topk", lambda x: gg.topk(x, 2, dim=-1).values * gg.topk(x, 1, largest=False)[0],
           lambda x: _np_sort_desc(x)[..., :2] * np.sort(x)[..., :1], _at_least(2),
           domain="away", smooth=False),
    OpCase("outer", gg.outer, np.outer, lambda rng: [random_shape(rng, 1, 1)] * 2),
    OpCase("tensordot", lambda a, b: gg.tensordot(a, b, dims=([0], [1])),
           lambda a, b: np.tensordot(a, b, axes=([0], [1])),
           lambda rng: (lambda n, m, k: [(n, m), (k, n)])(*rng.integers(1, 4, size=3))),
    OpCase("meshgrid", lambda a, b: (lambda g: g[0] * g[1])(gg.meshgrid(a, b, indexing="xy")),
           lambda a, b: (lambda g: g[0] * g[1])(np.meshgrid(a, b, indexing="xy")),
           lambda rng: [random_shape(rng, 1, 1), random_shape(rng, 1, 1)]),
    *[OpCase(f"einsum_{kind}", lambda *xs, e=eq: gg.einsum(e, *xs),
             lambda *xs, e=eq: np.einsum(e, *xs), _einsum_shapes(kind))
      for kind, eq in _EINSUM.items()],
]


# -- NaN reductions, order statistics, distinct values, scatter_reduce --------------------------
def _nan_mask_const(dim):
    """A bool mask of the first input's shape (where a case puts NaNs) that leaves the first
    entry along ``dim`` of every slice alone, so that no slice is all NaN."""
    def make(rng, shapes):
        mask = rng.random(shapes[0]) < 0.4
        if mask.ndim:
            np.moveaxis(mask, dim, 0)[0] = False
        return [gg.tensor(mask)]
    return make


def _np_lower_median(x, axis=None, keepdims=False):
    if axis is None:
        flat = np.sort(x.ravel())
        return flat[(flat.size - 1) // 2]
    s = np.sort(x, axis=axis)
    out = np.take(s, [(x.shape[axis] - 1) // 2], axis=axis)
    return out if keepdims else np.squeeze(out, axis)


def _np_scatter_reduce(x, idx, src, dim, reduce, include_self=True):
    """torch.scatter_reduce by its definition, one element at a time."""
    out = x.astype(np.float64)
    groups = {}
    for pos in np.ndindex(*idx.shape):
        target = list(pos)
        target[dim] = idx[pos]
        groups.setdefault(tuple(target), []).append(src[pos])
    for target, values in groups.items():
        values = values + ([x[target]] if include_self else [])
        out[target] = {"sum": np.sum, "prod": np.prod, "mean": np.mean, "amax": np.max,
                       "amin": np.min}[reduce](values)
    return out


def _repeating_const(rng, shapes):
    """A float64 input of the first input's shape with repeated values (small integers)."""
    return [gg.tensor(rng.integers(-2, 3, size=shapes[0]).astype(np.float64))]


def _np_unique_consecutive_rows(c):
    keep = [0] + [k for k in range(1, c.shape[0]) if not np.array_equal(c[k], c[k - 1])]
    return c[keep]


def _sr(reduce, include_self=True):
    return lambda x, s, i: gg.scatter_reduce(x, -1, i, s, reduce, include_self=include_self)


def _np_sr(reduce, include_self=True):
    return lambda x, s, i: _np_scatter_reduce(x, i, s, x.ndim - 1, reduce, include_self)


_NAN = float("nan")

OPS += [
    OpCase("nansum", lambda x, m: gg.nansum(x.masked_fill(m, _NAN), -1) + x.nansum(),
           lambda x, m: np.nansum(np.where(m, np.nan, x), -1) + np.nansum(x), matrix_last,
           consts=_nan_mask_const(-1)),
    OpCase("nanmean", lambda x, m: x.masked_fill(m, _NAN).nanmean(0, keepdim=True)
           * gg.nanmean(x),
           lambda x, m: np.nanmean(np.where(m, np.nan, x), 0, keepdims=True) * np.mean(x),
           matrix_last, consts=_nan_mask_const(0)),
    OpCase("median_all", lambda x: gg.median(x) + x.nanmedian() * 2,
           lambda x: 3 * _np_lower_median(x), unary, domain="away", smooth=False),
    OpCase("median_dim", lambda x: x.median(-1, keepdim=True).values
           * gg.nanmedian(x, 0, keepdim=True)[0],
           lambda x: _np_lower_median(x, -1, True) * _np_lower_median(x, 0, True), matrix_last,
           domain="away", smooth=False),
    # distinct values: the mode is the smallest, at its own index
    OpCase("mode", lambda x: x.mode(0).values * 2 + gg.mode(x, keepdim=True)[0].sum(),
           lambda x: np.min(x, 0) * 2 + np.min(x, -1, keepdims=True).sum(), matrix_last,
           domain="away", smooth=False),
    OpCase("unique", lambda x, c: x * gg.unique(c).sum() + gg.unique_consecutive(c, dim=0).sum(),
           lambda x, c: x * np.unique(c).sum() + _np_unique_consecutive_rows(c).sum(),
           matrix_last, consts=_repeating_const),
    OpCase("scatter_reduce_sum", lambda x, s, i: _sr("sum")(x, s, i)
           + x.scatter_reduce(-1, i, s, "sum", include_self=False),
           lambda x, s, i: _np_sr("sum")(x, s, i) + _np_sr("sum", False)(x, s, i),
           lambda rng: [random_shape(rng, 1)] * 2, consts=_index_const(-1)),
    OpCase("scatter_reduce_mean", lambda x, s, i: _sr("mean")(x, s, i)
           * _sr("mean", False)(x, s, i),
           lambda x, s, i: _np_sr("mean")(x, s, i) * _np_sr("mean", False)(x, s, i),
           lambda rng: [random_shape(rng, 1)] * 2, consts=_index_const(-1)),
    OpCase("scatter_reduce_prod", lambda x, s, i: _sr("prod")(x, s, i)
           + _sr("prod", False)(x, s, i),
           lambda x, s, i: _np_sr("prod")(x, s, i) + _np_sr("prod", False)(x, s, i),
           lambda rng: [random_shape(rng, 1)] * 2, consts=_index_const(-1)),
    OpCase("scatter_reduce_prod_zero", lambda x, s, i: _sr("prod")(x - x[..., :1], s, i)
           + _sr("prod", False)(x, s - s[..., -1:], i),
           lambda x, s, i: _np_sr("prod")(x - x[..., :1], s, i)
           + _np_sr("prod", False)(x, s - s[..., -1:], i),
           lambda rng: [random_shape(rng, 1)] * 2, consts=_index_const(-1), torch_order=1),
    OpCase("scatter_reduce_amax_amin", lambda x, s, i: _sr("amax")(x, s, i)
           + _sr("amin", False)(x, s, i) * 2,
           lambda x, s, i: _np_sr("amax")(x, s, i) + 2 * _np_sr("amin", False)(x, s, i),
           lambda rng: [random_shape(rng, 1)] * 2, consts=_index_const(-1), domain="away",
           smooth=False),
]
