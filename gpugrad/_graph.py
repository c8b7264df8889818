"""Recording: the Op declaration, the Node it leaves in the graph, and ``apply``, the
one call path every op goes through (forward kernel, node, forward-mode tangents).

This is the hot path of the engine: no per-call dict building, no dtype inference
beyond what the kernel does, no recording work under ``no_grad``.
"""
from __future__ import annotations

import itertools
import weakref

import numpy as np

from . import _device
from ._tensor import Tensor, _clock, _new

TRACK_MIN_BYTES = _device.TRACK_MIN_BYTES
_np_generic = np.generic
_np_asarray = np.asarray

# -- modes ---------------------------------------------------------------------------
_grad_enabled = True
# forward mode: ids of the active levels, and the id at or above which tangents are
# not propagated (set while the JVP rule of that level runs)
_fw_active: set = set()
_fw_limit = float("inf")
_fw_next_id = [0]
# creation order of nodes: every node is made after its parents, so descending order is a
# reverse topological order
_next_seq = itertools.count().__next__
# the active gg.profiler.profile(), if any; and whether ops now run for a backward pass
profiler = None
in_backward = False


def run_forward(op, dev, p, arrays):
    """An op's forward kernel on its device (the profiler's way in)."""
    with dev.context():
        if op.kernel is not None:
            return dev.fn[op.kernel](*arrays)
        return op.forward(dev, p, *arrays)


def is_grad_enabled():
    return _grad_enabled


def set_grad_enabled(flag):
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = bool(flag)
    return previous


class _GradMode:
    _flag = True

    def __enter__(self):
        self._previous = set_grad_enabled(self._flag)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._previous)
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with type(self)():
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager (or decorator) that records nothing for backward."""
    _flag = False


class enable_grad(_GradMode):
    """Context manager (or decorator) that turns recording back on inside no_grad."""
    _flag = True


def enter_forward_level():
    _fw_next_id[0] += 1
    level = _fw_next_id[0]
    _fw_active.add(level)
    return level


def exit_forward_level(level):
    _fw_active.discard(level)


# -- ops -----------------------------------------------------------------------------
class Op:
    """One primitive: forward kernel, VJP, JVP, what it saves, and its cost.

    ``kernel`` names the forward kernel when it takes the arrays alone; otherwise
    ``forward(dev, p, *arrays) -> array`` runs it, ``p`` holding the op's non-tensor
    parameters (axis, shape, ...).
    ``vjp(g, ins, out, p, needs) -> tuple`` maps the output cotangent to one cotangent per
    input (None for a zero or an input that needs none); ``ins`` holds the saved inputs
    (None where not saved) and ``out`` the output when ``save_output``.
    ``jvp(ts, ins, out, p) -> Tensor | None`` maps input tangents (None for zero) to the
    output tangent. Both are written with gpugrad ops, so they can be differentiated.
    ``cost(in_shapes, out_shape, p) -> (flops, elements_moved)`` feeds the profiler, which
    turns elements into bytes with the output's item size.
    """

    name = "op"
    save_inputs = None        # None, True (all), or a tuple of booleans, one per input
    save_output = False
    view = False              # the output shares memory with input 0
    broadcasting = False      # inputs are broadcast against each other (the scheduler sums
                              # each cotangent back to its input's shape)
    kernel = None             # forward is this entry of the device's kernel table (a CUDA
                              # kernel or its twin, else a ufunc of the array module), called
                              # with the arrays by apply: one Python call less on the hot path

    @staticmethod
    def cost(in_shapes, out_shape, p):
        n = _prod(out_shape)
        return n, n * (len(in_shapes) + 1)

    @classmethod
    def vjp(cls, g, ins, out, p, needs):
        raise NotImplementedError(f"op '{cls.name}' has no VJP rule")

    @classmethod
    def jvp(cls, ts, ins, out, p):
        raise NotImplementedError(f"op '{cls.name}' has no JVP rule")


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


class Node:
    """What the backward pass needs of one recorded op call. A leaf tensor that
    requires grad gets a node of its own (op ``AccumulateGrad``) that adds the
    gradient arriving at it into ``.grad``."""

    __slots__ = ("op", "parents", "ins", "out", "out_ver", "stamp", "seq", "p", "shape", "dtype",
                 "dev", "released", "retained", "out_tangents", "leaf", "__weakref__")

    def retain(self, tensor):
        self.retained = weakref.ref(tensor)

    @property
    def name(self):
        return self.op.name

    def __repr__(self):
        return f"<{self.op.name}>"

    def saved_output(self, grad_mode):
        """The output rebuilt as a tensor attached to this node, so that a recorded
        backward differentiates through it."""
        t = _new(Tensor)
        t._data = self.out
        t.device = self.dev
        t._rg = grad_mode
        t._grad = None
        t._node = self if grad_mode else None
        t._acc = None
        t._ver = self.out_ver
        t._tangents = self.out_tangents
        return t


class AccumulateGrad(Op):
    """The sink of a leaf tensor's gradient."""
    name = "AccumulateGrad"


def leaf_node(t):
    """The AccumulateGrad node of a leaf tensor; it refers to the tensor weakly, so that
    tensor and node do not keep each other alive."""
    node = t._acc
    if node is None:
        node = _new(Node)
        node.op = AccumulateGrad
        node.parents = ()
        node.ins = None
        node.out = None
        node.released = False
        node.retained = None
        node.leaf = weakref.ref(t)
        node.seq = _next_seq()
        node.shape = t._data.shape
        node.dtype = t._data.dtype
        t._acc = node
    return node


def _device_mismatch(op, a, b):
    return ValueError(f"{op.name}: expected all tensors on one device, got {a} and {b}")


def apply(op, inputs, p=None):
    """Run ``op`` on ``inputs`` (Tensors or Python scalars) and record it when needed."""
    dev = None
    parents = None
    record = _grad_enabled
    arrays = []
    for i, x in enumerate(inputs):
        if x.__class__ is Tensor or isinstance(x, Tensor):
            xdev = x.device
            if dev is None:
                dev = xdev
            elif xdev is not dev:
                raise _device_mismatch(op, dev, xdev)
            arrays.append(x._data)
            if x._rg and record:
                if parents is None:
                    parents = [None] * len(inputs)
                node = x._node
                parents[i] = node if node is not None else (x._acc or leaf_node(x))
        else:
            arrays.append(x)
    try:
        if profiler is not None:
            data = profiler.run(op, dev, p, arrays)
        elif dev.index:
            with dev.context():
                data = op.forward(dev, p, *arrays)
        elif op.kernel is not None:
            data = dev.fn[op.kernel](*arrays)
        else:
            data = op.forward(dev, p, *arrays)
    except ValueError:
        if op.broadcasting:
            _check_broadcast(op, arrays)
        raise
    if isinstance(data, _np_generic):
        # NumPy returns scalars from 0-d ufunc calls; a tensor always holds an array
        data = _np_asarray(data)

    out = _new(Tensor)
    out._data = data
    out.device = dev
    out._grad = None
    out._acc = None
    out._tangents = None
    if op.view:
        out._ver = inputs[0]._ver
    else:
        out._ver = [0]
        if data.nbytes >= TRACK_MIN_BYTES:
            dev.memory.track(data)
    if parents is not None and data.dtype.kind in "fc":
        node = _new(Node)
        node.op = op
        node.parents = parents
        node.shape = data.shape
        node.dtype = data.dtype
        save = op.save_inputs
        if save is None:
            node.ins = None
        elif save is True:
            node.ins = inputs
        else:
            node.ins = tuple([x if keep else None for x, keep in zip(inputs, save)])
        if op.save_output:
            node.out = data
            node.out_ver = out._ver
        else:
            node.out = None
        node.stamp = _clock[0]
        node.seq = _next_seq()
        node.p = p
        node.dev = dev
        node.released = False
        node.retained = None
        node.out_tangents = None
        out._node = node
        out._rg = True
    else:
        out._node = None
        out._rg = False
    if _fw_active:
        _propagate_tangents(op, inputs, out, p)
    return out


def _check_broadcast(op, arrays):
    shapes = [tuple(a.shape) for a in arrays if hasattr(a, "shape")]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op.name}: shapes " + " and ".join(str(s) for s in shapes)
                         + " cannot be broadcast together") from None


def _propagate_tangents(op, inputs, out, p):
    global _fw_limit
    levels = None
    for x in inputs:
        if isinstance(x, Tensor) and x._tangents:
            for level in x._tangents:
                if level in _fw_active and level < _fw_limit:
                    if levels is None:
                        levels = set()
                    levels.add(level)
    if not levels:
        return
    from . import ops
    # outer levels first: the rule of an inner level then sees the outer tangents of
    # everything it reads, the output included
    for level in sorted(levels):
        ts = tuple(x._tangents.get(level) if isinstance(x, Tensor) and x._tangents else None
                   for x in inputs)
        limit = _fw_limit
        _fw_limit = level
        try:
            t = op.jvp(ts, inputs, out, p)
            if t is not None:
                if t.shape != out.shape:
                    t = ops.broadcast_to(t, out.shape)
                if t.dtype != out.dtype:
                    t = ops.cast(t, out.dtype)
        finally:
            _fw_limit = limit
        if t is not None:
            if out._tangents is None:
                out._tangents = {}
            out._tangents[level] = t
    if out._node is not None and out._node.out is not None:
        out._node.out_tangents = out._tangents
