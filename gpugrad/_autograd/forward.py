"""Forward mode: tangents pushed through the JVP rules, tagged by level, so that nested
``jvp`` calls never confuse their perturbations."""
from __future__ import annotations

import weakref

from .. import ops
from .._tensor import Tensor, _new, wrap
from . import graph
from .mode import enter_forward_level, exit_forward_level, kept_tangents, state


class Tangents(dict):
    """A tensor's tangents by level. Never changed once a tensor holds it (several tensors
    may share one): a new level makes a new dict. A node can refer to it weakly."""
    __slots__ = ("__weakref__",)


def _output_twin(out):
    """``out`` as a second Tensor object (same array, version counter and node) carrying
    the tangents ``out`` has so far. JVP rules read the output through it, so that a
    tangent's graph never refers back to the tensor that holds that tangent (a cycle only
    the garbage collector could free)."""
    twin = _new(Tensor)
    twin._data = out._data
    twin.device = out.device
    twin._grad = None
    twin._node = out._node
    twin._ver = out._ver
    twin._tangents = out._tangents
    return twin


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
        # a backward without create_graph runs its rules unrecorded, but a tangent that
        # requires grad (reverse over forward over reverse) must keep its graph
        record = (st.in_backward and not st.grad_enabled
                  and any(t is not None and t._node is not None for t in ts))
        if record:
            st.grad_enabled = True
        try:
            t = op.jvp(ts, inputs, _output_twin(out), p)
            if t is not None:
                if t.shape != out.shape:
                    t = ops.broadcast_to(t, out.shape)
                if t.dtype != out.dtype:
                    t = ops.cast(t, out.dtype)
        finally:
            st.fw_limit = limit
            if record:
                st.grad_enabled = False
        if t is not None:
            tangents = Tangents(out._tangents) if out._tangents else Tangents()
            tangents[level] = t
            out._tangents = tangents
    node = out._node
    if node is not None and node.out is not None and out._tangents is not None:
        _keep_for_backward(node, out._tangents)


def _keep_for_backward(node, tangents):
    """Let ``node`` (which saved its output) find the output's tangents in backward.

    The tangent of an output is often computed from that output, so its graph leads back
    to the node: the node refers to the tangents weakly, and each active level keeps them
    alive until it ends (after it they are never read)."""
    node.out_tangents = weakref.ref(tangents)
    for level in tangents:
        keep = kept_tangents.get(level)
        if keep is not None:
            keep.append(tangents)


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
            tangents = Tangents(p._tangents) if p._tangents else Tangents()
            tangents[level] = t
            alias._tangents = tangents
            inputs.append(alias)
        out = f(*inputs)
    finally:
        exit_forward_level(level)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"jvp: f must return Tensors, got {type(o).__name__}")
    # every tangent read before the level is dropped from the outputs: they may be one
    # tensor twice, or share a tangent dict (which is therefore replaced, not changed)
    found = [o._tangents.get(level) if o._tangents else None for o in outs]
    for o in outs:
        if o._tangents and level in o._tangents:
            rest = {k: v for k, v in o._tangents.items() if k != level}
            o._tangents = Tangents(rest) if rest else None
    results = [_zero_tangent(o) if t is None else t for o, t in zip(outs, found)]
    if isinstance(out, (tuple, list)):
        return out, type(out)(results)
    return out, results[0]
