"""A differential fuzzer: random programs of 3-12 ops, checked in float64.

Each program composes ops from ``FUZZ_OPS`` (every differentiable primitive, with
broadcasting, reductions over dims, views, indexing, and the transforms grad, vjp, jvp, hvp
and jacobian applied to closures over earlier values). For each one the fuzzer checks

- its value against a NumPy reference (and PyTorch's, where torch is installed);
- ``gg.grad`` and ``gg.vjp`` (reverse) and ``gg.jvp`` (forward) against central differences
  of the NumPy reference along random directions;
- ``gg.hvp`` forward-over-reverse and reverse-over-reverse against central differences of
  the gradient;
- ``gg.jacobian`` in forward and reverse mode against each other and against differences;
- gradient and Hessian-vector product against ``torch.func`` where torch is installed.

A failure is shrunk (steps removed, the output moved earlier, inputs rounded) and printed as
a runnable script. CI runs a few hundred programs from a fixed seed (tests/test_fuzz.py);
before a release::

    python -m tests.fuzz --programs 20000 [--seed 0] [--torch]

The op table is data (``FuzzOp`` rows, one or more per name of ``gpugrad.ops.__all__``):
tests/test_fuzz.py fails for an op that no row draws and that is not listed as reached
indirectly or left out (with the reason).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
import warnings
from dataclasses import dataclass, field, replace
from typing import Callable

import numpy as np

import gpugrad as gg
import gpugrad.nn.functional as F

MAX_STEPS = 12
MIN_STEPS = 3
VALUE_LIMIT = 1e3        # a program whose values leave this range is drawn again
KINK_MARGIN = 1e-3       # non-smooth ops must be this far from their kinks
EPS1 = 1e-6              # central differences, first order
EPS2 = 1e-5              # central differences of the gradient
SLOPE_LIMIT = 1e4        # derivatives beyond these are checked against each other (and
CURVATURE_LIMIT = 1e6    # PyTorch), not against differences


# -- programs ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Step:
    """``out = template(*args)``, with one template per library."""
    op: str
    out: str
    args: tuple
    gg: str
    np: str
    torch: str
    shape: tuple
    kink: str = None     # a NumPy expression that must stay away from 0 (non-smooth ops)


@dataclass
class Program:
    inputs: list                       # float64 arrays, named x0, x1, ...
    steps: list
    output: str
    weights: np.ndarray = None         # the scalar program is sum(program(...) * weights)

    def names(self):
        return [f"x{i}" for i in range(len(self.inputs))]

    def source(self, lib="gg"):
        lines = [f"def program({', '.join(self.names())}):"]
        for s in self.steps:
            lines.append(f"    {s.out} = {getattr(s, lib).format(*s.args)}")
        lines.append(f"    return {self.output}")
        return "\n".join(lines)

    def numpy_source(self):
        lines = [f"def program({', '.join(self.names())}):", "    kinks = []"]
        for s in self.steps:
            lines.append(f"    {s.out} = np.asarray({s.np.format(*s.args)}, dtype=_DT)")
            if s.kink:
                lines.append(f"    kinks.append(np.min(np.abs({s.kink.format(*s.args)}),"
                             " initial=np.inf))")
            lines.append(f"    kinks.append(-np.max(np.abs({s.out}), initial=0.0))")
        lines.append(f"    return {self.output}, kinks")
        return "\n".join(lines)


def _sig(x):
    return 1 / (1 + np.exp(-x))


def _softmax(x, axis):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def _log_softmax(x, axis):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def _logsumexp(x, axis, keepdims):
    m = np.max(x, axis=axis, keepdims=True)
    out = np.log(np.exp(x - m).sum(axis=axis, keepdims=True)) + m
    return out if keepdims else np.squeeze(out, axis=axis)


def _last(x, axis):
    """x with the axes ``axis`` (None: all) moved to the end and merged into one."""
    x = np.asarray(x)
    if axis is None:
        return x.reshape(1, -1)
    axes = [a % x.ndim for a in (axis if isinstance(axis, tuple) else (axis,))]
    rest = [i for i in range(x.ndim) if i not in axes]
    y = np.transpose(x, rest + axes)
    return y.reshape(y.shape[:len(rest)] + (-1,))


def _top_gap(x, axis=None):
    """The gap between the largest and second-largest entries over ``axis`` (ties are the
    kinks of max)."""
    s = np.sort(_last(x, axis), axis=-1)
    if s.shape[-1] < 2 or s.size == 0:
        return np.inf
    return np.min(s[..., -1] - s[..., -2])


def _min_gap(x, axis=None):
    """The smallest gap between two entries over ``axis`` (ties are the kinks of sort)."""
    s = np.sort(_last(x, axis), axis=-1)
    if s.shape[-1] < 2 or s.size == 0:
        return np.inf
    return np.min(np.diff(s, axis=-1))


def _to_integer(x):
    """Distance to the nearest integer (the jumps of floor, ceil, trunc, fmod, ...)."""
    return x - np.round(x)


def _grid(index, axis):
    """The positions torch.scatter and gather address: ``index`` along ``axis``, the
    index's own position along every other axis."""
    index = np.asarray(index)
    return tuple(index if d == axis % index.ndim else np.indices(index.shape)[d]
                 for d in range(index.ndim))


def _scatter(x, axis, index, src):
    out = np.array(x, copy=True)
    out[_grid(index, axis)] = src
    return out


def _scatter_add(x, axis, index, src):
    out = np.array(x, copy=True)
    np.add.at(out, _grid(index, axis), src)
    return out


def _scatter_reduce(x, axis, index, src, reduce, include_self):
    out = np.array(x, copy=True)
    grid = _grid(index, axis)
    src = np.asarray(src)[tuple(slice(0, n) for n in np.shape(index))]
    count = np.full(out.shape, 1 if include_self else 0)
    np.add.at(count, grid, 1)
    if not include_self:
        out[grid] = 1 if reduce == "prod" else 0
    (np.multiply if reduce == "prod" else np.add).at(out, grid, src)
    return out / np.maximum(count, 1) if reduce == "mean" else out


def _masked_scatter(x, mask, src):
    out = np.array(x, copy=True)
    m = np.broadcast_to(np.asarray(mask), out.shape)
    out[m] = np.ravel(src)[:int(m.sum())]
    return out


def _diag_embed(x, offset):
    n = x.shape[-1] + abs(offset)
    out = np.zeros(x.shape[:-1] + (n, n), dtype=x.dtype)
    i = np.arange(x.shape[-1])
    out[..., i + max(-offset, 0), i + max(offset, 0)] = x
    return out


def _layer_norm(x, k, w, b, eps):
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y


def _sum_to(x, shape):
    lead = x.ndim - len(shape)
    x = x.sum(axis=tuple(range(lead))) if lead else x
    axes = tuple(i for i, s in enumerate(shape) if s == 1 and x.shape[i] != 1)
    return x.sum(axis=axes, keepdims=True) if axes else x


def _np_put(x, index, value):
    out = np.array(x, copy=True)
    out[index] = value
    return out


def _put(x, index, value):
    """x[index] = value on a copy (recorded as an in-place write: gpugrad and PyTorch)."""
    out = x.clone()
    out[index] = value
    return out


def _iadd_view(x, value):
    """value added in place into row 0 of a copy of x, through a view."""
    out = x.clone()
    row = out[0]
    row += value
    return out


def _imul(x, value):
    out = x * 1.0
    out *= value
    return out


def _np_iadd_view(x, value):
    out = np.array(x, copy=True)
    out[0] += value
    return out


def _torch_masked_scatter(x, mask, source):
    """torch.masked_scatter with Tensor methods only (PyTorch's own lacks forward mode for
    a source shaped unlike x)."""
    m = mask.expand(x.shape)
    index = (m.reshape(-1).long().cumsum(0) - 1).clamp(min=0)
    return source.reshape(-1)[index].reshape(x.shape).where(m, x)


def _dropout_mask(shape, p, seed):
    """The mask (zeros and 1 / (1 - p)) that gg.ops.dropout draws for ``seed``."""
    ones = gg.ones(shape, dtype=gg.float64)
    return gg.ops.dropout(ones, p, seed=seed, offset=0).numpy()


def _split_range(n, kind, arg, piece):
    """The index range of piece ``piece`` when an axis of size n is cut as
    torch.chunk/split/tensor_split do."""
    if kind == "chunk":
        size = -(-n // arg)
        bounds = list(range(0, n, size)) + [n]
    elif kind == "split" and isinstance(arg, int):
        bounds = list(range(0, n, arg)) + [n]
    elif kind == "split":
        bounds = [0] + list(np.cumsum(arg))
    elif isinstance(arg, int):                       # tensor_split into arg sections
        sizes = [n // arg + (1 if i < n % arg else 0) for i in range(arg)]
        bounds = [0] + list(np.cumsum(sizes))
    else:                                            # tensor_split at indices
        bounds = [0] + [min(i, n) for i in arg] + [n]
    return list(range(int(bounds[piece]), max(int(bounds[piece + 1]), int(bounds[piece]))))


_erf = np.vectorize(math.erf)
_NP_ACT = {
    "none": "{}",
    "relu": "np.maximum({}, 0)",
    "tanh": "np.tanh({})",
    "sigmoid": "_sig({})",
    "gelu": "(0.5 * ({0}) * (1 + _erf(({0}) / math.sqrt(2))))",
    "gelu_tanh": "(0.5 * ({0}) * (1 + np.tanh(math.sqrt(2 / math.pi) * (({0}) + 0.044715 * "
                 "({0}) ** 3))))",
}
_TORCH_ACT = {
    "none": "{}", "relu": "torch.relu({})", "tanh": "torch.tanh({})",
    "sigmoid": "torch.sigmoid({})", "gelu": "torch.nn.functional.gelu({})",
    "gelu_tanh": "torch.nn.functional.gelu({}, approximate='tanh')",
}


def _xent(z, labels):
    return -_log_softmax(z, -1)[np.arange(z.shape[0]), labels].mean()


NP_NAMESPACE = {"np": np, "math": math, "_sig": _sig, "_softmax": _softmax,
                "_log_softmax": _log_softmax, "_logsumexp": _logsumexp, "_erf": _erf,
                "_xent": _xent, "_top_gap": _top_gap, "_min_gap": _min_gap,
                "_to_integer": _to_integer, "_scatter": _scatter, "_scatter_add": _scatter_add,
                "_scatter_reduce": _scatter_reduce,
                "_masked_scatter": _masked_scatter, "_diag_embed": _diag_embed,
                "_layer_norm": _layer_norm, "_sum_to": _sum_to, "_put": _np_put,
                "_iadd_view": _np_iadd_view, "_dropout_mask": _dropout_mask, "_DT": np.float64}
# differences are taken in extended precision where the platform has it (x86: 64-bit
# mantissa), so that rounding in steep intermediates does not swamp them
FD_NAMESPACE = dict(NP_NAMESPACE, _DT=np.longdouble)
# what the gpugrad and PyTorch programs call besides their library
_SHARED = {"np": np, "_put": _put, "_iadd_view": _iadd_view, "_imul": _imul,
           "_dropout_mask": _dropout_mask, "_torch_masked_scatter": _torch_masked_scatter}


# -- the op table --------------------------------------------------------------------------------
@dataclass
class FuzzOp:
    """One row: the primitive(s) it exercises, and how to draw a step using it.

    ``make(rng, values, out)`` gets the shapes of the values so far ({name: shape}) and
    returns a Step, or None when nothing fits."""
    name: str
    make: Callable
    exercises: tuple = field(default=())


def _pick(rng, values, ok=lambda s: True):
    names = [n for n, s in values.items() if ok(s)]
    return names[int(rng.integers(len(names)))] if names else None


def _broadcasts_into(small, big):
    try:
        return np.broadcast_shapes(small, big) == tuple(big)
    except ValueError:
        return False


def _broadcasts(*shapes):
    try:
        np.broadcast_shapes(*shapes)
        return True
    except ValueError:
        return False


def _numel(shape):
    return int(np.prod(shape, dtype=np.int64))


def _torch_of(template):
    """The PyTorch spelling of a template written with PyTorch's names under gg."""
    return template.replace("gg.ops.", "torch.").replace("gg.", "torch.")


def _unary(name, gg_t, np_t, torch_t=None, kink=None, exercises=()):
    def make(rng, values, out):
        a = _pick(rng, values)
        return Step(name, out, (a,), gg_t, np_t, torch_t or _torch_of(gg_t), values[a], kink)
    return FuzzOp(name, make, exercises)


def _binary(name, gg_t, np_t, torch_t=None, kink=None, exercises=()):
    def make(rng, values, out):
        a = _pick(rng, values)
        b = _pick(rng, values, lambda s: _broadcasts(s, values[a]))
        if rng.random() < 0.5:
            a, b = b, a
        shape = np.broadcast_shapes(values[a], values[b])
        return Step(name, out, (a, b), gg_t, np_t, torch_t or _torch_of(gg_t), shape, kink)
    return FuzzOp(name, make, exercises)


# maps of x into a function's domain, written so that gpugrad, NumPy and PyTorch read them
BOUNDED = "({0} / ({0} * {0} + 1.5))"          # into (-0.41, 0.41)
POSITIVE = "({0} * {0} + 0.5)"
ABOVE_ONE = "({0} * {0} + 1.5)"


def _function(name, np_fn, domain="{0}", torch_name=None, gg_fn=None):
    """name applied to x mapped into its domain."""
    inner = domain
    gg_t = f"{gg_fn or 'gg.' + name}({inner})"
    torch_t = f"torch.{torch_name or name}({inner})"
    return _unary(name, gg_t, f"{np_fn}({inner})", torch_t)


def _steps_fn(name, np_fn, kink):
    """A piecewise constant function, added to x so that gradients still flow."""
    gg_t = f"({{0}} + gg.{name}({{0}}))"
    return _unary(name, gg_t, f"({{0}} + {np_fn}({{0}}))", _torch_of(gg_t), kink=kink)


def _make_round(rng, values, out):
    a = _pick(rng, values)
    d = int(rng.integers(0, 2))
    scale = 10 ** d
    return Step("round", out, (a,), f"({{0}} + gg.round({{0}}, decimals={d}))",
                f"({{0}} + np.round({{0}}, {d}))",
                f"({{0}} + torch.round({{0}}, decimals={d}))", values[a],
                f"{{0}} * {scale} - np.floor({{0}} * {scale}) - 0.5")


def _activation(name, gg_t, np_t, torch_t, kink=None, params=None):
    def make(rng, values, out):
        a = _pick(rng, values)
        p = params(rng) if params else {}
        return Step(name, out, (a,), gg_t.format("{0}", **p), np_t.format("{0}", **p),
                    torch_t.format("{0}", **p), values[a],
                    kink.format("{0}", **p) if kink else None)
    return FuzzOp(name, make)


def _compare(name, np_name, kink="{0} - {1}"):
    """A comparison as the mask of a where: both branches differentiable."""
    gg_t = f"gg.where(gg.{name}({{0}}, {{1}}), {{0}}, {{1}})"
    return _binary(name, gg_t, f"np.where(np.{np_name}({{0}}, {{1}}), {{0}}, {{1}})",
                   kink=kink)


def _logical(name):
    def make(rng, values, out):
        a = _pick(rng, values)
        b = _pick(rng, values, lambda s: _broadcasts(s, values[a]))
        lo, hi = (float(v) for v in np.round(rng.uniform(-1, 1, size=2), 2))
        shape = np.broadcast_shapes(values[a], values[b])
        if name == "logical_not":
            gg_t = f"gg.where(gg.logical_not({{0}} > {lo}), {{0}}, {{1}})"
            np_t = f"np.where(np.logical_not({{0}} > {lo}), {{0}}, {{1}})"
            kink = f"{{0}} - {lo}"
        else:
            gg_t = f"gg.where(gg.{name}({{0}} > {lo}, {{1}} < {hi}), {{0}}, {{1}})"
            np_t = f"np.where(np.{name}({{0}} > {lo}, {{1}} < {hi}), {{0}}, {{1}})"
            kink = f"np.minimum(np.abs({{0}} - {lo}), np.abs({{1}} - {hi}))"
        return Step(name, out, (a, b), gg_t, np_t, _torch_of(gg_t), shape, kink)
    return FuzzOp(name, make)


def _classify(name):
    """isfinite and friends: constant masks on finite values."""
    gg_t = f"gg.where(gg.{name}({{0}}), {{0}}, {{0}} * 2)"
    return _unary(name, gg_t, f"np.where(np.{name}({{0}}), {{0}}, {{0}} * 2)")


def _make_isclose(rng, values, out):
    a = _pick(rng, values)
    b = _pick(rng, values, lambda s: _broadcasts(s, values[a]))
    shape = np.broadcast_shapes(values[a], values[b])
    gg_t = "gg.where(gg.isclose({0}, {1}), {0}, {1} * 2)"
    return Step("isclose", out, (a, b), gg_t, "np.where(np.isclose({0}, {1}), {0}, {1} * 2)",
                _torch_of(gg_t), shape,
                None if a == b else "np.abs({0} - {1}) - (1e-8 + 1e-5 * np.abs({1}))")


def _make_whole_compare(name):
    """equal and allclose give a Python bool: a branch of the program."""
    def make(rng, values, out):
        a = _pick(rng, values)
        ok = (lambda s: s == values[a]) if name == "equal" else \
            (lambda s: _broadcasts_into(s, values[a]))
        b = _pick(rng, values, ok)
        np_name = "array_equal" if name == "equal" else "allclose"
        kink = None if name == "equal" or a == b else \
            "np.max(np.abs({0} - {1}) - (1e-8 + 1e-5 * np.abs({1})))"
        gg_t = f"({{0}} * 1.5 if gg.{name}({{0}}, {{1}}) else {{0}} * 0.5)"
        return Step(name, out, (a, b), gg_t,
                    f"({{0}} * 1.5 if np.{np_name}({{0}}, {{1}}) else {{0}} * 0.5)",
                    _torch_of(gg_t), values[a], kink)
    return FuzzOp(name, make)


def _make_all_any(name):
    def make(rng, values, out):
        a = _pick(rng, values)
        shape = values[a]
        level = float(np.round(rng.uniform(-1, 1), 2))
        if shape and rng.random() < 0.7:
            d = int(rng.integers(-len(shape), len(shape)))
            call = f"gg.{name}({{0}} > {level}, dim={d}, keepdim=True)"
            np_call = f"np.{name}({{0}} > {level}, axis={d}, keepdims=True)"
        else:
            call = f"gg.{name}({{0}} > {level})"
            np_call = f"np.{name}({{0}} > {level})"
        gg_t = f"gg.where({call}, {{0}}, -{{0}})"
        return Step(name, out, (a,), gg_t, f"np.where({np_call}, {{0}}, -{{0}})",
                    _torch_of(gg_t), shape, f"{{0}} - {level}")
    return FuzzOp(name, make)


def _axis_choice(rng, ndim, allow_tuple=True, allow_none=True):
    """None, one axis (maybe negative) or a tuple of axes."""
    if ndim == 0 or allow_none and rng.random() < 0.2:
        return None
    if allow_tuple and ndim >= 2 and rng.random() < 0.3:
        axes = tuple(sorted(int(a) for a in rng.choice(ndim, size=2, replace=False)))
        return axes
    return int(rng.integers(-ndim, ndim))


def _reduced_shape(shape, axis, keepdims):
    if axis is None:
        axes = tuple(range(len(shape)))
    else:
        axes = tuple(a % len(shape) for a in (axis if isinstance(axis, tuple) else (axis,)))
    if keepdims:
        return tuple(1 if i in axes else s for i, s in enumerate(shape))
    return tuple(s for i, s in enumerate(shape) if i not in axes)


def _reduction(name, gg_fn, np_fn, torch_fn, allow_tuple=True, kink_fn=None, extra=None,
               torch_whole=None):
    """A reduction over None, an axis or a tuple of axes; ``extra(rng)`` draws further
    arguments ({name: (gg, numpy, torch) spellings}); ``torch_whole``: PyTorch's spelling
    of the reduction over everything, where it takes no tuple of dims."""
    def make(rng, values, out):
        a = _pick(rng, values)
        shape = values[a]
        axis = _axis_choice(rng, len(shape), allow_tuple)
        keep = bool(rng.random() < 0.4)
        torch_axis = tuple(range(len(shape))) if axis is None else axis
        more = extra(rng) if extra else {}
        g, n, t = ({k: v[i] for k, v in more.items()} for i in range(3))
        kink = kink_fn(axis, **n) if kink_fn else None
        new = _reduced_shape(shape, axis, keep)
        torch_t = torch_fn.format(axis=torch_axis, keep=keep, **t)
        if axis is None and torch_whole:
            torch_t = torch_whole.format(shape=new)
        return Step(name, out, (a,), gg_fn.format(axis=axis, keep=keep, **g),
                    np_fn.format(axis=axis, keep=keep, **n), torch_t, new, kink)
    return FuzzOp(name, make)


def _correction(rng):
    c = int(rng.integers(0, 2))
    return {"c": (c, c, c)}


def _norm_order(rng):
    p = [1, 2, 3, "inf"][int(rng.integers(4))]
    spelled = "float('inf')" if p == "inf" else str(p)
    return {"p": (spelled, "np.inf" if p == "inf" else str(p), spelled)}


def _make_max_like(name):
    """max/min: of everything, or along a dim as (values, indices)."""
    top = name == "max"

    def make(rng, values, out):
        a = _pick(rng, values)
        shape = values[a]
        sign = "" if top else "-"
        if not shape or rng.random() < 0.3:
            return Step(name, out, (a,), f"gg.{name}({{0}})", f"np.{name}({{0}})",
                        f"torch.{name}({{0}})", (), f"_top_gap({sign}{{0}})")
        d = int(rng.integers(-len(shape), len(shape)))
        keep = bool(rng.random() < 0.4)
        t = f"gg.{name}({{0}}, dim={d}, keepdim={keep}).values"
        return Step(name, out, (a,), t, f"np.{name}({{0}}, axis={d}, keepdims={keep})",
                    _torch_of(t), _reduced_shape(shape, d, keep), f"_top_gap({sign}{{0}}, {d})")
    return FuzzOp(name, make)


def _with_dim(rng, values, min_ndim=1):
    a = _pick(rng, values, lambda s: len(s) >= min_ndim)
    if a is None:
        return None, None, None
    shape = values[a]
    return a, shape, int(rng.integers(-len(shape), len(shape)))


def _make_scan(name, np_t):
    def make(rng, values, out):
        a, shape, d = _with_dim(rng, values)
        if a is None:
            return None
        t = f"gg.{name}({{0}}, dim={d})"
        return Step(name, out, (a,), t, np_t.format(d=d), _torch_of(t), shape)
    return FuzzOp(name, make)


def _make_sort(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    desc = bool(rng.random() < 0.5)
    t = f"gg.sort({{0}}, dim={d}, descending={desc}).values"
    np_t = f"np.flip(np.sort({{0}}, axis={d}), axis={d})" if desc else \
        f"np.sort({{0}}, axis={d})"
    return Step("sort", out, (a,), t, np_t, _torch_of(t), shape, f"_min_gap({{0}}, {d})")


def _make_argsort(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    desc = bool(rng.random() < 0.5)
    t = f"gg.take_along_dim({{0}}, gg.argsort({{0}}, dim={d}, descending={desc}), dim={d})"
    np_t = f"np.flip(np.sort({{0}}, axis={d}), axis={d})" if desc else \
        f"np.sort({{0}}, axis={d})"
    return Step("argsort", out, (a,), t, np_t, _torch_of(t), shape, f"_min_gap({{0}}, {d})")


def _make_msort(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    return Step("msort", out, (a,), "gg.msort({0})", "np.sort({0}, axis=0)", "torch.msort({0})",
                values[a], "_min_gap({0}, 0)")


def _make_topk(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    k = int(rng.integers(1, shape[d] + 1))
    largest = bool(rng.random() < 0.6)
    t = f"gg.topk({{0}}, {k}, dim={d}, largest={largest}).values"
    s = f"np.sort({{0}}, axis={d})"
    np_t = f"np.take(np.flip({s}, axis={d}), range({k}), axis={d})" if largest else \
        f"np.take({s}, range({k}), axis={d})"
    new = tuple(k if i == d % len(shape) else n for i, n in enumerate(shape))
    return Step("topk", out, (a,), t, np_t, _torch_of(t), new, f"_min_gap({{0}}, {d})")


def _make_kthvalue(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    k = int(rng.integers(1, shape[d] + 1))
    keep = bool(rng.random() < 0.4)
    t = f"gg.kthvalue({{0}}, {k}, dim={d}, keepdim={keep}).values"
    np_t = f"np.take(np.sort({{0}}, axis={d}), [{k - 1}] if {keep} else {k - 1}, axis={d})"
    return Step("kthvalue", out, (a,), t, np_t, _torch_of(t), _reduced_shape(shape, d, keep),
                f"_min_gap({{0}}, {d})")


def _make_arg_extreme(name):
    def make(rng, values, out):
        a, shape, d = _with_dim(rng, values)
        if a is None:
            return None
        t = f"gg.take_along_dim({{0}}, gg.{name}({{0}}, dim={d}, keepdim=True), dim={d})"
        np_fn = "np.max" if name == "argmax" else "np.min"
        sign = "" if name == "argmax" else "-"
        return Step(name, out, (a,), t, f"{np_fn}({{0}}, axis={d}, keepdims=True)",
                    _torch_of(t), _reduced_shape(shape, d, True), f"_top_gap({sign}{{0}}, {d})")
    return FuzzOp(name, make)


def _softmax_like(name, gg_fn, np_fn, torch_fn):
    def make(rng, values, out):
        a, shape, d = _with_dim(rng, values)
        if a is None:
            return None
        return Step(name, out, (a,), f"{gg_fn}({{0}}, dim={d})", f"{np_fn}({{0}}, {d})",
                    f"{torch_fn}({{0}}, dim={d})", shape)
    return FuzzOp(name, make)


# -- movement and selection -----------------------------------------------------------------------
def _make_reshape(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    n = _numel(shape)
    choices = [(n,), (1, n), (n, 1), (-1,)]
    if n % 2 == 0 and n > 2:
        choices.append((2, n // 2))
        choices.append((-1, 2))
    target = choices[int(rng.integers(len(choices)))]
    real = tuple(n if s == -1 and len(target) == 1 else (n // 2 if s == -1 else s)
                 for s in target)
    t = str(target)
    return Step("reshape", out, (a,), f"gg.reshape({{0}}, {t})", f"np.reshape({{0}}, {t})",
                f"torch.reshape({{0}}, {t})", real)


def _make_transpose(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 2)
    if a is None:
        return None
    nd = len(values[a])
    d0, d1 = (int(d) for d in rng.choice(nd, size=2, replace=False))
    d0 -= nd * int(rng.integers(2))           # negative dims too
    shape = list(values[a])
    shape[d0], shape[d1] = shape[d1], shape[d0]
    t = f"gg.transpose({{0}}, {d0}, {d1})"
    return Step("transpose", out, (a,), t, f"np.swapaxes({{0}}, {d0}, {d1})", _torch_of(t),
                tuple(shape))


def _make_permute(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 2)
    if a is None:
        return None
    nd = len(values[a])
    perm = tuple(int(p) for p in rng.permutation(nd))
    shape = tuple(values[a][p] for p in perm)
    t = f"gg.permute({{0}}, {perm})"
    return Step("permute", out, (a,), t, f"np.transpose({{0}}, {perm})", _torch_of(t), shape)


def _make_swap_last(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 2)
    if a is None:
        return None
    shape = values[a][:-2] + (values[a][-1], values[a][-2])
    return Step("swap_last", out, (a,), "gg.ops.swap_last({0})", "np.swapaxes({0}, -1, -2)",
                "{0}.transpose(-1, -2)", shape)


def _make_moveaxis(name):
    def make(rng, values, out):
        a = _pick(rng, values, lambda s: len(s) >= 2)
        if a is None:
            return None
        nd = len(values[a])
        src, dst = (int(d) for d in rng.integers(0, nd, size=2))
        shape = np.moveaxis(np.zeros(values[a]), src, dst).shape
        t = f"gg.{name}({{0}}, {src}, {dst})"
        return Step(name, out, (a,), t, f"np.moveaxis({{0}}, {src}, {dst})", _torch_of(t), shape)
    return FuzzOp(name, make)


def _grown_shape(rng, shape):
    return (2,) + tuple(s if s != 1 or rng.random() < 0.5 else 3 for s in shape)


def _make_broadcast_to(rng, values, out):
    a = _pick(rng, values)
    shape = _grown_shape(rng, values[a])
    return Step("broadcast_to", out, (a,), f"gg.broadcast_to({{0}}, {shape})",
                f"np.broadcast_to({{0}}, {shape})", f"{{0}}.expand{shape}.clone()", shape)


def _make_expand(rng, values, out):
    a = _pick(rng, values)
    shape = _grown_shape(rng, values[a])
    sizes = tuple(-1 if i > 0 and s == values[a][i - 1] and rng.random() < 0.5 else s
                  for i, s in enumerate(shape))
    return Step("expand", out, (a,), f"gg.ops.expand({{0}}, *{sizes})",
                f"np.broadcast_to({{0}}, {shape})", f"{{0}}.expand{sizes}", shape)


def _make_expand_as(rng, values, out):
    a = _pick(rng, values)
    b = _pick(rng, values, lambda s: _broadcasts_into(values[a], s))
    return Step("expand_as", out, (a, b), "gg.ops.expand_as({0}, {1})",
                "np.broadcast_to({0}, np.shape({1}))", "{0}.expand_as({1})", values[b])


def _make_view_as(rng, values, out):
    a = _pick(rng, values)
    b = _pick(rng, values, lambda s: _numel(s) == _numel(values[a]))
    return Step("view_as", out, (a, b), "gg.ops.view_as({0}, {1})",
                "np.reshape({0}, np.shape({1}))", "{0}.reshape({1}.shape)", values[b])


def _make_flatten(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    nd = max(len(shape), 1)
    start = int(rng.integers(0, nd))
    end = int(rng.integers(start, nd))
    new = shape[:start] + ((_numel(shape[start:end + 1]),) if shape else (1,)) + \
        shape[end + 1:]
    t = f"gg.flatten({{0}}, {start}, {end})"
    return Step("flatten", out, (a,), t, f"np.reshape({{0}}, {new})", _torch_of(t), new)


def _make_unflatten(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    n = shape[d]
    sizes = [(1, n), (n, 1), (-1, 1)] + ([(2, -1), (2, n // 2)] if n % 2 == 0 else [])
    sizes = sizes[int(rng.integers(len(sizes)))]
    real = tuple(n // _numel([s for s in sizes if s != -1]) if s == -1 else s for s in sizes)
    ax = d % len(shape)
    new = shape[:ax] + real + shape[ax + 1:]
    t = f"gg.unflatten({{0}}, {d}, {sizes})"
    return Step("unflatten", out, (a,), t, f"np.reshape({{0}}, {new})", _torch_of(t), new)


def _make_squeeze(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    if shape and rng.random() < 0.7:
        d = int(rng.integers(-len(shape), len(shape)))
        new = tuple(s for i, s in enumerate(shape) if i != d % len(shape) or s != 1)
        t = f"gg.squeeze({{0}}, {d})"
    else:
        new = tuple(s for s in shape if s != 1)
        t = "gg.squeeze({0})"
    return Step("squeeze", out, (a,), t, f"np.reshape({{0}}, {new})", _torch_of(t), new)


def _make_unsqueeze(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    d = int(rng.integers(-len(shape) - 1, len(shape) + 1))
    ax = d % (len(shape) + 1)
    t = f"gg.unsqueeze({{0}}, {d})"
    return Step("unsqueeze", out, (a,), t, f"np.expand_dims({{0}}, {d})", _torch_of(t),
                shape[:ax] + (1,) + shape[ax:])


def _make_flip(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    nd = len(values[a])
    dims = tuple(int(d) for d in rng.choice(nd, size=int(rng.integers(1, nd + 1)),
                                            replace=False))
    t = f"gg.flip({{0}}, {dims})"
    return Step("flip", out, (a,), t, f"np.flip({{0}}, axis={dims})", _torch_of(t), values[a])


def _make_flip_side(name):
    need = 2 if name == "fliplr" else 1

    def make(rng, values, out):
        a = _pick(rng, values, lambda s: len(s) >= need)
        if a is None:
            return None
        t = f"gg.{name}({{0}})"
        return Step(name, out, (a,), t, f"np.{name}({{0}})", _torch_of(t), values[a])
    return FuzzOp(name, make)


def _make_roll(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    if rng.random() < 0.3:
        s = int(rng.integers(-3, 4))
        t = f"gg.roll({{0}}, {s})"
        np_t = f"np.roll({{0}}, {s})"
    else:
        d = int(rng.integers(-len(shape), len(shape)))
        s = int(rng.integers(-3, 4))
        t = f"gg.roll({{0}}, {s}, {d})"
        np_t = f"np.roll({{0}}, {s}, axis={d})"
    return Step("roll", out, (a,), t, np_t, _torch_of(t), shape)


def _make_narrow(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    n = shape[d]
    start = int(rng.integers(0, n))
    length = int(rng.integers(1, n - start + 1))
    new = tuple(length if i == d % len(shape) else s for i, s in enumerate(shape))
    t = f"gg.narrow({{0}}, {d}, {start}, {length})"
    return Step("narrow", out, (a,), t, f"np.take({{0}}, range({start}, {start + length}), "
                f"axis={d})", _torch_of(t), new)


def _make_piece(name):
    """One piece of chunk, split, tensor_split or unbind."""
    def make(rng, values, out):
        a, shape, d = _with_dim(rng, values)
        if a is None:
            return None
        n = shape[d]
        if name == "unbind":
            i = int(rng.integers(0, n))
            t = f"gg.unbind({{0}}, {d})[{i}]"
            new = tuple(s for k, s in enumerate(shape) if k != d % len(shape))
            return Step(name, out, (a,), t, f"np.take({{0}}, {i}, axis={d})", _torch_of(t), new)
        if name == "chunk":
            arg = int(rng.integers(1, n + 2))
        elif name == "split":
            if rng.random() < 0.5:
                arg = int(rng.integers(1, n + 1))
            else:
                cut = int(rng.integers(0, n + 1))
                arg = [cut, n - cut]
        else:
            if rng.random() < 0.5:
                arg = int(rng.integers(1, n + 2))
            else:
                arg = sorted(int(i) for i in rng.integers(0, n + 1, size=2))
        kind = name
        pieces = []
        k = 0
        while True:
            try:
                r = _split_range(n, kind, arg, k)
            except IndexError:
                break
            pieces.append(r)
            k += 1
        nonempty = [i for i, r in enumerate(pieces) if r]
        if not nonempty:
            return None
        i = nonempty[int(rng.integers(len(nonempty)))]
        rows = pieces[i]
        new = tuple(len(rows) if k == d % len(shape) else s for k, s in enumerate(shape))
        t = f"gg.{name}({{0}}, {arg}, dim={d})[{i}]"
        return Step(name, out, (a,), t, f"np.take({{0}}, {rows}, axis={d})", _torch_of(t), new)
    return FuzzOp(name, make)


def _make_tile(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    reps = tuple(int(r) for r in rng.integers(1, 3, size=int(rng.integers(1, len(shape) + 2))))
    new = np.tile(np.zeros(shape), reps).shape
    t = f"gg.tile({{0}}, {reps})"
    return Step("tile", out, (a,), t, f"np.tile({{0}}, {reps})", _torch_of(t), new)


def _make_repeat(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    reps = tuple(int(r) for r in rng.integers(1, 3, size=len(shape) + int(rng.integers(0, 2))))
    if not reps:
        reps = (2,)
    new = np.tile(np.zeros(shape), reps).shape
    return Step("repeat", out, (a,), f"gg.ops.repeat({{0}}, *{reps})",
                f"np.tile({{0}}, {reps})", f"{{0}}.repeat{reps}", new)


def _make_repeat_interleave(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    if not shape or rng.random() < 0.3:
        r = int(rng.integers(1, 3))
        t = f"gg.repeat_interleave({{0}}, {r})"
        return Step("repeat_interleave", out, (a,), t, f"np.repeat({{0}}, {r})", _torch_of(t),
                    (_numel(shape) * r,))
    d = int(rng.integers(-len(shape), len(shape)))
    counts = [int(c) for c in rng.integers(0, 3, size=shape[d])]
    new = tuple(sum(counts) if i == d % len(shape) else s for i, s in enumerate(shape))
    t = f"gg.repeat_interleave({{0}}, gg.tensor({counts}), dim={d})"
    return Step("repeat_interleave", out, (a,), t, f"np.repeat({{0}}, {counts}, axis={d})",
                _torch_of(t), new)


def _make_diag(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) in (1, 2))
    if a is None:
        return None
    shape = values[a]
    k = int(rng.integers(-1, 2))
    new = np.diag(np.zeros(shape), k).shape
    if 0 in new:
        return None
    t = f"gg.diag({{0}}, {k})"
    return Step("diag", out, (a,), t, f"np.diag({{0}}, {k})", _torch_of(t), new)


def _make_diag_embed(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    k = int(rng.integers(-1, 2))
    n = shape[-1] + abs(k)
    t = f"gg.diag_embed({{0}}, {k})"
    return Step("diag_embed", out, (a,), t, f"_diag_embed({{0}}, {k})", _torch_of(t),
                shape[:-1] + (n, n))


def _make_diagonal(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 2)
    if a is None:
        return None
    shape = values[a]
    d1, d2 = (int(d) for d in rng.choice(len(shape), size=2, replace=False))
    k = int(rng.integers(-1, 2))
    new = np.diagonal(np.zeros(shape), k, d1, d2).shape
    if 0 in new:
        return None
    t = f"gg.diagonal({{0}}, {k}, {d1}, {d2})"
    return Step("diagonal", out, (a,), t, f"np.diagonal({{0}}, {k}, {d1}, {d2})", _torch_of(t),
                new)


def _make_trace(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) == 2)
    if a is None:
        return None
    return Step("trace", out, (a,), "gg.trace({0})", "np.trace({0})", "torch.trace({0})", ())


def _make_triangle(name):
    def make(rng, values, out):
        a = _pick(rng, values, lambda s: len(s) >= 2)
        if a is None:
            return None
        k = int(rng.integers(-1, 2))
        t = f"gg.{name}({{0}}, {k})"
        return Step(name, out, (a,), t, f"np.{name}({{0}}, {k})", _torch_of(t), values[a])
    return FuzzOp(name, make)


_NP_PAD = {"constant": "constant", "reflect": "reflect", "replicate": "edge",
           "circular": "wrap"}


def _make_pad(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    mode = list(_NP_PAD)[int(rng.integers(4))]
    dims = int(rng.integers(1, min(len(shape), 2) + 1))
    widths = []
    for s in shape[::-1][:dims]:
        top = s - 1 if mode == "reflect" else (s if mode == "circular" else 2)
        widths += [int(w) for w in rng.integers(0, top + 1, size=2)]
    if mode != "constant" and len(shape) not in (dims + 1, dims + 2):
        return None          # PyTorch pads only (batches of) planes in these modes
    new = list(shape)
    np_widths = [(0, 0)] * len(shape)
    for i in range(dims):
        ax = len(shape) - 1 - i
        new[ax] += widths[2 * i] + widths[2 * i + 1]
        np_widths[ax] = (widths[2 * i], widths[2 * i + 1])
    value = float(np.round(rng.uniform(-1, 1), 2))
    extra = f", value={value}" if mode == "constant" else f", mode={mode!r}"
    np_extra = f", constant_values={value}" if mode == "constant" else ""
    return Step("pad", out, (a,), f"gg.ops.pad({{0}}, {tuple(widths)}{extra})",
                f"np.pad({{0}}, {np_widths}, mode={_NP_PAD[mode]!r}{np_extra})",
                f"torch.nn.functional.pad({{0}}, {tuple(widths)}{extra})", tuple(new))


def _make_index_select(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    idx = [int(i) for i in rng.integers(0, shape[d], size=int(rng.integers(1, 4)))]
    new = tuple(len(idx) if i == d % len(shape) else s for i, s in enumerate(shape))
    t = f"gg.index_select({{0}}, {d}, gg.tensor({idx}))"
    return Step("index_select", out, (a,), t, f"np.take({{0}}, {idx}, axis={d})", _torch_of(t),
                new)


def _index_along(rng, shape, d, repeats=True):
    """An index array of ``shape`` except m entries along d, each in range(shape[d])."""
    ax = d % len(shape)
    m = int(rng.integers(1, shape[ax] + (2 if repeats else 1)))
    ishape = tuple(m if i == ax else s for i, s in enumerate(shape))
    if repeats:
        idx = rng.integers(0, shape[ax], size=ishape)
    else:        # distinct along d: which write wins is then defined
        keys = rng.random(shape)
        idx = np.take(np.argsort(keys, axis=ax), range(m), axis=ax)
    return idx.tolist(), ishape


def _make_gather(name):
    def make(rng, values, out):
        a, shape, d = _with_dim(rng, values)
        if a is None:
            return None
        idx, ishape = _index_along(rng, shape, d)
        if name == "gather":
            t = f"gg.gather({{0}}, {d}, gg.tensor({idx}))"
        else:
            t = f"gg.take_along_dim({{0}}, gg.tensor({idx}), dim={d})"
        return Step(name, out, (a,), t, f"np.take_along_axis({{0}}, np.array({idx}), {d})",
                    _torch_of(t), ishape)
    return FuzzOp(name, make)


def _make_scatter(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    ax = d % len(shape)
    src = _pick(rng, values, lambda s: len(s) == len(shape) and all(
        x <= y for i, (x, y) in enumerate(zip(s, shape)) if i != ax) and s[ax] <= shape[ax])
    if src is None or rng.random() < 0.3:
        idx, _ = _index_along(rng, shape, d, repeats=False)
        value = float(np.round(rng.uniform(-1, 1), 2))
        t = f"gg.scatter({{0}}, {d}, gg.tensor({idx}), value={value})"
        return Step("scatter", out, (a,), t, f"_scatter({{0}}, {d}, {idx}, {value})",
                    _torch_of(t), shape)
    sshape = values[src]
    keys = rng.random(shape)
    order = np.argsort(keys, axis=ax)
    idx = order[tuple(slice(0, s) for s in sshape)].tolist()
    t = f"gg.scatter({{0}}, {d}, gg.tensor({idx}), {{1}})"
    return Step("scatter", out, (a, src), t, f"_scatter({{0}}, {d}, {idx}, {{1}})",
                _torch_of(t), shape)


def _scatter_operands(rng, values):
    """(x, its shape, dim, src, index shaped as src) for a scatter that reduces repeated
    positions, or None."""
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    ax = d % len(shape)
    src = _pick(rng, values, lambda s: len(s) == len(shape) and all(
        x <= y for i, (x, y) in enumerate(zip(s, shape)) if i != ax))
    if src is None:
        return None
    return a, shape, d, src, rng.integers(0, shape[ax], size=values[src]).tolist()


def _make_scatter_add(rng, values, out):
    operands = _scatter_operands(rng, values)
    if operands is None:
        return None
    a, shape, d, src, idx = operands
    t = f"gg.scatter_add({{0}}, {d}, gg.tensor({idx}), {{1}})"
    return Step("scatter_add", out, (a, src), t, f"_scatter_add({{0}}, {d}, {idx}, {{1}})",
                _torch_of(t), shape)


def _make_scatter_reduce(rng, values, out):
    # index shaped as src (PyTorch's backward breaks on a src larger than the index: it
    # raises for sum and gives unused entries gradients for prod)
    operands = _scatter_operands(rng, values)
    if operands is None:
        return None
    a, shape, d, src, idx = operands
    reduce = ["sum", "mean", "prod"][int(rng.integers(3))]
    keep = bool(rng.random() < 0.5)
    t = f"gg.scatter_reduce({{0}}, {d}, gg.tensor({idx}), {{1}}, {reduce!r}, include_self={keep})"
    return Step("scatter_reduce", out, (a, src), t,
                f"_scatter_reduce({{0}}, {d}, {idx}, {{1}}, {reduce!r}, {keep})", _torch_of(t),
                shape)


def _make_median(rng, values, out):
    name = ["median", "nanmedian"][int(rng.integers(2))]
    a = _pick(rng, values)
    shape = values[a]
    if not shape or rng.random() < 0.3:
        n = int(np.prod(shape))
        return Step("median", out, (a,), f"gg.{name}({{0}})",
                    f"np.sort(np.ravel({{0}}))[{(n - 1) // 2}]", f"torch.{name}({{0}})", (),
                    "_min_gap(np.ravel({0}))")
    d = int(rng.integers(-len(shape), len(shape)))
    k = (shape[d] - 1) // 2
    keep = bool(rng.random() < 0.4)
    t = f"gg.{name}({{0}}, {d}, keepdim={keep}).values"
    np_t = f"np.take(np.sort({{0}}, axis={d}), [{k}] if {keep} else {k}, axis={d})"
    return Step("median", out, (a,), t, np_t, _torch_of(t), _reduced_shape(shape, d, keep),
                f"_min_gap({{0}}, {d})")


def _make_mode(rng, values, out):
    a, shape, d = _with_dim(rng, values)
    if a is None:
        return None
    keep = bool(rng.random() < 0.4)
    # distinct values (the kink guard keeps them apart): the mode is the smallest
    t = f"gg.mode({{0}}, {d}, keepdim={keep}).values"
    return Step("mode", out, (a,), t, f"np.min({{0}}, axis={d}, keepdims={keep})", _torch_of(t),
                _reduced_shape(shape, d, keep), f"_min_gap({{0}}, {d})")


def _mask_for(rng, shape):
    """A constant boolean mask that broadcasts into shape."""
    mshape = tuple(1 if rng.random() < 0.3 else s for s in shape)[int(rng.integers(0, 2)):] \
        if shape else ()
    return rng.random(mshape) < 0.5, mshape


def _make_masked_fill(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    value = float(np.round(rng.uniform(-1, 1), 2))
    if rng.random() < 0.5:
        level = float(np.round(rng.uniform(-1, 1), 2))
        t = f"gg.masked_fill({{0}}, {{0}} > {level}, {value})"
        return Step("masked_fill", out, (a,), t, f"np.where({{0}} > {level}, {value}, {{0}})",
                    _torch_of(t), shape, f"{{0}} - {level}")
    mask, _ = _mask_for(rng, shape)
    m = mask.tolist()
    t = f"gg.masked_fill({{0}}, gg.tensor({m}), {value})"
    return Step("masked_fill", out, (a,), t, f"np.where(np.array({m}), {value}, {{0}})",
                _torch_of(t), shape)


def _make_masked_select(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    mask, _ = _mask_for(rng, shape)
    count = int(np.broadcast_to(mask, shape).sum())
    if count == 0:
        return None
    m = mask.tolist()
    t = f"gg.masked_select({{0}}, gg.tensor({m}))"
    return Step("masked_select", out, (a,), t,
                f"{{0}}[np.broadcast_to(np.array({m}), np.shape({{0}}))]", _torch_of(t),
                (count,))


def _make_masked_scatter(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    mask, _ = _mask_for(rng, shape)
    count = int(np.broadcast_to(mask, shape).sum())
    src = _pick(rng, values, lambda s: _numel(s) >= count)
    if src is None:
        return None
    m = mask.tolist()
    t = f"gg.masked_scatter({{0}}, gg.tensor({m}), {{1}})"
    # PyTorch's forward mode of masked_scatter fails unless source and x have one shape:
    # its twin is spelled with gathers
    return Step("masked_scatter", out, (a, src), t, f"_masked_scatter({{0}}, {m}, {{1}})",
                f"_torch_masked_scatter({{0}}, torch.tensor({m}), {{1}})", shape)


def _make_getitem(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    kind = int(rng.integers(6))
    if kind == 0 and shape[0] >= 2:                       # basic slice
        idx, new = "[1:]", (shape[0] - 1,) + shape[1:]
    elif kind == 1:                                        # strided slice, last axis
        n = shape[-1]
        idx, new = "[..., ::2]", shape[:-1] + ((n + 1) // 2,)
    elif kind == 2:                                        # integer array, with repeats
        rows = [int(r) for r in rng.integers(0, shape[0], size=int(rng.integers(1, 5)))]
        new = (len(rows),) + shape[1:]
        return Step("getitem", out, (a,), f"{{0}}[gg.tensor({rows})]",
                    f"{{0}}[np.array({rows})]", f"{{0}}[torch.tensor({rows})]", new)
    elif kind == 3:                                        # a new axis and a negative index
        i = int(rng.integers(-shape[0], 0))
        idx, new = f"[None, {i}]", (1,) + shape[1:]
    elif kind == 4 and len(shape) >= 2:                    # two integer arrays (paired)
        rows = [int(r) for r in rng.integers(0, shape[0], size=2)]
        cols = [int(c) for c in rng.integers(0, shape[1], size=2)]
        new = (2,) + shape[2:]
        return Step("getitem", out, (a,), f"{{0}}[gg.tensor({rows}), gg.tensor({cols})]",
                    f"{{0}}[np.array({rows}), np.array({cols})]",
                    f"{{0}}[torch.tensor({rows}), torch.tensor({cols})]", new)
    else:
        i = int(rng.integers(-shape[0], shape[0]))        # integer: drops an axis
        idx, new = f"[{i}]", shape[1:]
    return Step("getitem", out, (a,), "{0}" + idx, "{0}" + idx, "{0}" + idx, new)


def _make_setitem(rng, values, out):
    """x[index] = value on a copy: the recorded in-place write (index_put)."""
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    kind = int(rng.integers(3))
    if kind == 0:
        i = int(rng.integers(-shape[0], shape[0]))
        index, target = f"{i}", shape[1:]
    elif kind == 1:
        index, target = "(Ellipsis, slice(None, None, 2))", shape[:-1] + ((shape[-1] + 1) // 2,)
    else:
        rows = sorted({int(r) for r in rng.integers(0, shape[0], size=2)})
        index, target = f"{rows}", (len(rows),) + shape[1:]
    v = _pick(rng, values, lambda s: _broadcasts_into(s, target))
    if v is None:
        return None
    return Step("setitem", out, (a, v), f"_put({{0}}, {index}, {{1}})",
                f"_put({{0}}, {index}, {{1}})", f"_put({{0}}, {index}, {{1}})", shape)


def _make_inplace_view(rng, values, out):
    """value added in place through a view of a copy: the base follows the write."""
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    v = _pick(rng, values, lambda s: _broadcasts_into(s, values[a][1:]))
    if v is None:
        return None
    return Step("inplace_view", out, (a, v), "_iadd_view({0}, {1})", "_iadd_view({0}, {1})",
                "_iadd_view({0}, {1})", values[a])


def _make_inplace_mul(rng, values, out):
    a = _pick(rng, values)
    v = _pick(rng, values, lambda s: _broadcasts_into(s, values[a]))
    return Step("inplace_mul", out, (a, v), "_imul({0}, {1})", "{0} * {1}", "_imul({0}, {1})",
                values[a])


def _make_meshgrid(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) == 1)
    if a is None:
        return None
    b = _pick(rng, values, lambda s: len(s) == 1)
    indexing = ["ij", "xy"][int(rng.integers(2))]
    k = int(rng.integers(2))
    n, m = values[a][0], values[b][0]
    new = (n, m) if indexing == "ij" else (m, n)
    t = f"gg.meshgrid({{0}}, {{1}}, indexing={indexing!r})[{k}]"
    return Step("meshgrid", out, (a, b), t,
                f"np.meshgrid({{0}}, {{1}}, indexing={indexing!r})[{k}]", _torch_of(t), new)


def _make_outer(name):
    def make(rng, values, out):
        a = _pick(rng, values, lambda s: len(s) == 1)
        if a is None:
            return None
        b = _pick(rng, values, lambda s: len(s) == 1)
        return Step(name, out, (a, b), f"gg.{name}({{0}}, {{1}})", "np.outer({0}, {1})",
                    "torch.outer({0}, {1})", (values[a][0], values[b][0]))
    return FuzzOp(name, make)


def _make_tensordot(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    sa = values[a]
    b = _pick(rng, values, lambda s: len(s) >= 1 and s[0] == sa[-1])
    if b is not None and rng.random() < 0.7:
        dims = "1"
        new = sa[:-1] + values[b][1:]
    else:
        b = _pick(rng, values, lambda s: len(s) >= 1 and s[-1] == sa[-1])
        if b is None:
            return None
        dims = f"([{len(sa) - 1}], [{len(values[b]) - 1}])"
        new = sa[:-1] + values[b][:-1]
    t = f"gg.tensordot({{0}}, {{1}}, dims={dims})"
    return Step("tensordot", out, (a, b), t, f"np.tensordot({{0}}, {{1}}, axes={dims})",
                _torch_of(t), new)


def _make_einsum(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    sa = values[a]
    letters = "abcdefgh"[:len(sa)]
    sizes = dict(zip(letters, sa))
    operands = [a]
    specs = [letters]
    if rng.random() < 0.6:
        b = _pick(rng, values, lambda s: len(s) >= 1)
        spec = ""
        fresh = iter("pqrstuvw")
        for s in values[b]:
            same = [c for c, n in sizes.items() if n == s and c not in spec]
            if same and rng.random() < 0.6:
                spec += same[int(rng.integers(len(same)))]
            else:
                c = next(fresh)
                spec += c
                sizes[c] = s
        operands.append(b)
        specs.append(spec)
    used = sorted(set("".join(specs)))
    keep = [c for c in used if rng.random() < 0.6]
    keep = [keep[i] for i in rng.permutation(len(keep))]
    eq = ",".join(specs) + "->" + "".join(keep)
    new = tuple(sizes[c] for c in keep)
    names = ", ".join(f"{{{i}}}" for i in range(len(operands)))
    t = f"gg.einsum({eq!r}, {names})"
    return Step("einsum", out, tuple(operands), t, f"np.einsum({eq!r}, {names})", _torch_of(t),
                new)


def _make_concatenate(name):
    def make(rng, values, out):
        a = _pick(rng, values, lambda s: len(s) >= 1)
        if a is None:
            return None
        shape = values[a]
        axis = int(rng.integers(-len(shape), len(shape)))
        ax = axis % len(shape)
        b = _pick(rng, values, lambda s: len(s) == len(shape) and all(
            x == y for i, (x, y) in enumerate(zip(s, shape)) if i != ax))
        new = tuple(s + values[b][ax] if i == ax else s for i, s in enumerate(shape))
        t = f"gg.{name}([{{0}}, {{1}}], dim={axis})"
        return Step(name, out, (a, b), t, f"np.concatenate([{{0}}, {{1}}], axis={axis})",
                    f"torch.cat([{{0}}, {{1}}], dim={axis})", new)
    return FuzzOp(name, make)


def _make_hvstack(name):
    def make(rng, values, out):
        a = _pick(rng, values)

        def fits(s):
            try:
                getattr(np, name)([np.zeros(values[a]), np.zeros(s)])
            except ValueError:
                return False
            return True
        b = _pick(rng, values, fits)
        if b is None:
            return None
        new = getattr(np, name)([np.zeros(values[a]), np.zeros(values[b])]).shape
        return Step(name, out, (a, b), f"gg.{name}([{{0}}, {{1}}])",
                    f"np.{name}([{{0}}, {{1}}])", f"torch.{name}([{{0}}, {{1}}])", new)
    return FuzzOp(name, make)


def _make_stack(rng, values, out):
    a = _pick(rng, values)
    b = _pick(rng, values, lambda s: s == values[a])
    axis = int(rng.integers(-len(values[a]) - 1, len(values[a]) + 1))
    ax = axis % (len(values[a]) + 1)
    shape = values[a][:ax] + (2,) + values[a][ax:]
    return Step("stack", out, (a, b), f"gg.stack([{{0}}, {{1}}], dim={axis})",
                f"np.stack([{{0}}, {{1}}], axis={axis})",
                f"torch.stack([{{0}}, {{1}}], dim={axis})", shape)


def _make_sum_to(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    drop = int(rng.integers(0, len(shape) + 1))
    target = tuple(1 if rng.random() < 0.4 else s for s in shape[drop:])
    return Step("sum_to", out, (a,), f"gg.ops.sum_to({{0}}, {target})",
                f"_sum_to({{0}}, {target})", f"{{0}}.sum_to_size({target})", target)


def _make_one_hot(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    n = shape[-1]
    labels = rng.integers(0, n, size=shape[:-1]).tolist()
    return Step("one_hot", out, (a,), f"{{0}} * gg.ops.one_hot(gg.tensor({labels}), {n})",
                f"{{0}} * np.eye({n})[np.array({labels}, dtype=int)]",
                f"{{0}} * torch.nn.functional.one_hot(torch.tensor({labels}), {n})", shape)


def _make_dropout(rng, values, out):
    a = _pick(rng, values)
    shape = values[a]
    p = [0.25, 0.5][int(rng.integers(2))]
    seed = int(rng.integers(0, 1000))
    return Step("dropout", out, (a,), f"gg.ops.dropout({{0}}, {p}, seed={seed}, offset=0)",
                f"{{0}} * _dropout_mask({shape}, {p}, {seed})",
                f"{{0}} * torch.tensor(_dropout_mask({shape}, {p}, {seed}))", shape)


def _make_to_device(rng, values, out):
    a = _pick(rng, values)
    return Step("to_device", out, (a,),
                "gg.ops.to_device(gg.ops.to_device({0}, gg.device('cpu:1')), {0}.device)",
                "{0}", "{0}.clone()", values[a])


def _make_lerp(rng, values, out):
    a = _pick(rng, values)
    b = _pick(rng, values, lambda s: _broadcasts(s, values[a]))
    shape = np.broadcast_shapes(values[a], values[b])
    w = _pick(rng, values, lambda s: _broadcasts(s, shape))
    if rng.random() < 0.3:
        weight = float(np.round(rng.uniform(-0.5, 1.5), 2))
        return Step("lerp", out, (a, b), f"gg.lerp({{0}}, {{1}}, {weight})",
                    f"{{0}} + {weight} * ({{1}} - {{0}})", f"torch.lerp({{0}}, {{1}}, {weight})",
                    shape)
    shape = np.broadcast_shapes(shape, values[w])
    return Step("lerp", out, (a, b, w), "gg.lerp({0}, {1}, {2})", "{0} + {2} * ({1} - {0})",
                "torch.lerp({0}, {1}, {2})", shape)


def _make_layer_norm(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    shape = values[a]
    k = int(rng.integers(1, len(shape) + 1))
    norm = shape[len(shape) - k:]
    w = _pick(rng, values, lambda s: s == norm) if rng.random() < 0.7 else None
    b = _pick(rng, values, lambda s: s == norm) if rng.random() < 0.7 else None
    args = [a] + [v for v in (w, b) if v is not None]
    slot = {v: f"{{{i}}}" for i, v in enumerate(args)}
    ws = slot[w] if w is not None else "None"
    bs = slot[b] if b is not None else "None"
    eps = [1e-5, 0.1][int(rng.integers(2))]
    call = f"F.layer_norm({{0}}, {norm}, {ws}, {bs}, eps={eps})"
    return Step("layer_norm", out, tuple(args), call, f"_layer_norm({{0}}, {k}, {ws}, {bs}, {eps})",
                call.replace("F.", "torch.nn.functional."), shape)


def _make_matmul(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) >= 1)
    if a is None:
        return None
    sa = values[a]
    k = sa[-1]

    def fits(sb):
        if len(sb) == 1:
            return sb[0] == k
        if len(sb) >= 2 and sb[-2] == k:
            if len(sa) == 1:
                return True
            try:
                np.broadcast_shapes(sa[:-2], sb[:-2])
                return True
            except ValueError:
                return False
        return False
    b = _pick(rng, values, fits)
    if b is not None:
        shape = np.matmul(np.zeros(sa), np.zeros(values[b])).shape
        return Step("matmul", out, (a, b), "{0} @ {1}", "np.matmul({0}, {1})", "{0} @ {1}",
                    shape)
    if len(sa) >= 2:                                       # a @ a^T
        shape = sa[:-1] + (sa[-2],)
        return Step("matmul", out, (a,), "{0} @ gg.ops.swap_last({0})",
                    "np.matmul({0}, np.swapaxes({0}, -1, -2))", "{0} @ {0}.transpose(-1, -2)",
                    shape)
    return Step("matmul", out, (a,), "{0} @ {0}", "np.matmul({0}, {0})", "{0} @ {0}", ())


def _make_linear(rng, values, out):
    x = _pick(rng, values, lambda s: len(s) >= 1)
    if x is None:
        return None
    sx = values[x]
    w = _pick(rng, values, lambda s: len(s) == 2 and s[1] == sx[-1])
    if w is None:
        return None
    o = values[w][0]
    b = _pick(rng, values, lambda s: s == (o,)) if rng.random() < 0.8 else None
    act = ["none", "relu", "tanh", "sigmoid", "gelu", "gelu_tanh"][int(rng.integers(6))]
    pre_np = "np.matmul({0}, np.swapaxes({1}, -1, -2))" + (" + {2}" if b else "")
    args = (x, w, b) if b else (x, w)
    gg_t = "F.linear({0}, {1}, " + ("{2}" if b else "None") + f", {act!r})"
    torch_t = _TORCH_ACT[act].format(
        "torch.nn.functional.linear({0}, {1}, " + ("{2}" if b else "None") + ")")
    shape = sx[:-1] + (o,)
    return Step("linear", out, args, gg_t, _NP_ACT[act].format(pre_np), torch_t, shape,
                pre_np if act == "relu" else None)


def _make_cross_entropy(rng, values, out):
    a = _pick(rng, values, lambda s: len(s) == 2 and s[1] >= 2)
    if a is None:
        return None
    labels = [int(v) for v in rng.integers(0, values[a][1], size=values[a][0])]
    return Step("cross_entropy", out, (a,), f"F.cross_entropy({{0}}, gg.tensor({labels}))",
                f"_xent({{0}}, np.array({labels}))",
                f"torch.nn.functional.cross_entropy({{0}}, torch.tensor({labels}))", ())


def _make_mse(rng, values, out):
    a = _pick(rng, values)
    b = _pick(rng, values, lambda s: s == values[a])
    return Step("mse_loss", out, (a, b), "F.mse_loss({0}, {1})", "np.mean(({0} - {1}) ** 2)",
                "torch.nn.functional.mse_loss({0}, {1})", ())


# functions of t with a closed-over c, for the transform steps: gg/torch source, NumPy value,
# first and second derivative in t (elementwise)
INNERS = [
    ("(t * C).sin()", "np.sin(t * c)", "c * np.cos(t * c)", "-c * c * np.sin(t * c)"),
    ("t.tanh() * C", "np.tanh(t) * c", "c * (1 - np.tanh(t) ** 2)",
     "-2 * c * np.tanh(t) * (1 - np.tanh(t) ** 2)"),
    ("t * t * C", "t * t * c", "2 * t * c", "2 * c + 0 * t"),
    ("(t * C).exp() * 0.5", "np.exp(t * c) * 0.5", "0.5 * c * np.exp(t * c)",
     "0.5 * c * c * np.exp(t * c)"),
    ("t.sigmoid() * C + t * t", "_sig(t) * c + t * t", "c * _sig(t) * (1 - _sig(t)) + 2 * t",
     "c * _sig(t) * (1 - _sig(t)) * (1 - 2 * _sig(t)) + 2"),
    ("t * C", "t * c", "c + 0 * t", "0 * t * c"),
]


def _transform(kind):
    def make(rng, values, out):
        t = _pick(rng, values, (lambda s: len(s) == 1) if kind.startswith("jacobian")
                  else (lambda s: True))
        if t is None:
            return None
        shape = values[t]
        c = _pick(rng, values, lambda s: _broadcasts_into(s, shape))
        u = _pick(rng, values, lambda s: s == shape)
        g, _, d1, d2 = INNERS[int(rng.integers(len(INNERS)))]
        inner = g.replace("C", "{1}")
        np_d1 = f"(lambda t, c: {d1})({{0}}, {{1}})"
        np_d2 = f"(lambda t, c: {d2})({{0}}, {{1}})"
        if kind == "grad":
            return Step("grad", out, (t, c), f"gg.grad(lambda t: ({inner}).sum())({{0}})",
                        np_d1, f"torch.func.grad(lambda t: ({inner}).sum())({{0}})", shape)
        # torch.func.jvp's make_dual refuses an expanded primal or tangent (overlapping
        # memory): its twin clones them, the same values
        if kind == "jvp":
            return Step("jvp", out, (t, c, u), f"gg.jvp(lambda t: {inner}, ({{0}},), ({{2}},))[1]",
                        f"{np_d1} * {{2}}",
                        f"torch.func.jvp(lambda t: {inner}, ({{0}}.clone(),), "
                        f"({{2}}.clone(),))[1]", shape)
        if kind == "vjp":
            return Step("vjp", out, (t, c, u), f"gg.vjp(lambda t: {inner}, {{0}})[1]({{2}})[0]",
                        f"{np_d1} * {{2}}",
                        f"torch.func.vjp(lambda t: {inner}, {{0}})[1]({{2}})[0]", shape)
        if kind.startswith("hvp"):
            mode = kind.split("_")[1]
            return Step(kind, out, (t, c, u),
                        f"gg.hvp(lambda t: ({inner}).sum(), ({{0}},), ({{2}},), "
                        f"mode={mode!r})[1][0]", f"{np_d2} * {{2}}",
                        f"torch.func.jvp(torch.func.grad(lambda t: ({inner}).sum()), "
                        f"({{0}}.clone(),), ({{2}}.clone(),))[1]", shape)
        mode = kind.split("_")[1]
        return Step(kind, out, (t, c, u),
                    f"(gg.jacobian(lambda t: {inner}, {{0}}, mode={mode!r}) @ {{2}})",
                    f"{np_d1} * {{2}}", f"(torch.func.jacrev(lambda t: {inner})({{0}}) @ {{2}})",
                    shape)
    return FuzzOp(kind, make)


def _scalar_op(name, gg_t, np_t, torch_t=None):
    """A binary op with a Python scalar operand."""
    primitive = {"pow_scalar": "pow", "rpow_scalar": "pow", "rsub_scalar": "sub",
                 "rdiv_scalar": "div", "add_scalar": "add"}[name]
    return _unary(name, gg_t, np_t, torch_t or gg_t, exercises=(primitive,))


_DENOM = "({1} * {1} + 0.5)"
_QUOTIENT = f"({{0}} / {_DENOM})"

FUZZ_OPS = [
    # arithmetic
    _binary("add", "{0} + {1}", "{0} + {1}", "{0} + {1}"),
    _binary("sub", "{0} - {1}", "{0} - {1}", "{0} - {1}"),
    _binary("mul", "{0} * {1}", "{0} * {1}", "{0} * {1}"),
    _binary("div", "{0} / ({1} * {1} + 0.5)", "{0} / ({1} * {1} + 0.5)",
            "{0} / ({1} * {1} + 0.5)"),
    _binary("pow", "({0} * {0} + 0.5) ** {1}.tanh()", "({0} * {0} + 0.5) ** np.tanh({1})",
            "({0} * {0} + 0.5) ** {1}.tanh()"),
    _scalar_op("pow_scalar", "{0} ** 3", "{0} ** 3"),
    _scalar_op("rpow_scalar", "1.5 ** {0}", "1.5 ** {0}"),
    _scalar_op("rsub_scalar", "1.5 - {0}", "1.5 - {0}"),
    _scalar_op("rdiv_scalar", "2.0 / ({0} * {0} + 0.5)", "2.0 / ({0} * {0} + 0.5)"),
    _scalar_op("add_scalar", "{0} + 0.25", "{0} + 0.25"),
    _unary("neg", "-{0}", "-{0}", "-{0}"),
    _binary("fmod", f"gg.fmod({{0}}, {_DENOM})", f"np.fmod({{0}}, {_DENOM})",
            kink=f"_to_integer({_QUOTIENT})"),
    _binary("remainder", f"gg.remainder({{0}}, {_DENOM})", f"np.remainder({{0}}, {_DENOM})",
            kink=f"_to_integer({_QUOTIENT})"),
    _binary("floor_divide", f"({{0}} + gg.floor_divide({{0}}.detach(), {_DENOM}.detach()))",
            f"({{0}} + np.floor_divide({{0}}, {_DENOM}))", kink=f"_to_integer({_QUOTIENT})"),
    _binary("atan2", "gg.atan2({0}, {1})", "np.arctan2({0}, {1})", kink="np.hypot({0}, {1})"),
    _binary("arctan2", "gg.arctan2({0}, {1})", "np.arctan2({0}, {1})",
            kink="np.hypot({0}, {1})"),
    _binary("logaddexp", "gg.logaddexp({0}, {1})", "np.logaddexp({0}, {1})"),
    FuzzOp("lerp", _make_lerp),
    _binary("maximum", "gg.maximum({0}, {1})", "np.maximum({0}, {1})", kink="{0} - {1}"),
    _binary("minimum", "gg.minimum({0}, {1})", "np.minimum({0}, {1})", kink="{0} - {1}"),
    _binary("where", "gg.where({0} > 0.1, {0}, {1})", "np.where({0} > 0.1, {0}, {1})",
            kink="{0} - 0.1"),
    _unary("clip", "gg.clip({0}, -0.5, 0.7)", "np.clip({0}, -0.5, 0.7)",
           "torch.clamp({0}, -0.5, 0.7)",
           kink="np.minimum(np.abs({0} + 0.5), np.abs({0} - 0.7))"),
    # elementwise functions
    _unary("abs", "gg.abs({0})", "np.abs({0})", kink="{0}"),
    _function("exp", "np.exp"),
    _function("exp2", "np.exp2"),
    _function("expm1", "np.expm1"),
    _function("log", "np.log", POSITIVE),
    _function("log2", "np.log2", POSITIVE),
    _function("log10", "np.log10", POSITIVE),
    _function("log1p", "np.log1p", "({0} * {0})"),
    _function("sqrt", "np.sqrt", POSITIVE),
    _function("rsqrt", "1 / np.sqrt", POSITIVE),
    _function("square", "np.square"),
    _function("sin", "np.sin"),
    _function("cos", "np.cos"),
    _function("tan", "np.tan", BOUNDED),
    _function("sinh", "np.sinh"),
    _function("cosh", "np.cosh"),
    _function("tanh", "np.tanh"),
    _function("asin", "np.arcsin", BOUNDED),
    _function("arcsin", "np.arcsin", BOUNDED),
    _function("acos", "np.arccos", BOUNDED),
    _function("arccos", "np.arccos", BOUNDED),
    _function("atan", "np.arctan"),
    _function("arctan", "np.arctan"),
    _function("asinh", "np.arcsinh"),
    _function("arcsinh", "np.arcsinh"),
    _function("acosh", "np.arccosh", ABOVE_ONE),
    _function("arccosh", "np.arccosh", ABOVE_ONE),
    _function("atanh", "np.arctanh", BOUNDED),
    _function("arctanh", "np.arctanh", BOUNDED),
    _function("erf", "_erf"),
    _function("sigmoid", "_sig"),
    _steps_fn("floor", "np.floor", "_to_integer({0})"),
    _steps_fn("ceil", "np.ceil", "_to_integer({0})"),
    _steps_fn("trunc", "np.trunc", "_to_integer({0})"),
    _steps_fn("fix", "np.fix", "_to_integer({0})"),
    _steps_fn("sign", "np.sign", "{0}"),
    _steps_fn("sgn", "np.sign", "{0}"),
    FuzzOp("round", _make_round),
    # activations
    _unary("relu", "gg.relu({0})", "np.maximum({0}, 0)", kink="{0}"),
    _unary("gelu", "F.gelu({0})", _NP_ACT["gelu"].format("{0}"),
           "torch.nn.functional.gelu({0})"),
    _unary("gelu_tanh", "F.gelu({0}, approximate='tanh')", _NP_ACT["gelu_tanh"].format("{0}"),
           "torch.nn.functional.gelu({0}, approximate='tanh')"),
    _unary("silu", "F.silu({0})", "({0} * _sig({0}))", "torch.nn.functional.silu({0})"),
    _activation("elu", "F.elu({0}, {alpha})", "np.where({0} > 0, {0}, {alpha} * "
                "np.expm1(np.minimum({0}, 0)))", "torch.nn.functional.elu({0}, {alpha})",
                kink="{0}", params=lambda rng: {"alpha": [1.0, 0.5][int(rng.integers(2))]}),
    _activation("leaky_relu", "F.leaky_relu({0}, {slope})",
                "np.where({0} > 0, {0}, {slope} * {0})",
                "torch.nn.functional.leaky_relu({0}, {slope})", kink="{0}",
                params=lambda rng: {"slope": [0.01, 0.2][int(rng.integers(2))]}),
    _activation("softplus", "F.softplus({0}, {beta}, {threshold})",
                "np.where({beta} * {0} > {threshold}, {0}, np.logaddexp(0, {beta} * {0}) / "
                "{beta})", "torch.nn.functional.softplus({0}, {beta}, {threshold})",
                kink="{beta} * {0} - {threshold}",
                params=lambda rng: {"beta": [1.0, 2.0][int(rng.integers(2))],
                                    "threshold": [20.0, 1.0][int(rng.integers(2))]}),
    _softmax_like("softmax", "gg.softmax", "_softmax", "torch.softmax"),
    _softmax_like("log_softmax", "gg.log_softmax", "_log_softmax", "torch.log_softmax"),
    FuzzOp("layer_norm", _make_layer_norm),
    FuzzOp("dropout", _make_dropout),
    # comparisons and logic, as masks
    _compare("eq", "equal", kink=None),
    _compare("ne", "not_equal", kink=None),
    _compare("not_equal", "not_equal", kink=None),
    _compare("gt", "greater"),
    _compare("greater", "greater"),
    _compare("ge", "greater_equal"),
    _compare("greater_equal", "greater_equal"),
    _compare("lt", "less"),
    _compare("less", "less"),
    _compare("le", "less_equal"),
    _compare("less_equal", "less_equal"),
    FuzzOp("isclose", _make_isclose),
    _make_whole_compare("equal"),
    _make_whole_compare("allclose"),
    _logical("logical_and"),
    _logical("logical_or"),
    _logical("logical_xor"),
    _logical("logical_not"),
    _classify("isfinite"),
    _classify("isinf"),
    _classify("isnan"),
    _classify("isposinf"),
    _classify("isneginf"),
    _make_all_any("all"),
    _make_all_any("any"),
    # reductions and scans
    _reduction("sum", "gg.sum({{0}}, dim={axis}, keepdim={keep})",
               "np.sum({{0}}, axis={axis}, keepdims={keep})",
               "torch.sum({{0}}, dim={axis}, keepdim={keep})"),
    _reduction("mean", "gg.mean({{0}}, axis={axis}, keepdims={keep})",
               "np.mean({{0}}, axis={axis}, keepdims={keep})",
               "torch.mean({{0}}, dim={axis}, keepdim={keep})"),
    _reduction("nansum", "gg.nansum({{0}}, dim={axis}, keepdim={keep})",
               "np.nansum({{0}}, axis={axis}, keepdims={keep})",
               "torch.nansum({{0}}, dim={axis}, keepdim={keep})"),
    _reduction("nanmean", "gg.nanmean({{0}}, dim={axis}, keepdim={keep})",
               "np.nanmean({{0}}, axis={axis}, keepdims={keep})",
               "torch.nanmean({{0}}, dim={axis}, keepdim={keep})"),
    _reduction("amax", "gg.amax({{0}}, dim={axis}, keepdim={keep})",
               "np.max({{0}}, axis={axis}, keepdims={keep})",
               "torch.amax({{0}}, dim={axis}, keepdim={keep})",
               kink_fn=lambda axis: f"_top_gap({{0}}, {axis})"),
    _reduction("amin", "gg.amin({{0}}, dim={axis}, keepdim={keep})",
               "np.min({{0}}, axis={axis}, keepdims={keep})",
               "torch.amin({{0}}, dim={axis}, keepdim={keep})",
               kink_fn=lambda axis: f"_top_gap(-{{0}}, {axis})"),
    _make_max_like("max"),
    _make_max_like("min"),
    _reduction("logsumexp", "gg.logsumexp({{0}}, dim={axis}, keepdim={keep})",
               "_logsumexp({{0}}, {axis}, {keep})",
               "torch.logsumexp({{0}}, dim={axis}, keepdim={keep})"),
    _reduction("prod", "gg.prod({{0}}, dim={axis}, keepdim={keep})",
               "np.prod({{0}}, axis={axis}, keepdims={keep})",
               "torch.prod({{0}}, dim={axis}, keepdim={keep})", allow_tuple=False,
               torch_whole="torch.prod({{0}}).reshape({shape})"),
    _reduction("var", "gg.var({{0}}, dim={axis}, correction={c}, keepdim={keep})",
               "np.var({{0}}, axis={axis}, ddof={c}, keepdims={keep})",
               "torch.var({{0}}, dim={axis}, correction={c}, keepdim={keep})",
               extra=_correction),
    _reduction("std", "gg.std({{0}}, dim={axis}, correction={c}, keepdim={keep})",
               "np.std({{0}}, axis={axis}, ddof={c}, keepdims={keep})",
               "torch.std({{0}}, dim={axis}, correction={c}, keepdim={keep})",
               extra=_correction, kink_fn=lambda axis, c: f"np.std({{0}}, axis={axis})"),
    _reduction("var_mean", "sum(gg.var_mean({{0}}, dim={axis}, correction={c}, "
               "keepdim={keep}))", "(np.var({{0}}, axis={axis}, ddof={c}, keepdims={keep}) + "
               "np.mean({{0}}, axis={axis}, keepdims={keep}))",
               "sum(torch.var_mean({{0}}, dim={axis}, correction={c}, keepdim={keep}))",
               extra=_correction),
    _reduction("std_mean", "sum(gg.std_mean({{0}}, dim={axis}, correction={c}, "
               "keepdim={keep}))", "(np.std({{0}}, axis={axis}, ddof={c}, keepdims={keep}) + "
               "np.mean({{0}}, axis={axis}, keepdims={keep}))",
               "sum(torch.std_mean({{0}}, dim={axis}, correction={c}, keepdim={keep}))",
               extra=_correction, kink_fn=lambda axis, c: f"np.std({{0}}, axis={axis})"),
    _reduction("norm", "gg.norm({{0}}, p={p}, dim={axis}, keepdim={keep})",
               "(np.max(np.abs({{0}}), axis={axis}, keepdims={keep}) if {p} == np.inf else "
               "np.sum(np.abs({{0}}) ** {p}, axis={axis}, keepdims={keep}) ** (1 / {p}))",
               "torch.linalg.vector_norm({{0}}, ord={p}, dim={axis}, keepdim={keep})",
               extra=_norm_order,
               kink_fn=lambda axis, p: f"_top_gap(np.abs({{0}}), {axis})" if p == "np.inf"
               else ("{0}" if p == "1" else f"np.sum(np.abs({{0}}), axis={axis})")),
    _make_scan("cumsum", "np.cumsum({{0}}, axis={d})"),
    _make_scan("cumprod", "np.cumprod({{0}}, axis={d})"),
    _make_scan("logcumsumexp", "np.logaddexp.accumulate({{0}}, axis={d})"),
    FuzzOp("sort", _make_sort),
    FuzzOp("argsort", _make_argsort),
    FuzzOp("msort", _make_msort),
    FuzzOp("topk", _make_topk),
    FuzzOp("kthvalue", _make_kthvalue),
    FuzzOp("median", _make_median, ("nanmedian",)),
    FuzzOp("mode", _make_mode),
    _make_arg_extreme("argmax"),
    _make_arg_extreme("argmin"),
    # movement and selection
    FuzzOp("reshape", _make_reshape),
    FuzzOp("transpose", _make_transpose),
    FuzzOp("permute", _make_permute),
    FuzzOp("swap_last", _make_swap_last),
    _make_moveaxis("moveaxis"),
    _make_moveaxis("movedim"),
    FuzzOp("broadcast_to", _make_broadcast_to),
    FuzzOp("expand", _make_expand),
    FuzzOp("expand_as", _make_expand_as),
    FuzzOp("view_as", _make_view_as),
    _unary("contiguous", "gg.ops.contiguous({0})", "{0}", "{0}.contiguous()"),
    _unary("clone", "gg.clone({0})", "np.array({0}, copy=True)", "torch.clone({0})"),
    _unary("identity", "gg.ops.identity({0})", "{0}", "{0}.clone()"),
    FuzzOp("flatten", _make_flatten),
    FuzzOp("unflatten", _make_unflatten),
    FuzzOp("squeeze", _make_squeeze),
    FuzzOp("unsqueeze", _make_unsqueeze),
    FuzzOp("flip", _make_flip),
    _make_flip_side("fliplr"),
    _make_flip_side("flipud"),
    FuzzOp("roll", _make_roll),
    FuzzOp("narrow", _make_narrow),
    _make_piece("chunk"),
    _make_piece("split"),
    _make_piece("tensor_split"),
    _make_piece("unbind"),
    FuzzOp("tile", _make_tile),
    FuzzOp("repeat", _make_repeat),
    FuzzOp("repeat_interleave", _make_repeat_interleave),
    FuzzOp("diag", _make_diag),
    FuzzOp("diag_embed", _make_diag_embed),
    FuzzOp("diagonal", _make_diagonal),
    FuzzOp("trace", _make_trace),
    _make_triangle("tril"),
    _make_triangle("triu"),
    FuzzOp("pad", _make_pad),
    FuzzOp("getitem", _make_getitem),
    FuzzOp("setitem", _make_setitem),
    FuzzOp("inplace_view", _make_inplace_view),
    FuzzOp("inplace_mul", _make_inplace_mul),
    FuzzOp("index_select", _make_index_select),
    _make_gather("gather"),
    _make_gather("take_along_dim"),
    FuzzOp("scatter", _make_scatter),
    FuzzOp("scatter_add", _make_scatter_add),
    FuzzOp("scatter_reduce", _make_scatter_reduce),
    FuzzOp("masked_fill", _make_masked_fill),
    FuzzOp("masked_select", _make_masked_select),
    FuzzOp("masked_scatter", _make_masked_scatter),
    _make_concatenate("concatenate"),
    _make_concatenate("concat"),
    _make_concatenate("cat"),
    _make_hvstack("hstack"),
    _make_hvstack("vstack"),
    FuzzOp("stack", _make_stack),
    FuzzOp("meshgrid", _make_meshgrid),
    FuzzOp("sum_to", _make_sum_to),
    FuzzOp("one_hot", _make_one_hot),
    FuzzOp("to_device", _make_to_device),
    # products
    FuzzOp("matmul", _make_matmul, ("swap_last",)),
    _make_outer("outer"),
    _make_outer("ger"),
    FuzzOp("tensordot", _make_tensordot),
    FuzzOp("einsum", _make_einsum),
    FuzzOp("linear", _make_linear),
    FuzzOp("cross_entropy", _make_cross_entropy),
    FuzzOp("mse_loss", _make_mse),
    # transforms
    _transform("grad"),
    _transform("jvp"),
    _transform("vjp"),
    _transform("hvp_fwd"),
    _transform("hvp_rev"),
    _transform("jacobian_fwd"),
    _transform("jacobian_rev"),
]


# primitives that no row calls by name, and how the programs reach them
REACHED_INDIRECTLY = {
    "linear_act": "F.linear with none, relu, tanh or sigmoid",
    "bias_act": "F.linear with gelu or gelu_tanh",
    "activation": "F.gelu, F.silu, F.elu, F.leaky_relu and F.linear's activations",
    "activation_grad": "the derivatives of the activation rows",
    "softmax_cross_entropy": "F.cross_entropy",
    "softmax_grad": "derivatives of softmax", "log_softmax_grad": "derivatives of log_softmax",
    "softmax_xent_grad": "derivatives of cross_entropy",
    "layer_norm_grad": "derivatives of F.layer_norm",
    "layer_norm_params": "F.layer_norm",
    "index_add_zeros": "the VJP of getitem",
    "index_put": "x[index] = value (the setitem row) and writes through views",
}
# what the fuzzer leaves to other tests, and why
NOT_FUZZED = {
    "cast": "changes precision: float64 differences cannot judge float32 rounding",
    "bitwise_and": "integer-only: no derivative, nothing for differences to judge",
    "bitwise_or": "integer-only", "bitwise_xor": "integer-only", "bitwise_not": "integer-only",
    "bitwise_left_shift": "integer-only", "bitwise_right_shift": "integer-only",
    "ACTIVATIONS": "a table, not an op", "LINEAR_ACTS": "a table, not an op",
    "PRIMITIVES": "the registry, not an op",
    "index_add": "scatter_add with one index per slice (the scatter_add row); op table",
    "index_copy": "scatter with one index per slice (the scatter row); op table",
    "index_fill": "masked_fill with a mask per slice (the masked_fill row); op table",
    "unique": "no derivative, a shape from the data; op table, tests/test_missing_names.py",
    "unique_consecutive": "as unique",
}


def covered_ops():
    """Every name of ``gpugrad.ops.__all__`` the fuzzer reaches, directly or not."""
    direct = {row.name for row in FUZZ_OPS} | {e for row in FUZZ_OPS for e in row.exercises}
    return direct | set(REACHED_INDIRECTLY)


# -- drawing programs ----------------------------------------------------------------------------
def _random_shape(rng, min_ndim=0, max_ndim=3):
    ndim = int(rng.integers(min_ndim, max_ndim + 1))
    return tuple(int(s) for s in rng.integers(1, 4, size=ndim))


def draw_program(rng, n_steps=None):
    """A random program; not yet checked for range and kinks (see ``valid``)."""
    n_inputs = int(rng.integers(1, 4))
    shapes = [_random_shape(rng)]
    for _ in range(n_inputs - 1):
        base = shapes[int(rng.integers(len(shapes)))]
        if rng.random() < 0.6 and base:           # a broadcasting partner of an earlier input
            drop = int(rng.integers(0, len(base) + 1))
            shapes.append(tuple(1 if rng.random() < 0.4 else s for s in base[drop:]))
        else:
            shapes.append(_random_shape(rng))
    inputs = [rng.uniform(-1.5, 1.5, size=s) for s in shapes]
    values = {f"x{i}": s for i, s in enumerate(shapes)}
    steps = []
    if n_steps is None:
        n_steps = int(rng.integers(MIN_STEPS, MAX_STEPS + 1))
    while len(steps) < n_steps:
        op = FUZZ_OPS[int(rng.integers(len(FUZZ_OPS)))]
        # prefer recent values, so that the steps compose rather than sit side by side
        r = rng.random()
        recent = dict(list(values.items())[-1:] if r < 0.7 else list(values.items())[-3:]
                      if r < 0.9 else values)
        step = op.make(rng, recent, f"v{len(steps)}")
        if step is None or not 0 < _numel(step.shape) <= 64:
            continue
        steps.append(step)
        values[step.out] = step.shape
    prog = Program(inputs, steps, steps[-1].out)
    prog.weights = rng.uniform(0.5, 1.5, size=steps[-1].shape)
    return _without_dead_steps(prog)


def draw_composed_program(rng):
    """A random program of MIN_STEPS to MAX_STEPS steps that all reach the output (the
    length drawn first, so that long programs are as common as short ones)."""
    target = int(rng.integers(MIN_STEPS, MAX_STEPS + 1))
    best = None
    for _ in range(200):
        prog = draw_program(rng, target)
        if len(prog.steps) >= target:
            return prog
        if len(prog.steps) >= MIN_STEPS and (best is None or len(prog.steps) > len(best.steps)):
            best = prog
    return best or draw_composed_program(rng)


def _without_dead_steps(prog):
    live = {prog.output}
    kept = []
    for s in reversed(prog.steps):
        if s.out in live:
            kept.append(s)
            live.update(s.args)
    return replace(prog, steps=kept[::-1])


def _compile(source, namespace):
    scope = dict(namespace)
    exec(compile(source, "<fuzz program>", "exec"), scope)
    return scope["program"]


def run_numpy(prog, arrays=None):
    """(output, smallest distance to a kink, largest magnitude) of the NumPy reference."""
    fn = _compile(prog.numpy_source(), NP_NAMESPACE)
    out, kinks = fn(*(prog.inputs if arrays is None else arrays))
    dist = min([k for k in kinks if k >= 0], default=np.inf)
    size = max([-k for k in kinks if k <= 0], default=0.0)
    return np.asarray(out, dtype=np.float64), dist, size


def valid(prog):
    """Inside the range where float64 differences are meaningful, away from kinks, and
    stable under the perturbations the checks make."""
    try:
        with np.errstate(all="raise"), warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)     # e.g. a variance of 1 entry
            _, dist, size = run_numpy(prog)
    except (FloatingPointError, OverflowError, RuntimeWarning):
        return False
    return dist > KINK_MARGIN and size < VALUE_LIMIT and math.isfinite(size)


def generate(seed, index):
    """The ``index``-th valid program of the run seeded with ``seed``."""
    rng = np.random.default_rng([seed, index])
    while True:
        prog = draw_composed_program(rng)
        for _ in range(6):        # long programs meet kinks more often: new inputs first
            if valid(prog):
                return prog
            prog = replace(prog, inputs=[rng.uniform(-1.5, 1.5, size=a.shape)
                                         for a in prog.inputs])


# -- checks ------------------------------------------------------------------------------------
@dataclass
class Mismatch:
    check: str
    detail: str

    def __str__(self):
        return f"{self.check}: {self.detail}"


GG_NAMESPACE = dict(_SHARED, gg=gg, F=F)


def _t(a):
    return gg.tensor(np.array(a, dtype=np.float64))


def _close(got, want, scale, rtol=1e-5, atol=1e-7, slack=0.0):
    """Within tolerance; ``slack`` adds the estimated error of a finite difference."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        return False
    return bool(np.all(np.abs(got - want) <= atol * (1 + scale) + rtol * np.abs(want) + slack))


def _difference(fn, h):
    """The derivative at 0 of s -> fn(s) (arrays) by central differences at h and 2h,
    Richardson-extrapolated, and an estimate of its error (the two differences' gap).

    Where the two differences disagree by more than a tenth, the function is not smooth at
    this scale (a step of floor or round within 2h, say, which the kink margin cannot rule
    out where the slope is steep): no difference can judge there, the error is infinite."""
    near = [(a - b) / (2 * h) for a, b in zip(fn(h), fn(-h))]
    far = [(a - b) / (4 * h) for a, b in zip(fn(2 * h), fn(-2 * h))]
    best = [n + (n - f) / 3 for n, f in zip(near, far)]
    errors = []
    for n, f in zip(near, far):
        gap = np.abs(n - f)
        rough = gap > 0.1 * (np.abs(n) + np.abs(f)) + 1e-6
        errors.append(np.where(rough, np.inf, gap))
    return best, errors


def _describe(got, want):
    got, want = np.asarray(got), np.asarray(want)
    if got.shape != want.shape:
        return f"shape {got.shape}, expected {want.shape}"
    err = np.abs(got - want)
    i = np.unravel_index(int(np.argmax(err)), err.shape) if err.size else ()
    return (f"got {got[i] if err.size else got!r}, expected {want[i] if err.size else want!r}"
            f" at {i} (|err| {float(err.max(initial=0)):.3g})")


def check_program(prog, rng=None, torch=None, notes=None):
    """Every check on one program; returns the mismatches (empty when all agree). Where
    PyTorch alone disagrees with central differences, a line goes to ``notes`` instead."""
    rng = rng or np.random.default_rng(0)
    mismatches = []
    n = len(prog.inputs)
    argnums = tuple(range(n))
    ref, _, size = run_numpy(prog)
    scale = max(size, 1.0)
    fn = _compile(prog.source(), GG_NAMESPACE)
    weights = _t(prog.weights)
    np_fn = _compile(prog.numpy_source(), FD_NAMESPACE)

    def np_value(arrays):
        out = np_fn(*[np.asarray(a, dtype=np.longdouble) for a in arrays])[0]
        return np.asarray(out, dtype=np.float64)

    def np_scalar(arrays):
        return float(np.sum(np_value(arrays) * prog.weights))

    def scalar(*xs):
        return (fn(*xs) * weights).sum()

    def guarded(name, body):
        try:
            body()
        except Exception:
            mismatches.append(Mismatch(name, "raised " + traceback.format_exc(limit=-3)))

    xs = [_t(a) for a in prog.inputs]
    directions = [rng.uniform(-1, 1, size=a.shape) for a in prog.inputs]

    def shifted(arrays, dirs, eps):
        return [np.asarray(a, dtype=np.longdouble) + eps * d for a, d in zip(arrays, dirs)]
    (fd_vector,), (fd_error,) = _difference(
        lambda h: [np_value(shifted(prog.inputs, directions, h))], EPS1)
    fd_scalar = float(np.sum(fd_vector * prog.weights))
    fd_scalar_error = float(np.sum(fd_error * np.abs(prog.weights)))

    def value():
        out = fn(*xs)
        if not _close(out.numpy(), ref, scale, rtol=1e-9, atol=1e-11):
            mismatches.append(Mismatch("value", _describe(out.numpy(), ref)))
    guarded("value", value)

    grads = []

    # beyond this slope a difference quotient no longer follows the function: only the
    # derivatives' agreement with each other (and with PyTorch) is checked there
    steep = float(np.max(np.abs(fd_vector), initial=0)) > SLOPE_LIMIT
    directional = []

    def reverse():
        g = gg.grad(scalar, argnums=argnums)(*xs)
        grads.extend(g)
        got = sum(float(np.sum(gi.numpy() * d)) for gi, d in zip(g, directions))
        directional.append(got)
        steep_here = steep or abs(got) > SLOPE_LIMIT
        if not steep_here and not _close(got, fd_scalar, scale, slack=fd_scalar_error):
            mismatches.append(Mismatch("grad", "<grad, u> " + _describe(got, fd_scalar)))
        _, pullback = gg.vjp(fn, *xs)
        cts = pullback(weights)
        via_vjp = sum(float(np.sum(c.numpy() * d)) for c, d in zip(cts, directions))
        if not _close(via_vjp, got, max(scale, abs(got)), rtol=1e-8, atol=1e-10):
            mismatches.append(Mismatch("vjp", "<vjp(w), u> vs <grad, u> "
                                       + _describe(via_vjp, got)))
        elif not steep_here and not _close(via_vjp, fd_scalar, scale, slack=fd_scalar_error):
            mismatches.append(Mismatch("vjp", "<vjp(w), u> " + _describe(via_vjp, fd_scalar)))
    guarded("grad", reverse)

    def forward():
        _, tangent = gg.jvp(fn, xs, [_t(d) for d in directions])
        tangent = tangent.numpy()
        if directional:          # <w, J u> from forward mode equals <J^T w, u> from reverse
            via_jvp = float(np.sum(tangent * prog.weights))
            scale_here = max(abs(directional[0]), float(np.sum(np.abs(tangent))))
            if not _close(via_jvp, directional[0], scale_here, rtol=1e-8, atol=1e-10):
                mismatches.append(Mismatch("jvp", "<w, jvp(u)> vs <grad, u> "
                                           + _describe(via_jvp, directional[0])))
                return
        steep_here = steep or float(np.max(np.abs(tangent), initial=0)) > SLOPE_LIMIT
        if not steep_here and not _close(tangent, fd_vector, scale, slack=fd_error):
            mismatches.append(Mismatch("jvp", _describe(tangent, fd_vector)))
    guarded("jvp", forward)

    def hvp_by_differences(v):
        """H v by central differences of the gradient along v, and their error."""
        def gradient(h):
            at = [_t(a) for a in shifted(prog.inputs, v, h)]
            return [g.numpy() for g in gg.grad(scalar, argnums=argnums)(*at)]
        return _difference(gradient, EPS2)

    def second():
        v = [rng.uniform(-1, 1, size=a.shape) for a in prog.inputs]
        want, errors = hvp_by_differences(v)
        products = {mode: [h.numpy() for h in gg.hvp(scalar, xs, [_t(a) for a in v],
                                                      mode=mode)[1]]
                    for mode in ("fwd", "rev")}
        for i, (f, r) in enumerate(zip(products["fwd"], products["rev"])):
            if not _close(f, r, max(scale, float(np.max(np.abs(r), initial=0))), rtol=1e-7,
                          atol=1e-9):
                mismatches.append(Mismatch("hvp_fwd", f"input {i}: forward over reverse vs "
                                           "reverse over reverse " + _describe(f, r)))
        curved = max(float(np.max(np.abs(a), initial=0))
                     for a in want + products["rev"]) > CURVATURE_LIMIT
        for mode, hv in products.items():
            if curved:
                break            # the gradient turns faster than a difference can follow
            for i, (h, w, e) in enumerate(zip(hv, want, errors)):
                if not _close(h, w, scale, rtol=1e-4, atol=1e-6, slack=e):
                    mismatches.append(Mismatch(f"hvp_{mode}", f"input {i}: "
                                               + _describe(h, w)))
    guarded("hvp", second)

    def jacobians():
        x0 = xs[0]
        if x0.numel() > 12 or ref.size > 16:
            return
        rest = xs[1:]
        jf = gg.jacobian(lambda t: fn(t, *rest), x0, mode="fwd").numpy()
        jr = gg.jacobian(lambda t: fn(t, *rest), x0, mode="rev").numpy()
        if not _close(jf, jr, max(scale, float(np.max(np.abs(jr), initial=0))), rtol=1e-9,
                      atol=1e-10):
            mismatches.append(Mismatch("jacobian", "fwd vs rev " + _describe(jf, jr)))
        d0 = directions[0]
        dirs = [d0] + [np.zeros_like(a) for a in prog.inputs[1:]]
        (fd,), (error,) = _difference(lambda h: [np_value(shifted(prog.inputs, dirs, h))],
                                      EPS1)
        got = np.tensordot(jf, d0, axes=d0.ndim) if d0.ndim else jf * d0
        if max(float(np.max(np.abs(a), initial=0)) for a in (got, fd)) > SLOPE_LIMIT:
            return
        if not _close(got, fd, scale, slack=error):
            mismatches.append(Mismatch("jacobian", "J u " + _describe(got, fd)))
    guarded("jacobian", jacobians)

    if torch is not None:
        guarded("torch", lambda: _check_torch(prog, torch, xs, grads, scalar, scale,
                                              mismatches, rng, hvp_by_differences,
                                              [] if notes is None else notes))
    return mismatches


def _check_torch(prog, torch, xs, grads, scalar, scale, mismatches, rng, hvp_by_differences,
                 notes):
    """Value, gradient and Hessian-vector product against torch.func. Both are float64
    with different operation orders: in steep programs (1 - tanh(x)^2 near x = 10, say)
    either can be 1e-8 off the exact value, hence the tolerance. Where the Hessian-vector
    products disagree, central differences decide: PyTorch alone off them is a note, not a
    mismatch (its forward over reverse of logcumsumexp is, for one)."""
    fn = _compile(prog.source("torch"), dict(_SHARED, torch=torch))
    tx = [torch.tensor(a, dtype=torch.float64) for a in prog.inputs]
    w = torch.tensor(prog.weights, dtype=torch.float64)
    out = fn(*tx).numpy(force=True)
    got = _compile(prog.source(), GG_NAMESPACE)(*xs).numpy()
    if not _close(got, out, scale, rtol=1e-9, atol=1e-11):
        mismatches.append(Mismatch("torch_value", _describe(got, out)))
    argnums = tuple(range(len(tx)))

    def t_scalar(*a):
        return (fn(*a) * w).sum()
    tg = torch.func.grad(t_scalar, argnums=argnums)(*tx)
    for i, (g, t) in enumerate(zip(grads, tg)):
        t = t.numpy(force=True)
        if not _close(g.numpy(), t, scale, rtol=1e-6, atol=1e-9):
            mismatches.append(Mismatch("torch_grad", f"input {i}: " + _describe(g.numpy(), t)))
    v = [rng.uniform(-1, 1, size=a.shape) for a in prog.inputs]
    _, th = torch.func.jvp(torch.func.grad(t_scalar, argnums=argnums), tuple(tx),
                           tuple(torch.tensor(a) for a in v))
    _, hv = gg.hvp(scalar, xs, [_t(a) for a in v])
    differences = None
    for i, (h, t) in enumerate(zip(hv, th)):
        h, t = h.numpy(), t.numpy(force=True)
        if _close(h, t, scale, rtol=1e-6, atol=1e-9):
            continue
        if differences is None:
            differences = hvp_by_differences(v)
        want, error = differences[0][i], differences[1][i]
        ours, theirs = (float(np.max(np.abs(a - want), initial=0)) for a in (h, t))
        if _close(h, want, scale, rtol=1e-4, atol=1e-6, slack=error) and theirs > 10 * ours:
            notes.append(f"torch_hvp input {i}: PyTorch {_describe(t, want)} against "
                         "central differences, which gpugrad agrees with")
        else:
            mismatches.append(Mismatch("torch_hvp", f"input {i}: " + _describe(h, t)))


# -- shrinking ---------------------------------------------------------------------------------
def _substituted(prog, removed, by):
    steps = []
    for s in prog.steps:
        if s.out == removed:
            continue
        steps.append(replace(s, args=tuple(by if a == removed else a for a in s.args)))
    output = by if prog.output == removed else prog.output
    return replace(prog, steps=steps, output=output)


def _candidates(prog, shapes):
    # the output moved to an earlier value of the same shape (the weights stay valid)
    for s in prog.steps[:-1]:
        if s.shape == shapes[prog.output]:
            yield _without_dead_steps(replace(prog, output=s.out))
    # one step removed, its uses taken by an operand of the same shape
    for s in reversed(prog.steps):
        for a in dict.fromkeys(s.args):
            if shapes[a] == s.shape:
                yield _without_dead_steps(_substituted(prog, s.out, a))
    # inputs rounded
    rounded = [np.round(a, 1) for a in prog.inputs]
    if any(not np.array_equal(r, a) for r, a in zip(rounded, prog.inputs)):
        yield replace(prog, inputs=rounded)


def shrink(prog, fails, budget=200):
    """A smaller program for which ``fails`` still holds (greedy, first improvement)."""
    improved = True
    while improved and budget > 0:
        improved = False
        shapes = {f"x{i}": a.shape for i, a in enumerate(prog.inputs)}
        shapes.update({s.out: s.shape for s in prog.steps})
        for candidate in _candidates(prog, shapes):
            budget -= 1
            if budget <= 0:
                break
            try:
                if valid(candidate) and fails(candidate):
                    prog, improved = candidate, True
                    break
            except Exception:
                continue
    return prog


def repro(prog, mismatches):
    """A runnable script that rebuilds the program and runs the checks that failed."""
    lines = ["# gpugrad fuzzer failure (run from the repository root):"]
    lines += ["#   " + line for m in mismatches for line in str(m).splitlines()]
    lines += ["import numpy as np", "import gpugrad as gg",
             "import gpugrad.nn.functional as F", "from tests.fuzz import Program, "
             "check_program, Step, _put, _iadd_view, _imul, _dropout_mask  # noqa: F401", "",
             prog.source(), "",
             ]
    for name, a in zip(prog.names(), prog.inputs):
        lines.append(f"{name} = gg.tensor(np.array({a.tolist()!r}), dtype=gg.float64)")
    lines.append(f"print(program({', '.join(prog.names())}))")
    lines.append("")
    lines.append("# the same program as the fuzzer sees it, with every check:")
    lines.append(f"steps = {prog.steps!r}")
    lines.append(f"prog = Program([{', '.join(f'np.array({a.tolist()!r})' for a in prog.inputs)}]"
                 f", steps, {prog.output!r}, np.array({prog.weights.tolist()!r}))")
    lines.append("for m in check_program(prog):\n    print(m)")
    return "\n".join(lines)


# -- running -----------------------------------------------------------------------------------
def _torch():
    try:
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    return torch


def run(programs, seed=0, use_torch=True, start=0, report=print, stop_after=5,
        progress_every=0, notes=None):
    """Check ``programs`` programs; returns (checked, failures as (index, repro) pairs).
    Programs where PyTorch alone is off the differences go to ``notes`` as (index, text)."""
    torch = _torch() if use_torch else None
    failures = []
    began = time.perf_counter()
    for index in range(start, start + programs):
        done = index - start
        if progress_every and done and done % progress_every == 0:
            report(f"{done} programs checked, {len(failures)} with mismatches, "
                   f"{time.perf_counter() - began:.0f} s")
        try:
            prog = generate(seed, index)
        except Exception:        # a row drew a step its own reference cannot run
            failures.append((index, traceback.format_exc()))
            report(f"program {index} (seed {seed}) could not be drawn:\n{failures[-1][1]}")
            continue
        found_notes = []
        mismatches = check_program(prog, np.random.default_rng([seed, index, 1]), torch,
                                   found_notes)
        if found_notes:
            text = "\n".join(found_notes) + "\n" + prog.source()
            if notes is not None:
                notes.append((index, text))
            report(f"program {index} (seed {seed}), PyTorch off (not counted):\n{text}\n")
        if mismatches:
            kinds = {m.check for m in mismatches}

            def fails(p, kinds=kinds, index=index):
                found = check_program(p, np.random.default_rng([seed, index, 1]), torch)
                return bool(kinds & {m.check for m in found})
            small = shrink(prog, fails)
            again = check_program(small, np.random.default_rng([seed, index, 1]), torch) \
                or mismatches
            text = repro(small, again)
            failures.append((index, text))
            report(f"program {index} (seed {seed}) failed:\n{text}\n")
            if len(failures) >= stop_after:
                return index - start + 1, failures
    return programs, failures


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0, help="index of the first program")
    parser.add_argument("--no-torch", action="store_true", help="skip the PyTorch cross-check")
    parser.add_argument("--show", type=int, help="print program INDEX and exit")
    parser.add_argument("--max-failures", type=int, default=20)
    parser.add_argument("--progress", type=int, default=1000, metavar="N",
                        help="report every N programs (0: never)")
    args = parser.parse_args(argv)
    if args.show is not None:
        prog = generate(args.seed, args.show)
        print(prog.source())
        return 0
    began = time.perf_counter()
    report = lambda text: print(text, flush=True)     # noqa: E731
    notes = []
    checked, failures = run(args.programs, args.seed, not args.no_torch, args.start,
                            report=report, stop_after=args.max_failures,
                            progress_every=args.progress, notes=notes)
    elapsed = time.perf_counter() - began
    print(f"{checked} programs checked (seed {args.seed}, from {args.start}) in {elapsed:.0f} s"
          f", torch {'on' if not args.no_torch and _torch() else 'off'}: "
          f"{len(failures)} with mismatches; {len(notes)} where PyTorch alone was off the "
          "differences")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
