"""Forward mode: tangents pushed through the JVP rules, tagged by level, so that nested
``jvp`` calls never confuse their perturbations."""
from __future__ import annotations

from .. import ops
from .._tensor import Tensor, wrap
from . import graph
from .mode import enter_forward_level, exit_forward_level, state


def _propagate(op, inputs, out, p):
    st = state
    active, limit = st.fw_levels, st.fw_limit
    levels = None
    for x in inputs:
        if isinstance(x, Tensor) and x._tangents:
            for level in x._tangents:
                if level in active and level < limit:
                    if levels is None:
                        levels = set()
                    levels.add(level)
    if not levels:
        return
    # outer levels first: the rule of an inner level then sees the outer tangents of
    # everything it reads, the output included
    for level in sorted(levels):
        ts = tuple(x._tangents.get(level) if isinstance(x, Tensor) and x._tangents else None
                   for x in inputs)
        st.fw_limit = level
        try:
            t = op.jvp(ts, inputs, out, p)
            if t is not None:
                if t.shape != out.shape:
                    t = ops.broadcast_to(t, out.shape)
                if t.dtype != out.dtype:
                    t = ops.cast(t, out.dtype)
        finally:
            st.fw_limit = limit
        if t is not None:
            if out._tangents is None:
                out._tangents = {}
            out._tangents[level] = t
    if out._node is not None and out._node.out is not None:
        out._node.out_tangents = out._tangents


graph.propagate_tangents = _propagate


def _check_pair(i, primal, tangent):
    if not isinstance(primal, Tensor) or not isinstance(tangent, Tensor):
        raise TypeError(f"jvp: primal and tangent {i} must be Tensors, got "
                        f"{type(primal).__name__} and {type(tangent).__name__}")
    if primal.shape != tangent.shape:
        raise ValueError(f"jvp: tangent {i} has shape {tuple(tangent.shape)}, its primal "
                         f"{tuple(primal.shape)}")
    if primal.dtype != tangent.dtype:
        raise TypeError(f"jvp: tangent {i} has dtype {tangent.dtype}, its primal {primal.dtype}")
    if primal.device is not tangent.device:
        raise ValueError(f"jvp: tangent {i} is on {tangent.device}, its primal on "
                         f"{primal.device}")


def _zero_tangent(out):
    dev = out.device
    return wrap(dev.allocate(dev.xp.zeros, out.shape, out.dtype), dev)


def jvp(f, primals, tangents):
    """Evaluate ``f(*primals)`` and its directional derivative along ``tangents``.

    Returns ``(out, tangent_out)``; tuples of outputs give tuples of tangents.
    Nested calls never confuse their perturbations: each call is its own level.

    >>> import gpugrad as gg
    >>> x = gg.tensor([1.0, 2.0])
    >>> out, t = gg.jvp(lambda x: (x * x).sum(), (x,), (gg.ones_like(x),))
    >>> float(t)
    6.0
    """
    primals = tuple(primals)
    tangents = tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"jvp: {len(primals)} primals but {len(tangents)} tangents")
    for i, (p, t) in enumerate(zip(primals, tangents)):
        _check_pair(i, p, t)
    level = enter_forward_level()
    try:
        inputs = []
        for p, t in zip(primals, tangents):
            alias = ops.identity(p)
            alias._tangents = dict(p._tangents) if p._tangents else {}
            alias._tangents[level] = t
            inputs.append(alias)
        out = f(*inputs)
    finally:
        exit_forward_level(level)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    results = []
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"jvp: f must return Tensors, got {type(o).__name__}")
        # read, not popped: the same tensor may be returned twice, or share its array
        t = o._tangents.get(level) if o._tangents else None
        results.append(_zero_tangent(o) if t is None else t)
    if isinstance(out, (tuple, list)):
        return out, type(out)(results)
    return out, results[0]
