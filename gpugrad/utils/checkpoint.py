"""Gradient checkpointing, as PyTorch's non-reentrant ``torch.utils.checkpoint``.

``checkpoint(fn, *args)`` runs ``fn`` recording its graph as usual, then cuts that
graph out: one node stands for the whole region, whose parents are the nodes outside it
that the region read (its arguments, the parameters it used, any outside tensor it
closed over). The region's activations are freed as soon as the forward returns. When
backward reaches the node, ``fn`` runs again on the saved arguments, with the random
generators put back where they were and the autocast state of the forward, and the
region's gradients are taken through the recomputed graph up to the region's boundary
(``create_graph`` works: the recomputed graph is then kept). Like every rule, the
region's VJP takes bare arrays when the backward records nothing.
"""
from collections import namedtuple as _namedtuple

import numpy as _np

from .. import _autocast, _device
from .. import ops as _ops
from .._autograd import graph as _graph
from .._autograd.backward import run_backward as _run_backward
from .._autograd.graph import Node as _Node
from .._autograd.graph import Op as _Op
from .._autograd.mode import enable_grad, is_grad_enabled
from .._tensor import Tensor, _new
from .._tensor import next_tick as _next_tick
from .._tensor import wrap as _wrap

__all__ = ["checkpoint", "checkpoint_sequential"]


# -- random state -------------------------------------------------------------------------
def _capture_rng():
    """A token per device from which its random stream can be put back to this point."""
    return {dev: dev.rng_state() for dev in _device.devices()}


def _set_rng(tokens):
    for dev, token in tokens.items():
        dev.set_rng_state(token)


# -- the region's nodes ---------------------------------------------------------------------
class _Checkpoint(_Op):
    """out = fn(*args), recomputed in backward; the node's parents are the region's
    boundary. Not in the registry: no op call makes it, ``checkpoint`` records it."""
    name = "checkpoint"
    params = ("fn", "kwargs", "rng", "autocast", "boundary", "arg_nodes", "arg_devices",
              "layout")
    Params = _namedtuple("CheckpointParams", params)

    def vjp(self, g, ins, out, p, needs):
        create_graph = is_grad_enabled()
        args = []
        for x, node, dev in zip(ins, p.arg_nodes, p.arg_devices):
            if dev is not None and not isinstance(x, Tensor):
                # a backward that records nothing hands the saved arguments as arrays
                x = _wrap(x, dev)
                x._node = node
            args.append(x)
        restore = None
        if p.rng is not None:
            restore = _capture_rng()
            _set_rng(p.rng)
        previous = _autocast.push(p.autocast)
        try:
            with enable_grad():
                outputs = p.fn(*args, **p.kwargs)
        finally:
            _autocast.pop(previous)
            if restore is not None:
                _set_rng(restore)
        outs = _flatten(outputs)
        seeds = []
        for o, c in zip(outs, _unpack(g, outs, p.layout)):
            if c is not None and isinstance(o, Tensor) and o._node is not None:
                seeds.append((o._node, c if isinstance(c, Tensor) else _wrap(c, o.device)))
        if not seeds:
            return (None,) * len(needs)
        targets = {node for node, need in zip(p.boundary, needs) if need}
        captured = _run_backward(seeds, create_graph, create_graph, targets=targets,
                                stop_at_targets=True)
        return tuple(captured.get(node) if need else None
                     for node, need in zip(p.boundary, needs))


class _CheckpointOutput(_Op):
    """Output ``index`` of a region with several: its cotangent placed in a flat slot of
    the region's node, so that the scheduler sums the outputs' cotangents there."""
    name = "checkpoint_output"
    params = ("index", "layout")
    Params = _namedtuple("CheckpointOutputParams", params)

    def vjp(self, g, ins, out, p, needs):
        offsets, _ = p.layout
        start, stop = offsets[p.index], offsets[p.index + 1]
        flat = _ops.reshape(g, (stop - start,))
        return (_ops.index_add_zeros(flat, (slice(start, stop),), (offsets[-1],), True),)


_Checkpoint = _Checkpoint()
_CheckpointOutput = _CheckpointOutput()


def _flatten(outputs):
    return list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]


def _unpack(g, outs, layout):
    """The cotangent of each output (arrays or tensors, as g): g itself for one output,
    else its pieces of the flat slot."""
    if layout is None:
        return [g]
    offsets, shapes = layout
    pieces = []
    for i, o in enumerate(outs):
        if shapes[i] is None:
            pieces.append(None)
            continue
        piece = _ops.reshape(_ops.getitem(g, (slice(offsets[i], offsets[i + 1]),), True), shapes[i])
        if piece.dtype != o.dtype:
            piece = _ops.cast(piece, o.dtype)
        pieces.append(piece)
    return pieces


def _new_node(op, parents, ins, p, shape, dtype, dev):
    node = _new(_Node)
    node.op = op
    node.parents = parents
    node.ins = ins
    if ins is not None:
        node.arrays = [x._data if isinstance(x, Tensor) else x for x in ins]
    node.out = None
    node.out_ver = None
    node.seq = _next_tick()
    node.p = p
    node.shape = shape
    node.dtype = dtype
    node.dev = dev
    node.retained = None
    node.out_tangents = None
    if _graph.on_record is not None:
        _graph.on_record(node)
    return node


def _attach(t, node):
    """A tensor sharing t's data (and version counter) whose gradient flows into node."""
    out = t.detach()
    out._node = node
    out._tangents = t._tangents     # forward-mode tangents came through fn's own ops
    return out


def _boundary(roots, start):
    """Nodes outside the region that the region's outputs depend on, in creation order:
    leaves' gradient sinks, and nodes recorded before the region began."""
    found = set()
    seen = set()
    stack = list(roots)
    while stack:
        node = stack.pop()
        if node in seen:
            continue
        seen.add(node)
        if node.leaf is not None or node.seq < start:
            found.add(node)
            continue
        stack.extend(p for p in node.parents if p is not None)
    return sorted(found, key=lambda n: n.seq)


def checkpoint(function, *args, use_reentrant=None, preserve_rng_state=True, **kwargs):
    """``function(*args, **kwargs)`` without keeping its activations: they are
    recomputed in backward. Same values and gradients as calling ``function``.

    >>> import gpugrad as gg
    >>> layer = gg.nn.Linear(4, 4)
    >>> x = gg.randn(2, 4, requires_grad=True)
    >>> y = gg.checkpoint(lambda t: gg.tanh(layer(t)), x)
    >>> y.sum().backward()
    >>> x.grad.shape, layer.weight.grad.shape
    ((2, 4), (4, 4))
    """
    if use_reentrant:
        raise ValueError("checkpoint: only the non-reentrant form is implemented "
                         "(use_reentrant=False, the default)")
    if not callable(function):
        raise TypeError(f"checkpoint: function must be callable, got {type(function).__name__}")
    if not is_grad_enabled():
        return function(*args, **kwargs)
    rng = _capture_rng() if preserve_rng_state else None
    start = _next_tick()          # every node the region records comes after this number
    outputs = function(*args, **kwargs)
    outs = _flatten(outputs)
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor) and o is not None and not _np.isscalar(o):
            raise TypeError(f"checkpoint: the function returned a {type(o).__name__} at "
                            f"position {i}; only Tensors (or tuples of them) are supported")
    grad_outs = [o for o in outs if isinstance(o, Tensor) and o._node is not None]
    if not grad_outs:
        return outputs
    boundary = _boundary([o._node for o in grad_outs], start)
    dev = grad_outs[0].device
    saved = tuple(args)
    arg_nodes = tuple(a._node if isinstance(a, Tensor) else None for a in saved)
    arg_devices = tuple(a.device if isinstance(a, Tensor) else None for a in saved)

    def params(layout):
        return _Checkpoint.Params(function, kwargs, rng, _autocast.low_dtype(), boundary,
                                 arg_nodes, arg_devices, layout)
    if not isinstance(outputs, (tuple, list)):
        node = _new_node(_Checkpoint, boundary, saved, params(None), outputs.shape,
                         outputs.dtype, dev)
        return _attach(outputs, node)
    # several outputs: one region node whose cotangent is the outputs' cotangents packed flat
    wanted = [isinstance(o, Tensor) and o._node is not None for o in outs]
    sizes = [o.numel() if w else 0 for o, w in zip(outs, wanted)]
    offsets = tuple(int(v) for v in _np.concatenate([[0], _np.cumsum(sizes)]))
    shapes = tuple(o.shape if w else None for o, w in zip(outs, wanted))
    dtype = _np.result_type(*[o.dtype for o in grad_outs])
    layout = (offsets, shapes)
    hub = _new_node(_Checkpoint, boundary, saved, params(layout), (offsets[-1],), dtype, dev)
    result = []
    for i, (o, w) in enumerate(zip(outs, wanted)):
        if w:
            node = _new_node(_CheckpointOutput, [hub], None, _CheckpointOutput.Params(i, layout),
                             o.shape, o.dtype, o.device)
            result.append(_attach(o, node))
        else:
            result.append(o)
    return type(outputs)(result) if isinstance(outputs, tuple) else result


def checkpoint_sequential(functions, segments, input, use_reentrant=None, **kwargs):
    """Run ``functions`` (a Sequential or a list of modules) in ``segments`` checkpointed
    pieces, as torch.utils.checkpoint.checkpoint_sequential."""
    functions = list(functions)
    if segments < 1:
        raise ValueError(f"checkpoint_sequential: segments must be >= 1, got {segments}")
    size = -(-len(functions) // segments)

    def run(chunk):
        def forward(x):
            for f in chunk:
                x = f(x)
            return x
        return forward
    x = input
    for i in range(0, len(functions), size):
        x = checkpoint(run(functions[i:i + size]), x, use_reentrant=use_reentrant, **kwargs)
    return x
