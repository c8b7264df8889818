"""``gg.compile``: record a training step once, replay it from a static memory plan.

The first call for an input signature runs the step eagerly with a recorder standing in as
the profiler (``apply`` hands it every op call) and the backward pass running on tensors,
so that every kernel launch, the rules' arithmetic included, is seen. The recording is a
tape of launches over numbered buffers. A liveness plan then places every intermediate
buffer that dies within the step in one arena; buffers that outlive it (gradients, the
returned loss) get their own, and parameters, optimizer state and inputs stay where they
live. Later calls run the tape, each launch writing into its planned buffer (``out=``),
reading the inputs where the caller holds them on the host (the launches that read one are
bound anew when a call passes another array; a strided one, or one a launch takes as a
parameter, is copied into a static buffer, as every input on a GPU is). On the CPU an
optimizer step is replayed as its bookkeeping (``Optimizer._device_updates``: learning
rates, step counts and state read where they live at every replay, so that a scheduler or
``load_state_dict`` between calls is seen) and the host forms of its update kernels, their
temporaries in a scratch of the arena; an optimizer of another kind is replayed as a call
of its ``step()``. A cross-entropy forward and its backward share their softmax on the
host. On a device that captures (a GPU)
the whole step is one CUDA graph: the optimizer does its host bookkeeping and computes its
per-step scalars (lr, bias corrections) in Python as ``step()`` does, writes them into a
scalar feed copied to the device before each launch, and the graph's update kernels read
them there; a state buffer replaced between calls makes the next replay capture anew.
Dropout masks are drawn by a counter-based generator whose counter advances at every
replay.
"""
from __future__ import annotations

import functools
import threading
import warnings
import weakref

import numpy as np

from . import _device, _tensor
from ._autograd import graph as _graph
from ._autograd.mode import state as _mode
from ._tensor import Tensor, wrap
from .kernels import host_blas, reference
from .ops.random import Dropout

__all__ = ["compile", "CompiledStep", "Plan"]

DEFAULT_MAX_PLANS = 8
ALIGN = 64             # bytes: every arena buffer starts on a cache line (and a GPU sector)
# kernels of the array module that take no ``out=``: their result is copied into the plan
_NO_OUT = frozenset({"where"})
# ops whose NumPy twins read each element of their first input before writing that element
# of the output, and nothing else of it (a ufunc over exactly overlapping arrays): a host
# replay may write over that input where it dies at the launch (not on a GPU: the CUDA
# kernels declare their pointers __restrict__)
_IN_PLACE = frozenset({"relu_grad"})
# the host forms of the update kernels that ``Optimizer._device_updates`` names: a host
# replay runs an optimizer step as these calls (the scalars as step() passes them, the
# temporaries in a scratch of the arena)
_HOST_UPDATES = {"sgd_update_dev": reference.sgd_update_host,
                 "adam_update_dev": reference.adam_update_host}


def compile(fn=None, *, max_plans=DEFAULT_MAX_PLANS):
    """Record ``fn`` (a whole training step: zero_grad, forward, loss, backward,
    optimizer.step; it returns the loss, a tuple of tensors, or None) once per input
    signature and replay the recording afterwards.

    >>> import gpugrad as gg
    >>> model = gg.nn.Linear(4, 2)
    >>> opt = gg.optim.SGD(model.parameters(), lr=0.1)
    >>> @gg.compile
    ... def step(x, y):
    ...     opt.zero_grad()
    ...     loss = gg.nn.functional.mse_loss(model(x), y)
    ...     loss.backward()
    ...     opt.step()
    ...     return loss
    >>> x, y = gg.ones(8, 4), gg.zeros(8, 2)
    >>> first, second = step(x, y), step(x, y)   # recorded, then replayed
    >>> step.plan.kernels > 0
    True

    As with ``jax.jit``, the Python of ``fn`` runs only while recording: a print, a list
    append or a counter in it happens once, not at every call. What changes between calls
    must be a tensor argument or live in the model and the optimizer (parameters, learning
    rate, state), which replays read where they live. Reading a value on the host inside
    ``fn`` (``.item()``, ``.tolist()``, ``.numpy()``, ``float(t)``, ``bool(t)``), comparisons
    and random draws other than dropout raise ``RuntimeError`` while recording. A new input
    signature (shapes, dtypes, devices, the number of arguments, non-tensor values) records
    anew, up to ``max_plans`` recordings; past that the step warns once and runs eagerly.
    Returned tensors are fresh at every call and carry no graph. Every tensor that backward
    gives a gradient must be reset inside ``fn`` before backward by ``optimizer.zero_grad()``,
    ``module.zero_grad()`` (either ``set_to_none``) or ``t.grad = None``: eager adds into a
    gradient left standing, which a replay cannot tell from a reset, so recording refuses
    the step then.
    """
    if fn is None:
        return functools.partial(compile, max_plans=max_plans)
    if not callable(fn):
        raise TypeError(f"gg.compile expects a callable, got {type(fn).__name__}")
    if not isinstance(max_plans, int) or isinstance(max_plans, bool) or max_plans < 1:
        raise ValueError(f"gg.compile: max_plans must be a positive integer, got {max_plans!r}")
    return CompiledStep(fn, max_plans)


class CompiledStep:
    """A step function recorded once per input signature and replayed afterwards."""

    def __init__(self, fn, max_plans):
        self.fn = fn
        self.max_plans = max_plans
        self.plans = {}
        self.plan = None          # the most recent call's recording (None: it ran eagerly)
        self._warned = False
        functools.update_wrapper(self, fn)

    def __call__(self, *args, **kwargs):
        key = _signature(args, kwargs)
        plan = self.plans.get(key)
        if plan is None:
            if len(self.plans) >= self.max_plans:
                if not self._warned:
                    self._warned = True
                    warnings.warn(
                        f"gg.compile: {len(self.plans)} input signatures recorded already "
                        f"(max_plans={self.max_plans}); this one and every new one run "
                        "eagerly", RuntimeWarning, stacklevel=2)
                self.plan = None
                return self.fn(*args, **kwargs)
            plan, result = Plan.record(self.fn, args, kwargs)
            self.plans[key] = plan
            self.plan = plan
            return result
        self.plan = plan
        return plan.replay(args, kwargs)

    def __repr__(self):
        return f"<gg.compile of {getattr(self.fn, '__qualname__', self.fn)}: " \
               f"{len(self.plans)} recording(s)>"


def _signature(args, kwargs):
    key = []
    for i, value in enumerate(list(args) + [kwargs[k] for k in sorted(kwargs)]):
        if isinstance(value, Tensor):
            key.append((Tensor, value.shape, value.dtype, value.device, value.requires_grad))
        else:
            try:
                hash(value)
            except TypeError:
                raise TypeError(
                    f"gg.compile: argument {i} is a {type(value).__name__}, which is neither a "
                    "Tensor nor hashable; pass tensors, or values that name a recording "
                    "(numbers, strings, tuples)") from None
            key.append((type(value), value))
    return tuple(sorted(kwargs)), tuple(key)


# -- recording ---------------------------------------------------------------------------------
TEMP, VIEW, EXTERNAL, INPUT = "temp", "view", "external", "input"


class _Slot:
    """One buffer of the recording: made by a recorded launch (temp), a view of another
    slot, an array from outside the step (external: parameters, constants), or an input."""

    __slots__ = ("kind", "shape", "dtype", "nbytes", "root", "ref", "alive", "producer",
                 "first", "last", "offset", "placement")

    def __init__(self, kind, arr, root=None, producer=None):
        self.kind = kind
        self.shape = tuple(arr.shape)
        self.dtype = arr.dtype
        self.nbytes = int(arr.nbytes)
        self.root = root
        self.producer = producer
        self.alive = True
        self.first = self.last = producer
        self.offset = None
        self.placement = None      # "arena", "own" (outlives the step) or None


class _Launch:
    """A recorded kernel launch: op, its parameters, input slots (or literal scalars) and
    output slot."""

    __slots__ = ("op", "dev", "p", "ins", "out", "phase", "shapes")

    def __init__(self, op, dev, p, ins, out, phase, shapes):
        self.op, self.dev, self.p, self.ins, self.out = op, dev, p, ins, out
        self.phase, self.shapes = phase, shapes


class _Literal:
    """A non-array operand (a Python scalar) of a launch, passed as it is."""

    __slots__ = ("value",)

    def __init__(self, value):
        self.value = value


class _Recorder:
    """Stands in for the profiler while the step runs once; ``apply`` hands it every op
    call and ``Optimizer.step`` announces itself to it."""

    def __init__(self, previous):
        self.previous = previous
        self.thread = threading.get_ident()
        self.slots = []
        self.slot_of = {}           # id(array) -> slot index, for arrays alive now
        self.entries = []           # _Launch, or ("grads", {tensor: slot|None}), ("step", opt)
        self.leaves = {}            # id -> tensor: leaves that backward reached
        self.reset = {}             # id -> tensor: gradients reset by a zero_grad in the step
        self.optimizers = []
        self.strong = []            # external arrays, kept so that their ids stay theirs
        self.live_bytes = 0
        self.peak_bytes = 0

    # -- what apply and the optimizer call ---------------------------------------------------
    def run(self, op, dev, p, arrays):
        if threading.get_ident() != self.thread:
            return self._launch(op, dev, p, arrays)
        if op.name == "to_device":
            raise NotImplementedError(
                "gg.compile: a step that moves tensors between devices cannot be recorded "
                "yet; move them before the call")
        ins = tuple(self._ref(a, op) for a in arrays)
        self._check_params(op, p)
        data = self._launch(op, dev, p, arrays)
        if id(data) in self.slot_of and not op.view:
            raise RuntimeError(f"gg.compile: op '{op.name}' returned an array it was given; "
                               "it cannot be replayed into a planned buffer")
        index = len(self.entries)
        if op.view:
            root = ins[0] if isinstance(ins[0], int) else None
            slot = self._new_slot(VIEW, data, root=root, producer=index)
        else:
            slot = self._new_slot(TEMP, data, producer=index)
        shapes = tuple(tuple(a.shape) if hasattr(a, "shape") else () for a in arrays)
        self.entries.append(_Launch(op, dev, p, ins, slot,
                                    "backward" if _mode.in_backward else "forward", shapes))
        return data

    def kernel(self, name, phase, dev, launch, shapes, dtype, flops=0, nbytes=0):
        # the fused updates inside an optimizer step that record_step announced: the step
        # is replayed as a whole, so its kernels run here without being recorded
        if threading.get_ident() == self.thread and not self.optimizers:
            raise RuntimeError(f"gg.compile: kernel '{name}' ran outside the ops and outside "
                               "an optimizer step; it cannot be replayed")
        if self.previous is not None:
            return self.previous.kernel(name, phase, dev, launch, shapes, dtype, flops, nbytes)
        return launch()

    def record_step(self, optimizer):
        if threading.get_ident() != self.thread:
            return
        if optimizer not in self.optimizers:
            self.optimizers.append(optimizer)
        self.entries.append(("grads", self._gradient_state()))
        self.entries.append(("step", optimizer))

    def reset_grads(self, tensors):
        """``Optimizer.zero_grad`` or ``Module.zero_grad`` has just reset these gradients
        (to None or to zeros in place)."""
        if threading.get_ident() != self.thread:
            return
        for t in tensors:
            self.reset[id(t)] = t

    def accumulate_leaf(self, tensor):
        """Backward is about to add a gradient into ``tensor.grad``. A replay hands over the
        gradient the step computed, which is what eager gives only where the step resets the
        gradient before backward: eager adds into whatever ``.grad`` holds at the call. A
        reset the recording cannot see (none at all, a reset after backward) leaves that
        undecided, so it is refused rather than guessed."""
        self.leaves[id(tensor)] = tensor
        grad = tensor._grad
        if grad is not None and self._temp_slot(grad._data) is not None:
            return              # made earlier in this step (a second backward): recorded
        if id(tensor) not in self.reset and self._temp_slot(tensor._data) is None:
            had = "a gradient from before the step" if grad is not None else "no gradient yet"
            raise RuntimeError(
                f"gg.compile: backward gives a gradient to a tensor (shape "
                f"{tuple(tensor.shape)}, {had}) that no optimizer.zero_grad(), "
                "module.zero_grad() or t.grad = None inside the step reset before backward. "
                "Eager calls add into its .grad call after call, and a replay cannot tell "
                "whether the step resets it. Reset it inside the compiled step before "
                "backward, or turn off requires_grad on tensors it does not train")
        if grad is not None:
            # reset to zeros in place (zero_grad(set_to_none=False)): backward adds the
            # gradient to zeros, as eager does; the replay reads zeros of its own rather
            # than an array the user may still hold
            dev = tensor.device
            with dev.context():
                zeros = dev.allocate(dev.xp.zeros, grad.shape, grad.dtype)
            tensor._grad = wrap(zeros, dev)

    # -- bookkeeping ------------------------------------------------------------------------------
    def _launch(self, op, dev, p, arrays):
        if self.previous is not None:
            return self.previous.run(op, dev, p, arrays)
        return dev.run(op, p, arrays)

    def _new_slot(self, kind, arr, root=None, producer=None):
        index = len(self.slots)
        slot = _Slot(kind, arr, root=root, producer=producer)
        self.slots.append(slot)
        key = id(arr)
        self.slot_of[key] = index
        if kind in (TEMP, VIEW):
            slot.ref = weakref.ref(arr, functools.partial(self._died, key, index))
            if kind == TEMP:
                self.live_bytes += slot.nbytes
                self.peak_bytes = max(self.peak_bytes, self.live_bytes)
        else:
            slot.ref = arr
            self.strong.append(arr)
        return index

    def _died(self, key, index, ref):
        slot = self.slots[index]
        slot.alive = False
        if self.slot_of.get(key) == index:
            del self.slot_of[key]
        if slot.kind == TEMP:
            self.live_bytes -= slot.nbytes

    def _temp_slot(self, arr):
        index = self.slot_of.get(id(arr))
        if index is None or self.slots[index].kind == EXTERNAL:
            return None
        return index

    def _ref(self, arr, op):
        if not hasattr(arr, "shape") or not hasattr(arr, "dtype"):
            return _Literal(arr)
        index = self.slot_of.get(id(arr))
        if index is not None:
            return index
        base = getattr(arr, "base", None)
        while base is not None:
            if id(base) in self.slot_of and self.slots[self.slot_of[id(base)]].kind != EXTERNAL:
                raise RuntimeError(
                    f"gg.compile: op '{op.name}' reads an array derived from a recorded result "
                    "outside the kernels; a replay would not redo that derivation")
            base = getattr(base, "base", None)
        return self._new_slot(EXTERNAL, arr)

    def _check_params(self, op, p):
        if p is None:
            return
        for value in _flatten(p):
            if hasattr(value, "shape") and hasattr(value, "dtype"):
                # a constant (or an input's buffer, refreshed in place at every replay) is
                # fine; an array the step computed would be stale at the next replay
                index = self._ref(value, op)
                if self.slots[index].kind not in (EXTERNAL, INPUT):
                    raise RuntimeError(
                        f"gg.compile: op '{op.name}' takes an array computed in the step as a "
                        "parameter (an index tensor?); a replay would reuse the recorded one")

    def _gradient_state(self):
        """{tensor: the slot of its gradient, or None for no gradient} for the leaves
        reached and the parameters of the optimizers seen; gradients from before the step
        (not made by it) are left out: a replay leaves them alone."""
        tensors = list(self.leaves.values())
        for opt in self.optimizers:
            tensors.extend(_optimizer_params(opt))
        state = {}
        for t in tensors:
            if t in state:
                continue
            if t._grad is None:
                state[t] = None
            else:
                index = self._temp_slot(t._grad._data)
                if index is not None:
                    state[t] = index
        return state


def _optimizer_params(opt):
    groups = getattr(opt, "param_groups", None)
    if groups and isinstance(groups[0], dict):
        return [p for g in groups for p in g["params"]]
    return list(opt.params)


def _flatten(value):
    if isinstance(value, (tuple, list)):
        for v in value:
            yield from _flatten(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from _flatten(v)
    else:
        yield value


# -- the plan ----------------------------------------------------------------------------------
class Plan:
    """One recording and its memory plan; ``replay`` runs it.

    ``kernels``: launches recorded (views excluded); ``arena_bytes``: the arena holding
    every intermediate that dies within the step; ``lower_bound_bytes``: the most bytes of
    those intermediates alive at once (no plan can do with less); ``peak_eager_bytes``: the
    most bytes of the step's arrays alive at once when it ran eagerly; ``own_bytes``: the
    buffers that outlive the step (gradients, returned values)."""

    def __init__(self):
        self.launches = []
        self.kernels = 0
        self.arena_bytes = 0
        self.lower_bound_bytes = 0
        self.peak_eager_bytes = 0
        self.own_bytes = 0
        self.in_place = 0
        self.replays = 0

    # -- recording ------------------------------------------------------------------------
    @classmethod
    def record(cls, fn, args, kwargs):
        inputs = []            # (position or keyword, static tensor)

        def static(value, where):
            if not isinstance(value, Tensor):
                return value
            if value.requires_grad:
                raise ValueError(
                    f"gg.compile: input {where} requires grad; a compiled step takes data "
                    "(inputs, labels) as arguments, and parameters from the model it closes "
                    "over")
            dev = value.device
            buf = _aligned_empty(dev, value.shape, value.dtype)
            with dev.context():
                buf[...] = value._data
            t = wrap(buf, dev)
            inputs.append((where, t))
            return t
        static_args = [static(a, i) for i, a in enumerate(args)]
        static_kwargs = {k: static(kwargs[k], len(args) + i) for i, k in enumerate(sorted(kwargs))}

        recorder = _Recorder(_graph.profiler)
        for _, t in inputs:
            recorder._new_slot(INPUT, t._data)
        previous_thread = _device.recording_thread
        previous_listener = _tensor.grad_reset_listener
        _graph.profiler = recorder
        _mode.compiling = recorder
        _device.recording_thread = recorder.thread
        _tensor.grad_reset_listener = recorder.reset_grads
        try:
            result = fn(*static_args, **static_kwargs)
            recorder.entries.append(("grads", recorder._gradient_state()))
        finally:
            _graph.profiler = recorder.previous
            _mode.compiling = None
            _device.recording_thread = previous_thread
            _tensor.grad_reset_listener = previous_listener
        plan = cls()
        plan._build(recorder, inputs, result)
        return plan, plan._results(result, fresh=False)

    def _build(self, rec, inputs, result):
        self.devices = sorted({e.dev for e in rec.entries if isinstance(e, _Launch)}
                              | {t.device for _, t in inputs}, key=str)
        self.inputs = inputs
        self.slots = rec.slots
        self.optimizers = rec.optimizers
        self.peak_eager_bytes = rec.peak_bytes
        self.entries = rec.entries
        self.kernels = sum(1 for e in rec.entries if isinstance(e, _Launch) and not e.op.view)
        # what the step returns: {slot: ...} read at the end of every replay
        self.result_template = _template(result, rec)
        # the tensors whose .data a replay reads where it lives
        self.known = {id(t): t for t in rec.leaves.values()}
        for opt in rec.optimizers:
            for p in _optimizer_params(opt):
                self.known[id(p)] = p
        rec.entries = rec.leaves = rec.optimizers = None
        self._plan_memory()
        self._bind()

    def _plan_memory(self):
        slots = self.slots
        for i, e in enumerate(self.entries):
            if isinstance(e, _Launch):
                for s in e.ins:
                    if isinstance(s, int):
                        _touch(slots, s, i)
            elif e[0] == "grads":
                for s in e[1].values():
                    if s is not None:
                        _touch(slots, s, i + 1)     # the optimizer step after it reads them
        for s in self.result_slots():
            _touch(slots, s, len(self.entries))
        for slot in slots:
            if slot.kind != TEMP:
                continue
            if slot.alive or slot.last >= len(self.entries):
                slot.placement = "own"      # outlives the step: a gradient, a result
                self.own_bytes += slot.nbytes
            else:
                slot.placement = "arena"
        self._xent_pairs = self._cross_entropy_pairs()
        shared = self._in_place()
        arena = [slot for i, slot in enumerate(slots)
                 if slot.placement == "arena" and i not in shared]
        self._host_steps = self._host_updates()
        arena += [scratch for _, _, scratch in self._host_steps.values() if scratch is not None]
        arena += [sums for _, sums in self._xent_pairs.values()]
        self.arena_bytes = _place(arena)
        for index, root in shared.items():
            slots[index].offset = slots[root].offset
        self.shared = shared
        self.in_place = len(shared)
        # the bound of the buffers as placed: a launch in place counts its buffer once
        self.lower_bound_bytes = _lower_bound(arena, len(self.entries))

    def _cross_entropy_pairs(self):
        """{index of a softmax_xent launch: (index of its softmax_xent_grad, the slot of the
        row sums)} for the pairs a host replay runs as one computation: the backward
        reading the forward's logits and labels with only launches between. The forward
        leaves exp(logits - row max) in the backward's output buffer (born at the forward
        now) and the row sums in the arena; the backward divides and subtracts the label's
        1, as its twin does after computing the same exponentials and sums again (the
        NumPy floor never computes the loss: this is the forward's cost beyond it)."""
        pairs = {}
        if not all(dev.is_host and dev.kernels is reference for dev in self.devices):
            return pairs
        entries, slots = self.entries, self.slots
        for i, e in enumerate(entries):
            if not isinstance(e, _Launch) or e.op.name != "softmax_xent" or \
                    len(e.ins) != 2 or not all(isinstance(a, int) for a in e.ins):
                continue
            logits = slots[e.ins[0]]
            if len(logits.shape) != 2 or logits.dtype.kind != "f":
                continue
            for j in range(i + 1, len(entries)):
                b = entries[j]
                if not isinstance(b, _Launch):
                    break           # host work between them: each runs on its own
                if b.op.name != "softmax_xent_grad" or tuple(b.ins[:2]) != tuple(e.ins):
                    continue
                out = slots[b.out]
                if b.dev is e.dev and out.kind == TEMP and out.shape == logits.shape and \
                        out.dtype == logits.dtype:
                    out.first = i
                    pairs[i] = (j, _scratch_slot((logits.shape[0], 1), logits.dtype, i, j))
                break
        return pairs

    def _host_updates(self):
        """{entry index: (optimizer, gradient state, scratch slot or None)} for the optimizer
        steps a host replay runs as calls of the update kernels' host forms rather than
        ``step()`` (whose Python per parameter costs more, and whose twins allocate their
        temporaries): where every device is the host's, the optimizer updates as its class
        does (``_device_updates_ok``), and the step before hands over every gradient it
        reads. The scratch, one block of the largest update's temporary, is placed in the
        arena for that entry alone, where the step's intermediates are dead already."""
        steps = {}
        if not all(dev.is_host and dev.kernels is reference for dev in self.devices):
            return steps
        grads = {}
        for i, e in enumerate(self.entries):
            if isinstance(e, _Launch):
                continue
            if e[0] == "grads":
                grads = e[1]
                continue
            opt = e[1]
            params = _optimizer_params(opt)
            if not opt._device_updates_ok() or any(
                    p not in grads or not p.device.is_host or p.device.kernels is not reference
                    for p in params):
                continue
            sizes = [(reference.update_scratch_size(p._data.size), p._data.dtype.itemsize)
                     for p in params if grads[p] is not None]
            largest = max((n for n, _ in sizes), default=0)
            scratch = None
            if largest >= reference.UPDATE_BLOCK:
                scratch = _scratch_slot((largest * max(size for _, size in sizes),), np.uint8,
                                        i, i)
            steps[i] = (opt, grads, scratch)
        return steps

    def _in_place(self):
        """{output slot: the slot whose buffer it takes}: a launch of an op in _IN_PLACE
        writes over its first input where that input dies there (same shape and dtype,
        both in the arena), as the NumPy floor's ``gin *= mask`` does; the shared buffer
        lives from the input's first use to the output's last."""
        slots = self.slots
        shared = {}
        for i, e in enumerate(self.entries):
            if not isinstance(e, _Launch) or e.op.name not in _IN_PLACE or \
                    not e.dev.is_host or not isinstance(e.ins[0], int):
                continue
            src, out = slots[e.ins[0]], slots[e.out]
            if src.kind != TEMP or src.placement != "arena" or out.placement != "arena" \
                    or src.last != i or src.shape != out.shape or src.dtype != out.dtype \
                    or any(a == e.ins[0] for a in e.ins[1:]):
                continue
            root = e.ins[0]
            while root in shared:
                root = shared[root]
            shared[e.out] = root
            slots[root].last = max(slots[root].last, out.last)
        return shared

    def result_slots(self):
        return [item.slot for item in _flatten(self.result_template)
                if isinstance(item, _ResultSlot)]

    # -- binding: arrays for every slot, one call per launch ------------------------------------
    def _bind(self):
        slots = self.slots
        arrays = [None] * len(slots)
        self._live = []                 # (tensor, array): external arrays read where they live
        owner_dev = {e.out: e.dev for e in self.entries if isinstance(e, _Launch)}
        arenas = {}
        for index, slot in enumerate(slots):
            dev = owner_dev.get(index)
            if slot.placement == "arena" and dev not in arenas:
                arenas[dev] = _aligned_empty(dev, (self.arena_bytes,), np.uint8)
        self.arena = arenas
        by_data = {}
        for t in self.known.values():
            by_data[id(t._data)] = t
        input_iter = iter(self.inputs)
        for index, slot in enumerate(slots):
            if slot.kind == INPUT:
                arrays[index] = next(input_iter)[1]._data
            elif slot.kind == EXTERNAL:
                arr = slot.ref
                owner = by_data.get(id(arr))
                if owner is not None:
                    self._live.append((owner, arr))
                arrays[index] = arr
            elif slot.kind == TEMP:
                dev = owner_dev[index]
                if slot.placement == "arena":
                    arrays[index] = _arena_view(arenas[dev], slot)
                else:
                    arrays[index] = _aligned_empty(dev, slot.shape, slot.dtype)
        self._xent_calls = {}   # id(launch) -> (exponentials or None, row sums)
        for i, (j, sums) in self._xent_pairs.items():
            row_sums = _arena_view(self._host_arena(arenas), sums)
            self._xent_calls[id(self.entries[i])] = (arrays[self.entries[j].out], row_sums)
            self._xent_calls[id(self.entries[j])] = (None, row_sums)
        calls = []
        self._position = {}   # id(launch) -> its place in calls
        profiled = []
        bound = []            # (launch, its arrays, its output) or None for host work
        aligned = []          # the entry of each item of bound
        self._dropout_streams = {}
        for at, e in enumerate(self.entries):
            if isinstance(e, _Launch):
                args = [a.value if isinstance(a, _Literal) else arrays[a] for a in e.ins]
                if e.op.view:
                    # a view of a planned buffer is planned too: made once, here
                    arrays[e.out] = e.dev.run(e.op, e.p, args)
                    continue
                call = self._launch_call(e, args, arrays[e.out])
                self._position[id(e)] = len(calls)
                profiled.append((call, e))
                bound.append((e, args, arrays[e.out]))
                calls.append(call)
                aligned.append(e)
                continue
            bound.append(None)
            aligned.append(e)
            if e[0] == "grads":
                call = functools.partial(_set_gradients, [
                    (t, None if s is None else wrap(arrays[s], t.device))
                    for t, s in e[1].items()])
                profiled.append((call, None))
            else:
                profiled.append((e[1].step, None))   # step() reports its updates itself
                call = self._step_call(at, arrays, arenas)
            calls.append(call)
        self.calls = calls
        self.profiled_calls = profiled
        self.arrays = arrays
        self.graphs = 0
        self._whole = None
        # on the host a replay reads a contiguous input where the caller holds it (the
        # launches reading it bound anew when it changes) rather than copying it into the
        # static buffer: the NumPy floor's reads, and eager's aliasing
        # (an input that a launch takes as a parameter, an index array, is always copied:
        # the launch holds the static buffer)
        in_params = {id(v) for e in self.entries if isinstance(e, _Launch) and e.p is not None
                     for v in _flatten(e.p) if hasattr(v, "shape")}
        self._input_slots = [(position, index, t._data, id(t._data) in in_params)
                             for (position, t), index in
                             zip(self.inputs, (i for i, sl in enumerate(slots)
                                               if sl.kind == INPUT))]
        self._read_in_place = all(dev.is_host for dev in self.devices)
        self._readers = {}    # input slot -> the launches reading it or a view of it, in order
        for _, index, _, _ in self._input_slots:
            reached, readers = {index}, []
            for e in self.entries:
                if isinstance(e, _Launch) and any(a in reached for a in e.ins
                                                  if isinstance(a, int)):
                    readers.append(e)
                    if e.op.view:
                        reached.add(e.out)
            self._readers[index] = readers
        if any(not dev.is_host for dev in self.devices):
            whole = self._whole_step(aligned, bound)
            if whole is not None:
                self._whole = whole
                self.calls = [self._replay_whole]
            else:
                self.calls = self._captured(calls, bound)

    def _host_arena(self, arenas):
        """The arena of a host plan, for its scratch buffers: any host device's (made where
        no launch placed a buffer in one)."""
        arena = next(iter(arenas.values()), None)
        if arena is None:
            dev = self.devices[0]
            arena = arenas[dev] = _aligned_empty(dev, (self.arena_bytes,), np.uint8)
        return arena

    def _step_call(self, at, arrays, arenas):
        """The replay's call for the optimizer step of entry ``at``: its host updates
        (``_host_updates``) or ``step()``."""
        opt = self.entries[at][1]
        host = self._host_steps.get(at)
        if host is None:
            return opt.step
        _, state, slot = host
        grads = {t: None if s is None else arrays[s] for t, s in state.items()}
        scratch = {}
        if slot is not None:
            raw = self._host_arena(arenas)[slot.offset:slot.offset + slot.nbytes]
            for p in _optimizer_params(opt):
                dtype = p._data.dtype
                if dtype not in scratch:
                    scratch[dtype] = raw[:raw.size - raw.size % dtype.itemsize].view(dtype)
        return functools.partial(_run_host_updates, opt, grads, scratch, {})

    # -- the whole step as one graph: optimizer updates as device-scalar launches --------------
    def _whole_step(self, aligned, bound):
        """The step as one CUDA graph where it can be: one device that captures, every
        optimizer step replayable as launches of the device-scalar update kernels on
        arrays they take. Returns a _WholeStep, or None (then host work splits the
        graphs)."""
        devices = {b[0].dev for b in bound if b is not None}
        if len(devices) != 1:
            return None
        dev = devices.pop()
        if dev.is_host or not hasattr(dev, "capture") or \
                not hasattr(dev.kernels, "fused_update_ok"):
            return None
        items = []
        grads = {}
        for e, b in zip(aligned, bound):
            if b is not None:
                items.append(b)
            elif e[0] == "grads":
                grads = {t: None if s is None else self.arrays[s] for t, s in e[1].items()}
                items.append(("grads", self._grad_pairs(e[1])))
            else:
                opt = e[1]
                if not opt._device_updates_ok():
                    return None
                step_grads = {}
                for p in _optimizer_params(opt):
                    if p not in grads:      # a gradient from before the step: step() reads it
                        return None
                    g = grads[p]
                    if g is not None:
                        if p.device is not dev or not dev.kernels.fused_update_ok(p._data, g):
                            return None
                        step_grads[p] = g
                items.append(("step", opt, step_grads))
        for d, stream in self._dropout_streams.items():
            stream.attach(d)     # before capture: a graph reads its seed and offset there
        return _WholeStep(dev, items)

    def _grad_pairs(self, state):
        return [(t, None if s is None else wrap(self.arrays[s], t.device))
                for t, s in state.items()]

    def _replay_whole(self):
        """Host work first (gradients handed over, the optimizers' bookkeeping and their
        scalars written to the feed), then the one graph; captured anew where the updates
        changed shape (a state buffer replaced by load_state_dict, momentum switched on)."""
        whole = self._whole
        updates = []
        for item in whole.items:
            if item[0] == "grads":
                _set_gradients(item[1])
            elif item[0] == "step":
                updates.append(item[1]._device_updates(item[2]))
        structure = [(kernel, tuple(map(id, arrays)), flags, len(scalars))
                     for step in updates for kernel, arrays, scalars, flags in step]
        if structure != whole.structure:
            self._capture_whole(whole, updates, structure)
        host = whole.feed.acquire()
        at = 0
        for step in updates:
            for _, _, scalars, _ in step:
                host[at:at + len(scalars)] = scalars
                at += len(scalars)
        whole.feed.push()
        whole.graph()

    def _capture_whole(self, whole, updates, structure):
        dev = whole.dev
        count = sum(len(u[2]) for step in updates for u in step)
        if whole.feed is None or whole.feed.device.shape != (count,):
            whole.feed = dev.scalar_feed(count)
        launches = iter(updates)
        program = []
        at = 0
        for item in whole.items:
            if item[0] == "grads":
                continue
            if item[0] == "step":
                step = []
                for kernel, arrays, scalars, flags in next(launches):
                    step.append((dev.function(kernel), arrays,
                                 whole.feed.device[at:at + len(scalars)], flags))
                    at += len(scalars)
                program.append(("updates", step))
            else:
                program.append(item)
        run = functools.partial(self._run_program, program, bool(self._dropout_streams))
        whole.structure = structure
        whole.program = program           # keeps the arrays the graph reads alive
        if whole.failed:
            whole.graph = run
            return
        try:
            whole.graph = dev.capture(run)
            self.graphs = 1
        except Exception as err:   # CuPy or the driver refusing: correct, only slower
            whole.failed = True
            whole.graph = run
            self.graphs = 0
            warnings.warn(f"gg.compile: the step could not be captured as a CUDA graph "
                          f"({type(err).__name__}: {err}); replays run launch by launch",
                          RuntimeWarning, stacklevel=5)

    def _run_program(self, program, advance):
        """The whole step's launches (inside a capture, or run directly): the recorded
        kernels and the optimizers' updates, their scalars read from the feed."""
        for item in program:
            if item[0] == "updates":
                for fn, arrays, scalars, flags in item[1]:
                    fn(*arrays, scalars, *flags)
            else:
                self._run_launch(*item)
        if advance:
            self._advance_dropout()

    def _captured(self, calls, bound):
        """The launches between host work (gradients handed over, an optimizer step) as
        CUDA graphs, one launch each per replay; launch by launch if capture fails."""
        items, segment = [], []
        for call, b in zip(calls, bound):
            if b is None:
                if segment:
                    items.append(segment)
                    segment = []
                items.append(call)
            else:
                segment.append(b)
        if segment:
            items.append(segment)
        drawing = [i for i, item in enumerate(items) if isinstance(item, list)
                   and any(b[0].op is Dropout for b in item)]
        for dev, stream in self._dropout_streams.items():
            stream.attach(dev)     # before capture: a graph reads its seed and offset there
        try:
            result = []
            for i, item in enumerate(items):
                if not isinstance(item, list):
                    result.append(item)
                    continue
                dev = item[0][0].dev
                if any(b[0].dev is not dev for b in item):
                    raise NotImplementedError("launches on two devices between host steps")
                advance = drawing and i == drawing[-1]
                result.append(dev.capture(functools.partial(self._run_captured, item, advance)))
                self.graphs += 1
            return result
        except Exception as err:   # CuPy or the driver refusing: correct, only slower
            self.graphs = 0
            warnings.warn(f"gg.compile: the step could not be captured as a CUDA graph "
                          f"({type(err).__name__}: {err}); replays run launch by launch",
                          RuntimeWarning, stacklevel=4)
            for stream in self._dropout_streams.values():
                stream.state = None
            return calls

    def _run_captured(self, item, advance):
        """Inside a capture: every launch of the segment, dropout reading its seed and
        offset from device memory, and at the end the streams advanced on the device."""
        for e, args, out in item:
            self._run_launch(e, args, out)
        if advance:
            self._advance_dropout()

    def _run_launch(self, e, args, out):
        dev, op, p = e.dev, e.op, e.p
        if op is Dropout:
            stream = self._dropout_streams[dev]
            dev.kernels.dropout_state(args[0], stream.state, p.offset - stream.first, p.p,
                                      1.0 / (1.0 - p.p), out)
        elif op.kernel is not None and op.kernel not in _NO_OUT:
            dev.function(op.kernel)(*args, out=out)
        elif op.kernel is not None:
            _copy_into(dev.function(op.kernel), args, out)
        else:
            op.forward(dev, p, *args, out=out)

    def _advance_dropout(self):
        for dev, stream in self._dropout_streams.items():
            if stream.state is not None:
                dev.kernels.philox_advance(stream.state, stream.last - stream.first + 1)

    def _launch_call(self, e, args, out):
        dev, op = e.dev, e.op
        if op is Dropout:
            stream = self._dropout_streams.setdefault(dev, _ReplayStream())
            stream.note(e.p.offset)
            return functools.partial(_dropout_call, dev.kernels.dropout, args[0], out, e.p,
                                     stream)
        pair = self._xent_calls.get(id(e))
        if pair is not None:
            exps, sums = pair
            if exps is not None:
                return functools.partial(reference.softmax_xent_fwd, *args, e.p.mean, out=out,
                                         exps=exps, sums=sums)
            return functools.partial(reference.softmax_xent_bwd_kept, sums, args[1], args[2],
                                     e.p.mean, out)
        if op.kernel is not None:
            fn = dev.function(op.kernel)
            if op.kernel in _NO_OUT:
                return functools.partial(_copy_into, fn, args, out)
            return functools.partial(fn, *args, out=out)
        return functools.partial(op.forward, dev, e.p, *args, out=out)

    # -- replaying --------------------------------------------------------------------------
    def replay(self, args, kwargs):
        for t, arr in self._live:
            if t._data is not arr:
                self._rebind()
                break
        values = list(args) + [kwargs[k] for k in sorted(kwargs)] if kwargs else args
        if self._read_in_place:
            arrays = self.arrays
            for position, index, static, copied in self._input_slots:
                arr = values[position]._data
                if arr is arrays[index]:
                    continue          # the same array as last time: read where it lives
                if not copied and arr.__class__ is static.__class__ and \
                        arr.strides == static.strides:
                    self._bind_input(index, arr)
                else:                 # strided: copied, so that views stay views
                    if arrays[index] is not static:
                        self._bind_input(index, static)
                    static[...] = arr
        else:
            for position, t in self.inputs:
                t._data[...] = values[position]._data
        for dev, stream in self._dropout_streams.items():
            stream.start(dev.generator.philox)
        prof = _graph.profiler
        if prof is None:
            for call in self.calls:
                call()
        else:
            self._replay_profiled(prof)
        self.replays += 1
        return self._results(self.result_template, fresh=True)

    def _bind_input(self, index, arr):
        """Input slot ``index`` read from ``arr`` from now on: the views made of it made
        anew, and the launches reading either bound anew (host plans only)."""
        arrays = self.arrays
        arrays[index] = arr
        for e in self._readers[index]:
            args = [a.value if isinstance(a, _Literal) else arrays[a] for a in e.ins]
            if e.op.view:
                arrays[e.out] = e.dev.run(e.op, e.p, args)
                continue
            at = self._position[id(e)]
            call = self._launch_call(e, args, arrays[e.out])
            self.calls[at] = call
            self.profiled_calls[at] = (call, e)

    def _replay_profiled(self, prof):
        for call, e in self.profiled_calls:
            if e is None:
                call()       # gradients handed over, or an optimizer step (it reports itself)
                continue
            out = self.slots[e.out]
            flops, elements = e.op.cost(e.shapes, out.shape, e.p)
            prof.kernel(e.op.name, e.phase, e.dev, call, e.shapes, out.dtype, flops,
                        int(elements) * out.dtype.itemsize)

    def _rebind(self):
        """A parameter's array was replaced (``p.data = ...``): bind the launches anew."""
        for t, arr in self._live:
            if t._data is not arr:
                if t._data.shape != arr.shape or t._data.dtype != arr.dtype:
                    raise RuntimeError(
                        f"gg.compile: a tensor the step reads changed from shape "
                        f"{tuple(arr.shape)} {arr.dtype} to {tuple(t._data.shape)} "
                        f"{t._data.dtype} after it was recorded; compile the step again")
                index = next(i for i, s in enumerate(self.slots)
                             if s.kind == EXTERNAL and s.ref is arr)
                self.slots[index].ref = t._data
        self._bind()

    def _results(self, template, fresh):
        def build(item):
            if isinstance(item, _ResultSlot):
                if not fresh:
                    return item.tensor
                arr = self.arrays[item.slot]
                dev = item.device
                with dev.context():
                    return wrap(dev.adopt(arr.copy()), dev)
            if isinstance(item, tuple):
                return tuple(build(i) for i in item)
            if isinstance(item, list):
                return [build(i) for i in item]
            return item
        if not fresh:
            return _unwrap_first(template)
        return build(template)

    # -- reports --------------------------------------------------------------------------------
    def __repr__(self):
        return f"<gg.compile plan: {self.kernels} kernels, arena {_mib(self.arena_bytes)}>"

    def __str__(self):
        counts = {}
        for e in self.entries:
            if isinstance(e, _Launch) and not e.op.view:
                counts[e.op.name] = counts.get(e.op.name, 0) + 1
        steps = sum(1 for e in self.entries if not isinstance(e, _Launch) and e[0] == "step")
        ratio = self.arena_bytes / self.lower_bound_bytes if self.lower_bound_bytes else 1.0
        arena = sum(1 for s in self.slots if s.placement == "arena")
        lines = [
            f"gg.compile plan: {self.kernels} kernel launches"
            + (f" and {steps} optimizer step(s)" if steps else "") + " per replay",
            "  kernels: " + ", ".join(f"{name} x{n}" if n > 1 else name
                                      for name, n in counts.items()),
            f"  arena: {_mib(self.arena_bytes)} for {arena} intermediate buffers"
            + (f" ({self.in_place} launch(es) writing over their input)" if self.in_place
               else "")
            + f"; liveness lower bound {_mib(self.lower_bound_bytes)} (arena / bound = "
            f"{ratio:.3f})",
            f"  outside the arena: {_mib(self.own_bytes)} of gradients and results; "
            "parameters, optimizer state and inputs where they live",
            f"  eager peak of the step's arrays: {_mib(self.peak_eager_bytes)}",
        ]
        if self.graphs:
            lines.append(f"  replayed as {self.graphs} CUDA graph launch"
                         + ("es" if self.graphs > 1 else "")
                         + (", the optimizer updates inside it reading their scalars from "
                            "the device" if self._whole is not None else ""))
        return "\n".join(lines)


class _WholeStep:
    """The whole step captured as one graph: its items in order (launches, gradients
    handed over, optimizer steps), the scalar feed, and the graph with the update
    structure it was captured for."""

    __slots__ = ("dev", "items", "feed", "graph", "structure", "program", "failed")

    def __init__(self, dev, items):
        self.dev, self.items = dev, items
        self.feed = self.graph = self.structure = self.program = None
        self.failed = False


class _ResultSlot:
    __slots__ = ("slot", "device", "tensor")

    def __init__(self, slot, device, tensor):
        self.slot, self.device, self.tensor = slot, device, tensor


def _template(result, rec):
    """The step's result with every tensor made in the step replaced by its slot."""
    if isinstance(result, Tensor):
        index = rec._temp_slot(result._data)
        if index is None:
            return result        # a parameter or a constant: returned as it is
        return _ResultSlot(index, result.device, result)
    if isinstance(result, tuple):
        return tuple(_template(r, rec) for r in result)
    if isinstance(result, list):
        return [_template(r, rec) for r in result]
    if result is None or isinstance(result, (bool, int, float, str)):
        return result
    raise TypeError(f"gg.compile: the step returned a {type(result).__name__}; return a "
                    "tensor, a tuple or list of tensors, or None")


def _unwrap_first(template):
    if isinstance(template, _ResultSlot):
        return template.tensor
    if isinstance(template, tuple):
        return tuple(_unwrap_first(t) for t in template)
    if isinstance(template, list):
        return [_unwrap_first(t) for t in template]
    return template


def _touch(slots, index, at):
    slot = slots[index]
    while slot.kind == VIEW and slot.root is not None:
        slot = slots[slot.root]
    if slot.kind == TEMP:
        slot.last = max(slot.last, at)


def _aligned(n):
    return -(-n // ALIGN) * ALIGN


def _place(buffers):
    """Offsets for buffers with live intervals [first, last] in one arena: largest first,
    each at the lowest offset free of every placed buffer whose interval meets its own.
    Returns the arena's size."""
    placed = []
    top = 0
    for slot in sorted(buffers, key=lambda s: (-s.nbytes, s.first)):
        size = _aligned(slot.nbytes)
        busy = sorted((o.offset, o.offset + _aligned(o.nbytes)) for o in placed
                      if not (o.last < slot.first or o.first > slot.last))
        offset = 0
        for start, end in busy:
            if offset + size <= start:
                break
            offset = max(offset, end)
        slot.offset = offset
        placed.append(slot)
        top = max(top, offset + size)
    return top


def _lower_bound(buffers, length):
    """The most bytes of the buffers alive at any one launch."""
    delta = [0] * (length + 2)
    for s in buffers:
        delta[s.first] += s.nbytes
        delta[s.last + 1] -= s.nbytes
    best = live = 0
    for d in delta:
        live += d
        best = max(best, live)
    return best


def _aligned_empty(dev, shape, dtype):
    """An uninitialised array starting on an ALIGN-byte boundary. A host allocator gives 16
    bytes (a large NumPy array starts 16 bytes into a page): every SIMD load and store of
    a kernel then straddles two cache lines (an elementwise pass over a 256 KiB block:
    9.2 -> 7.2 us aligned; the GEMMs writing gradients a few percent). A device's pool
    aligns its blocks already."""
    with dev.context():
        if not dev.is_host:
            return dev.allocate(dev.xp.empty, shape, dtype)
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        raw = dev.allocate(np.empty, (nbytes + ALIGN,), np.uint8)
        skip = -raw.ctypes.data % ALIGN
        return raw[skip:skip + nbytes].view(dtype).reshape(shape)


def _arena_view(arena, slot):
    if slot.nbytes == 0:
        return arena[:0].view(slot.dtype).reshape(slot.shape)
    raw = arena[slot.offset:slot.offset + slot.nbytes]
    return raw.view(slot.dtype).reshape(slot.shape)


def _scratch_slot(shape, dtype, first, last):
    """An arena buffer no launch makes: a host replay's scratch alive from entry ``first``
    to ``last``."""
    slot = _Slot.__new__(_Slot)
    slot.kind, slot.shape, slot.dtype = TEMP, tuple(shape), np.dtype(dtype)
    slot.nbytes = int(np.prod(shape, dtype=np.int64)) * slot.dtype.itemsize
    slot.first, slot.last = first, last
    slot.offset, slot.placement, slot.root, slot.producer = None, "arena", None, None
    return slot


def _run_host_updates(opt, grads, scratch, bound):
    """An optimizer step on the host: its bookkeeping as ``step()`` does it (state made,
    step counts, versions bumped, options read now), then the update of every parameter
    by the host form of its kernel. A plain SGD update (no momentum, weight decay or
    maximize) runs as the BLAS call that ``sgd_update`` makes, bound once to its two arrays
    (``bound``: {(id(param), id(grad)): (param, grad, the call or None)})."""
    for kernel, arrays, scalars, flags in opt._device_updates(grads):
        if kernel == "sgd_update_dev" and not (scalars[1] or scalars[3] or flags[2]):
            param, grad = arrays[0], arrays[1]
            entry = bound.get((id(param), id(grad)))
            if entry is None or entry[0] is not param or entry[1] is not grad:
                if len(bound) > 64:          # parameters replaced again and again
                    bound.clear()
                entry = bound[id(param), id(grad)] = (param, grad,
                                                       host_blas.bound(grad, param))
            if entry[2] is not None:
                entry[2](-scalars[0])
                continue
        update = _HOST_UPDATES.get(kernel)
        if update is None:
            raise RuntimeError(f"gg.compile: the update kernel '{kernel}' has no host form "
                               "in gg.compile's table")
        update(*arrays, scalars, *flags, scratch=scratch.get(arrays[0].dtype))


def _set_gradients(pairs):
    for tensor, grad in pairs:
        tensor._grad = grad


def _copy_into(fn, args, out):
    out[...] = fn(*args)


class _ReplayStream:
    """Where a replay's dropout draws start: the device stream's counter at the start of
    the replay, advanced past the draws the recording made. A captured graph reads it
    from ``state`` (seed and counter on the device), which the graph itself advances; the
    host writes it only when something else drew in between (an eager step)."""

    __slots__ = ("first", "last", "seed", "base", "state", "mirror", "dev")

    def __init__(self):
        self.first = self.last = None
        self.seed = self.base = 0
        self.state = self.mirror = self.dev = None

    def attach(self, dev):
        self.dev = dev
        self.state = dev.allocate(dev.xp.zeros, (2,), np.int64)
        self.mirror = None

    def note(self, offset):
        self.first = offset if self.first is None else min(self.first, offset)
        self.last = offset if self.last is None else max(self.last, offset)

    def start(self, stream):
        count = self.last - self.first + 1
        start = stream.take(count)
        self.seed = stream.seed
        self.base = start - self.first
        if self.state is not None:
            if self.mirror != (self.seed, start):
                seed = np.uint64(self.seed % 2**64).view(np.int64)
                self.state[...] = self.dev.asarray(np.array([seed, start], dtype=np.int64))
            self.mirror = (self.seed, start + count)


def _dropout_call(kernel, x, out, p, stream):
    kernel(x, stream.seed, (stream.base + p.offset) % 2**64, p.p, 1.0 / (1.0 - p.p), out=out)


def _mib(n):
    return f"{n / 2**20:.3f} MiB" if n >= 2**17 else f"{n / 2**10:.1f} KiB"
