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
    OpCase("max_axis", lambda x: gg.max(x, axis=-1), lambda x: np.max(x, axis=-1),
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
    OpCase("transpose", lambda x: x.transpose(), lambda x: x.transpose(), unary),
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
