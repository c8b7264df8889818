"""The op declaration, the node an op call leaves in the graph, and ``apply``, the one call
path of every op (forward kernel, node, forward-mode tangents).

A primitive is declared once, as a class that ``@primitive`` turns into its single
instance and enters in the registry: its name, its forward (``kernel``, an entry of the
device's kernel table, or a ``forward`` method), its named parameters, what it saves, its
VJP and JVP rules (methods written with gpugrad ops), and its cost model. Two bases derive
rules where the maths allows: ``Linear`` ops get their JVP from their own forward, and
``Elementwise`` ops state their partial derivatives once and get both VJP and JVP.

Rules are written with gpugrad ops, which also accept bare arrays: when a backward pass
needs no graph of its own (no ``create_graph``, no forward-mode tangents) the scheduler
hands the rules arrays, and the very same formulas run as plain kernel calls.
"""
from __future__ import annotations

import weakref
from collections import namedtuple

import numpy as np

from .. import _device
from .._tensor import Tensor, _new, next_tick, wrap
from .mode import kept_tangents, state, threads_without_grad

# name -> the primitive; tests enumerate it
PRIMITIVES: dict = {}
# the active gg.profiler.profile(), if any (it calls dev.run itself)
profiler = None
# set by the forward-mode module: pushes tangents through an op call
propagate_tangents = None
# array class -> the device that runs kernels on such arrays, where one device serves all
array_homes = _device.ARRAY_HOMES
# while a detect_anomaly context is open: called with each node recorded (its source line),
# and the checker that the backward scheduler hands cotangents to
on_record = None
anomaly = None


class Op:
    """One primitive. Subclasses set the class attributes and the methods they need.

    ``forward(dev, p, *arrays, out=None) -> array`` runs the kernel (when ``kernel`` does
    not name one), writing into ``out`` when given. ``p`` is the op's ``Params`` record.
    ``vjp(g, ins, out, p, needs) -> tuple``: one cotangent per input (None for a zero, or
    where ``needs[i]`` is False); ``ins`` holds the saved inputs (None where not saved),
    ``out`` the output when ``save_output``.
    ``jvp(ts, ins, out, p) -> tangent or None``: ``ts`` one tangent per input (None for a
    zero). ``cost(in_shapes, out_shape, p) -> (flops, elements moved)`` for the profiler.
    """

    name = "op"
    kernel = None             # forward = the device's kernel table entry of this name
    params = ()               # names of the parameters; @primitive makes ``Params`` from them
    save_inputs = None        # None, True (all), or one boolean per input
    save_output = False
    view = False              # the output shares memory (and version counter) with input 0
    broadcasting = False      # inputs broadcast together: cotangents are summed back

    def forward(self, dev, p, *arrays, out=None):
        raise NotImplementedError(f"op '{self.name}' has no forward")

    def vjp(self, g, ins, out, p, needs):
        raise NotImplementedError(f"op '{self.name}' has no VJP rule")

    def jvp(self, ts, ins, out, p):
        raise NotImplementedError(f"op '{self.name}' has no JVP rule")

    def cost(self, in_shapes, out_shape, p):
        n = _prod(out_shape)
        return n, n * (len(in_shapes) + 1)

    def __repr__(self):
        return f"<primitive {self.name}>"


def primitive(cls):
    """Class decorator: the single instance of an op class, entered in the registry."""
    return register(cls())


def register(op):
    """Enter an op instance in the registry (ops made from a table row come this way)."""
    if op.params and not hasattr(op, "Params"):
        op.Params = namedtuple(f"{type(op).__name__}Params", op.params)
    if op.name in PRIMITIVES:
        raise ValueError(f"two primitives are named '{op.name}'")
    PRIMITIVES[op.name] = op
    return op


class Linear(Op):
    """An op linear in its inputs taken together (reshape, sum, add, getitem, ...): its
    JVP is the op itself applied to the tangents."""

    def jvp(self, ts, ins, out, p):
        if len(ts) == 1:
            return None if ts[0] is None else apply(self, ts, p)
        if all(t is None for t in ts):
            return None
        return apply(self, tuple(zero_like(x) if t is None else t for t, x in zip(ts, ins)), p)


class Elementwise(Op):
    """An op that states its partial derivatives once, ``partials(ins, out, p, needs)``,
    one per input (None where not needed): the VJP is ``g * d_i`` and the JVP
    ``sum_i t_i * d_i``."""

    broadcasting = True

    def partials(self, ins, out, p, needs):
        raise NotImplementedError

    def vjp(self, g, ins, out, p, needs):
        ds = self.partials(ins, out, p, needs)
        if len(ds) == 1:
            return (g * ds[0],)
        if len(ds) == 2:        # the common binary case, without a comprehension's frame
            da, db = ds
            return (None if da is None else g * da), (None if db is None else g * db)
        return [None if d is None else g * d for d in ds]

    def jvp(self, ts, ins, out, p):
        ds = self.partials(ins, out, p, tuple(t is not None for t in ts))
        total = None
        for t, d in zip(ts, ds):
            if t is not None and d is not None:
                total = t * d if total is None else total + t * d
        return total


def zero_like(x):
    """A zero of x's shape and dtype (0 for a Python scalar)."""
    if isinstance(x, Tensor):
        return wrap(x.device.allocate(x.device.xp.zeros, x.shape, x.dtype), x.device)
    return 0


def _prod(shape):
    n = 1
    for s in shape:
        n *= s
    return n


# -- the graph ----------------------------------------------------------------------------------
# ins of a node whose saved values a backward pass has released
RELEASED = ("released",)


class Node:
    """What the backward pass needs of one recorded op call: the op and its parameters,
    the nodes of its inputs, what it saved, and the shape and dtype of its output."""

    # retained: None, or the TensorHooks of the tensor this node made (hooks, retain_grad)
    # arrays: the saved inputs' arrays, set (and read) only where ins is not None
    __slots__ = ("op", "parents", "ins", "arrays", "out", "out_ver", "seq", "p", "shape", "dtype",
                 "dev", "retained", "out_tangents", "__weakref__")
    leaf = None

    @property
    def name(self):
        return self.op.name

    @property
    def released(self):
        """Whether a backward pass has freed what this node saved."""
        return self.ins is RELEASED

    def __repr__(self):
        return f"<{self.op.name}>"

    def saved_inputs(self, grad_mode):
        """The saved inputs as a recorded backward reads them: each tensor rebuilt from the
        array, version counter and node it had when saved (a number or an array constant
        as it was; None where nothing was saved)."""
        saved = []
        for x, arr, parent in zip(self.ins, self.arrays, self.parents):
            if x.__class__ is list:          # a tensor's version counter
                version = x
                x = wrap(arr, self.dev)
                x._node = parent if grad_mode else None
                x._ver = version
            elif x is None:
                x = arr
            saved.append(x)
        return tuple(saved)

    def saved_output(self, grad_mode):
        """The saved output as a tensor attached to this node, so that a recorded backward
        differentiates through it."""
        t = wrap(self.out, self.dev)
        t._node = self if grad_mode else None
        t._ver = self.out_ver
        tangents = self.out_tangents          # held weakly: see forward._keep_for_backward
        t._tangents = None if tangents is None else tangents()
        return t


def _device_mismatch(op, a, b):
    return ValueError(f"{op.name}: expected all tensors on one device, got {a} and {b}")


def apply(op, inputs, p=None):
    """Run ``op`` on ``inputs`` (Tensors, Python scalars) and record it when needed.
    Given bare arrays instead of Tensors, it runs the kernel and returns the array."""
    first = inputs[0].__class__
    if first is not Tensor:
        home = array_homes.get(first)
        if home is not None and profiler is None:
            for x in inputs:
                if isinstance(x, Tensor):
                    break          # an array constant beside tensors: the recorded path below
            else:
                return home.run(op, p, inputs)     # a rule inside a backward recording nothing
    record = state.grad_enabled if threads_without_grad[0] else True
    dev = None
    parents = None
    arrays = list(inputs)
    i = 0
    for x in inputs:
        if x.__class__ is Tensor or isinstance(x, Tensor):
            xdev = x.device
            if dev is None:
                dev = xdev
            elif xdev is not dev:
                raise _device_mismatch(op, dev, xdev)
            arrays[i] = x._data
            if record:
                node = x._node
                if node is not None:
                    if parents is None:
                        parents = [None] * len(inputs)
                    parents[i] = node
                    if not node.seq:
                        node.seq = next_tick()     # a leaf's sink, first consumed here
        i += 1
    if dev is None:
        return run_on_arrays(op, inputs, p)
    arrays = tuple(arrays)       # once: the kernel call and the node take it as it is
    try:
        if profiler is None:
            data = dev.run(op, p, arrays)
        else:
            data = profiler.run(op, dev, p, arrays)
    except ValueError:
        if op.broadcasting:
            _check_broadcast(op, arrays)
        raise

    out = _new(Tensor)
    out._data = data
    out.device = dev
    out._grad = None
    out._tangents = None
    if op.view:
        ver = out._ver = inputs[0]._ver
        out._base = inputs[0]
        if parents is not None:
            note_view(ver, out)
    else:
        out._ver = [0]
    dtype = data.dtype
    if parents is not None and dtype.kind in "fcV":     # V: bfloat16 (ml_dtypes)
        node = _new(Node)
        node.op = op
        node.parents = parents
        save = op.save_inputs
        # saved: the arrays the kernel ran on (a backward recording nothing reads them as
        # they are), and in ``ins`` each tensor input's version counter (None for a number
        # or an input not saved), not the tensor: a tensor object kept for backward would
        # stay alive, traced by the collector, for nothing; a recorded backward rebuilds it
        # (saved_inputs). While a forward-mode level is open the tensors themselves are
        # kept, tangents and all.
        if save is None:
            node.ins = None
        elif save is True:
            node.arrays = arrays     # of arrays and numbers: the collector untracks it
            if kept_tangents:
                node.ins = inputs
            elif len(inputs) == 2:
                a, b = inputs
                node.ins = (a._ver if isinstance(a, Tensor) else None,
                            b._ver if isinstance(b, Tensor) else None)
            else:
                node.ins = tuple([x._ver if isinstance(x, Tensor) else None for x in inputs])
        else:
            node.arrays = tuple([x if keep else None for x, keep in zip(arrays, save)])
            if kept_tangents:
                node.ins = tuple([x if keep else None for x, keep in zip(inputs, save)])
            else:
                node.ins = tuple([x._ver if keep and isinstance(x, Tensor) else None
                                  for x, keep in zip(inputs, save)])
        if op.save_output:
            node.out = data
            node.out_ver = out._ver
        else:
            node.out = None
        node.seq = next_tick()
        node.p = p
        node.shape = data.shape
        node.dtype = dtype
        node.dev = dev
        node.retained = None
        node.out_tangents = None
        out._node = node
        if on_record is not None:
            on_record(node)
    else:
        out._node = None
    if kept_tangents and state.fw_levels:     # a forward-mode level is open (in some thread)
        propagate_tangents(op, inputs, out, p)
    return out


def note_view(ver, view):
    """A recorded view shares its base's version counter, ``[version, *views]``: the list
    also holds it, weakly, so that a recorded in-place write to any tensor of the family
    can re-derive every live view from the new base (a view recorded before the write
    must not keep sending gradients through the base's old graph). Dead entries are swept
    whenever the list reaches a power of two, so it stays as long as the live views."""
    n = len(ver)
    if n >= 32 and not n & (n - 1):
        ver[1:] = [ref for ref in ver[1:] if ref() is not None]
    ver.append(weakref.ref(view))


def run_on_arrays(op, inputs, p):
    """An op called on bare arrays (a rule inside a backward pass that records nothing):
    the kernel alone, on the device that owns the arrays."""
    for x in inputs:
        dev = _device.array_device(x) if hasattr(x, "shape") else None
        if dev is not None:
            if profiler is not None:
                arrays = list(inputs)
                return profiler.run(op, dev, p, arrays)
            return dev.run(op, p, inputs)
    raise TypeError(f"{op.name}: expected a Tensor or an array among the inputs, got "
                    + ", ".join(type(x).__name__ for x in inputs))


def _check_broadcast(op, arrays):
    shapes = [tuple(a.shape) for a in arrays if hasattr(a, "shape")]
    try:
        np.broadcast_shapes(*shapes)
    except ValueError:
        raise ValueError(f"{op.name}: shapes " + " and ".join(str(s) for s in shapes)
                         + " cannot be broadcast together") from None
