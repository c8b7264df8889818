"""Forward mode: tangents pushed through the JVP rules, tagged by level."""
from __future__ import annotations

from . import _graph
from ._tensor import Tensor
from .ops import identity


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
    from ._tensor import wrap
    return wrap(out.device.xp.zeros(out.shape, dtype=out.dtype), out.device)


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
    level = _graph.enter_forward_level()
    try:
        inputs = []
        for p, t in zip(primals, tangents):
            alias = identity(p)
            alias._tangents = dict(p._tangents) if p._tangents else {}
            alias._tangents[level] = t
            inputs.append(alias)
        out = f(*inputs)
    finally:
        _graph.exit_forward_level(level)
    outs = out if isinstance(out, (tuple, list)) else (out,)
    results = []
    for o in outs:
        if not isinstance(o, Tensor):
            raise TypeError(f"jvp: f must return Tensors, got {type(o).__name__}")
        t = o._tangents.pop(level, None) if o._tangents else None
        results.append(_zero_tangent(o) if t is None else t)
    if isinstance(out, (tuple, list)):
        return out, type(out)(results)
    return out, results[0]
