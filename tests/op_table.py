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


_ACT_REFS = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh,
             "sigmoid": lambda z: 1 / (1 + np.exp(-z)), "gelu": lambda z: _gelu_ref(z),
             "gelu_tanh": lambda z: _gelu_tanh_ref(z)}


def _activation_cases():
    """One case per row of the activation table for each of its ops: the activation, the
    fused bias form and (for the rows it takes) the fused linear form."""
    cases = []
    for name in gg.ops.ACTIVATIONS:
        ref = _ACT_REFS[name]
        kinked = name == "relu"
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
