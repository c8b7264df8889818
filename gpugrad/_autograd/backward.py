"""The backward scheduler: reverse topological order, one gradient slot per node,
contributions from several paths summed, saved values released as each node finishes.

When the backward pass records nothing (no ``create_graph``, no forward-mode levels) the
gradient table holds bare arrays and the VJP rules run on arrays: the same formulas, as
plain kernel calls, with no tensor or node made per step.
"""
from __future__ import annotations

import heapq

from .. import _device, ops
from .._tensor import RemovableHandle, Tensor, last_write, next_tick, wrap
from . import graph
from .mode import set_grad_enabled, state

_FREED = ("Trying to backward through the graph a second time (or to read saved values "
          "after they were freed): the saved values of op '{}' were released by the first "
          "backward. Pass retain_graph=True to the first backward or autograd.grad call if "
          "you need to go through the graph again.")


def node_of(t):
    """The node a tensor's gradient flows into: its creator, or its leaf sink."""
    return t._node


def seed_gradients(outputs, grad_outputs, create_graph):
    seeds = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"backward: output {i} is a {type(out).__name__}, not a Tensor")
        if out._node is None:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn: "
                "no input that requires grad reaches this output")
        if g is None:
            if out._data.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs: backward on an "
                    f"output of shape {tuple(out.shape)} needs a gradient argument of that "
                    "shape (or call it on a scalar, e.g. out.sum())")
            dev = out.device
            g = wrap(dev.allocate(dev.xp.ones, out.shape, out.dtype), dev)
        else:
            if not isinstance(g, Tensor):
                g = Tensor(g, dtype=out.dtype, device=out.device)
            if g.shape != out.shape:
                raise ValueError(f"gradient of shape {tuple(g.shape)} given for an output of "
                                 f"shape {tuple(out.shape)}")
            if g.device is not out.device:
                raise ValueError(f"gradient on device {g.device} given for an output on "
                                 f"device {out.device}")
            if g.dtype != out.dtype:
                raise TypeError(f"gradient of dtype {g.dtype} given for an output of dtype "
                                f"{out.dtype}")
            if not create_graph:
                g = _cut(g)     # keeps its tangents: a jvp of a vjp_fn sees the cotangent's
        node = out._node
        if not node.seq:
            node.seq = next_tick()     # a leaf seeded directly, never consumed
        seeds.append((node, g))
    return seeds


def _needed(roots, targets, stop=False):
    """Nodes from which some target is reachable: only their VJPs need to run. Creation
    order is a topological order, so one pass over the reachable nodes, parents first,
    decides each node from its parents. With ``stop``, nothing past a target is walked."""
    reachable = set(roots)
    stack = list(roots)
    while stack:
        node = stack.pop()
        if stop and node in targets:
            continue
        for parent in node.parents:
            if parent is not None and parent not in reachable:
                reachable.add(parent)
                stack.append(parent)
    needed = set(targets)
    for node in sorted(reachable, key=lambda n: n.seq):
        if node not in needed and any(p in needed for p in node.parents if p is not None):
            needed.add(node)
    return needed


def _conform(g, node):
    """A cotangent summed back over broadcast axes and cast to the dtype of its node
    (a Tensor or an array alike)."""
    if g.shape != node.shape:
        g = ops.sum_to(g, node.shape)
    if g.dtype != node.dtype:
        g = ops.cast(g, node.dtype)
    return g


def run_backward(seeds, retain_graph, create_graph, targets=None, stop_at_targets=False):
    """Propagate the seeded cotangents through the graph in reverse topological order.

    Every node is created after its parents, so processing nodes by descending creation
    number (a heap) runs each one after all its consumers, with all its cotangent
    contributions summed, and needs no dependency count. Without ``targets``, gradients
    reaching leaves are accumulated into ``.grad``; with them, the total gradient reaching
    each target node is returned instead and only the VJPs on a path to a target run;
    ``stop_at_targets`` then runs no VJP of a target itself (a checkpointed region's
    gradients, taken up to the region's boundary).
    """
    st = state
    anomaly = graph.anomaly
    if anomaly is not None:
        if anomaly.checking():
            anomaly.flush()          # the flags the forward queued
        else:
            anomaly = None
    # gg.compile records a backward pass on tensors, so that every sum and product of a
    # rule goes through an op and is recorded (on bare arrays NumPy would do them unseen)
    arrays = not create_graph and not st.fw_levels and st.compiling is None
    grads = {}
    for node, g in seeds:
        value = g._data if arrays else g
        previous = grads.get(node)
        grads[node] = value if previous is None else previous + value
    roots = list(grads)
    needed = None if targets is None else _needed(roots, targets, stop_at_targets)
    captured = {}
    heap = [(-r.seq, r) for r in roots]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    # slots whose value was made here by a sum: later contributions are added in place
    owned = set()
    # arrays already handed to a leaf's .grad: another leaf gets a copy, never an alias
    handed = set()
    previous_mode = set_grad_enabled(create_graph)
    previous_phase = st.in_backward
    st.in_backward = True
    pop_grad, get_grad = grads.pop, grads.get
    released = graph.RELEASED
    all_needed = _ALL_NEEDED
    array_types = _device.array_types()
    track_min = _device.TRACK_MIN_BYTES
    try:
        while heap:
            node = pop(heap)[1]
            g = pop_grad(node)
            if node.retained is not None:
                g = _run_tensor_hooks(node, g, create_graph, arrays)
            if targets is not None and node in targets:
                captured[node] = g
                if stop_at_targets:
                    continue
            if node.leaf is not None:
                if targets is None:
                    _accumulate_leaf(node, g, create_graph, arrays, handed, retain_graph)
                continue
            parents = node.parents
            if needed is None:
                if None not in parents:
                    needs = all_needed[len(parents)]
                elif len(parents) == 2:     # a tensor and a constant: no comprehension's frame
                    needs = (parents[0] is not None, parents[1] is not None)
                else:
                    needs = [p is not None for p in parents]
            else:
                needs = [p is not None and p in needed for p in parents]
                if not any(needs):
                    continue
            ins = node.ins
            if ins is released:
                raise RuntimeError(_FREED.format(node.op.name))
            if last_write[0] > node.seq:
                _check_versions(node)    # something was written since it was saved
            if arrays:
                gs = node.op.vjp(g, None if ins is None else node.arrays, node.out, node.p, needs)
            else:
                out = None if node.out is None else node.saved_output(create_graph)
                gs = node.op.vjp(g, None if ins is None else node.saved_inputs(create_graph),
                                 out, node.p, needs)
            if anomaly is not None:
                anomaly.check_backward(node, gs)
            del g
            for parent, need, gi in zip(parents, needs, gs):
                if not need or gi is None:
                    continue
                if gi.shape != parent.shape or gi.dtype is not parent.dtype:
                    gi = _conform(gi, parent)
                previous = get_grad(parent)
                if previous is None:
                    if arrays:
                        if gi.__class__ not in array_types:
                            gi = parent.dev.adopt(gi)    # a NumPy scalar of 0-d arithmetic
                        elif gi.nbytes >= track_min:
                            # counted, once, if a rule's arithmetic made it rather than a kernel
                            parent.dev.memory.track(gi)
                    grads[parent] = gi
                    push(heap, (-parent.seq, parent))
                elif parent in owned:
                    if arrays:
                        previous += gi
                    else:
                        previous._data += gi._data
                elif arrays:
                    grads[parent] = parent.dev.adopt(previous + gi)
                    owned.add(parent)
                else:
                    grads[parent] = previous + gi
            if not retain_graph and (ins is not None or node.out is not None):
                node.ins = released
                node.arrays = None
                node.out = None
                node.out_tangents = None
        if anomaly is not None:
            anomaly.flush()
    finally:
        set_grad_enabled(previous_mode)
        st.in_backward = previous_phase
    return captured


_ALL_NEEDED = [(True,) * n for n in range(64)]


def _check_versions(node):
    for x in node.ins or ():
        ver = x if x.__class__ is list else x._ver if isinstance(x, Tensor) else None
        if ver is not None and ver[0] > node.seq:
            _raise_modified(node.op, "an input")
    if node.out is not None and node.out_ver[0] > node.seq:
        _raise_modified(node.op, "the output")


def _raise_modified(op, what):
    raise RuntimeError(
        f"{what} of op '{op.name}', saved for its backward, was modified in place after it "
        "was saved (its version counter moved); compute on a copy instead")


def _accumulate_leaf(node, g, create_graph, arrays, handed, retain_graph=False):
    tensor = node.leaf()
    if tensor is None:
        return
    if state.compiling is not None:     # gg.compile: which leaves get gradients, from where
        state.compiling.accumulate_leaf(tensor)
    if arrays:
        if id(g) in handed:
            g = g.copy()
        handed.add(id(g))
        g = wrap(g, tensor.device)
    elif not create_graph:
        g = g.detach()
    elif tensor._grad is None and g._node is None:
        g = g.detach()   # a fresh tensor object: never share one between two leaves
    tensor._grad = g if tensor._grad is None else tensor._grad + g
    if tensor._node is node:
        if retain_graph:
            tensor._node = node.renewed(tensor)    # the retained graph keeps this sink
        else:
            node.seq = 0     # numbered afresh at its next first use (this graph is freed)
    if node.retained is not None and node.retained.post_accumulate:
        _run_post_accumulate_hooks(node.retained, tensor)


def _run_post_accumulate_hooks(record, tensor):
    for hook in tuple(record.post_accumulate.values()):
        hook(tensor)


def _run_tensor_hooks(node, g, create_graph, arrays):
    """The complete gradient of a node's tensor through its hooks (each may replace it),
    then kept in ``.grad`` if the tensor asked for it (``retain_grad``)."""
    record = node.retained
    if record.hooks:
        t = wrap(g, node.dev) if arrays else g
        for hook in list(record.hooks.values()):
            result = hook(t)
            if result is not None:
                if not isinstance(result, Tensor):
                    raise TypeError(f"a tensor hook returned a {type(result).__name__}; it "
                                    "must return a Tensor or None")
                if result.shape != t.shape:
                    raise ValueError(f"a tensor hook changed the shape of the gradient from "
                                     f"{tuple(t.shape)} to {tuple(result.shape)}")
                t = result
        g = t._data if arrays else t
    if record.retain and node.leaf is None:
        tensor = record.tensor()
        if tensor is not None:
            if arrays:
                tensor._grad = wrap(g, tensor.device)
            else:
                tensor._grad = g if create_graph else g.detach()
    return g


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False, inputs=None):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf, or with
    ``inputs`` into the ``.grad`` of those tensors only (leaves or not)."""
    outputs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not isinstance(grad_tensors, (list, tuple)):
        grad_tensors = [grad_tensors] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    seeds = seed_gradients(outputs, list(grad_tensors), create_graph)
    if inputs is None:
        _run_with_callbacks(seeds, retain_graph, create_graph)
        return
    inputs = [inputs] if isinstance(inputs, Tensor) else list(inputs)
    if not inputs:
        raise RuntimeError("'inputs' argument to backward() cannot be empty.")
    unique = []
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"backward: inputs[{i}] is a {type(x).__name__}, not a Tensor")
        if x._node is None:
            raise RuntimeError(f"backward: inputs[{i}] does not require grad")
        if not any(x is u for u in unique):
            unique.append(x)

    def accumulate(captured):
        handed = set()
        for x in unique:
            g = captured.get(x._node)
            if g is None:
                continue
            if not isinstance(g, Tensor):
                if id(g) in handed:
                    g = g.copy()
                handed.add(id(g))
                g = wrap(g, x.device)
            elif not create_graph:
                g = g.detach()
            x._grad = g if x._grad is None else x._grad + g
            record = x._node.retained
            if record is not None and record.post_accumulate and x._node.leaf is not None:
                _run_post_accumulate_hooks(record, x)     # inside the pass, as in PyTorch
    _run_with_callbacks(seeds, retain_graph, create_graph, {x._node for x in unique},
                        accumulate)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False,
         allow_unused=False):
    """The gradients of ``outputs`` with respect to ``inputs``, as a tuple (nothing is
    accumulated into ``.grad``). ``retain_graph=None`` means ``create_graph``."""
    single_input = isinstance(inputs, Tensor)
    outputs = [outputs] if isinstance(outputs, Tensor) else list(outputs)
    inputs = [inputs] if single_input else list(inputs)
    if grad_outputs is None:
        grad_outputs = [None] * len(outputs)
    elif isinstance(grad_outputs, Tensor):
        grad_outputs = [grad_outputs]
    if len(grad_outputs) != len(outputs):
        raise ValueError(f"grad: {len(grad_outputs)} grad_outputs given for "
                         f"{len(outputs)} outputs")
    for i, x in enumerate(inputs):
        if not isinstance(x, Tensor):
            raise TypeError(f"grad: input {i} is a {type(x).__name__}, not a Tensor")
        if x._node is None:
            raise RuntimeError(f"grad: input {i} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    seeds = seed_gradients(outputs, grad_outputs, create_graph)
    keys = [x._node for x in inputs]
    grads = _run_with_callbacks(seeds, retain_graph, create_graph, set(keys))
    result = []
    for i, (x, key) in enumerate(zip(inputs, keys)):
        g = grads.get(key)
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {tuple(x.shape)}) is not reached from the "
                    "outputs; pass allow_unused=True to get None for it")
        elif not isinstance(g, Tensor):
            g = wrap(g, x.device)
        elif not create_graph:
            g = _cut(g)
        result.append(g)
    return tuple(result)


def _cut(t):
    """t without its graph, keeping its forward-mode tangents (forward over reverse)."""
    out = t.detach()
    out._tangents = dict(t._tangents) if t._tangents else None   # its own: never shared
    return out


# -- hooks of the engine: after a leaf's accumulation, and at the end of a pass ----------------
def register_post_accumulate_grad_hook(tensor, hook):
    """Call ``hook(tensor)`` each time backward has accumulated the gradient of the leaf
    ``tensor`` into its ``.grad`` (PyTorch's ``Tensor.register_post_accumulate_grad_hook``);
    returns a handle whose ``remove()`` takes it off. The hook runs as soon as the gradient
    is complete, right after the leaf's last consumer in backward, not at the end of the
    pass (what overlapping communication with backward rests on). ``autograd.grad``
    accumulates nothing and runs no such hook."""
    if not isinstance(tensor, Tensor):
        raise TypeError(f"register_post_accumulate_grad_hook: expected a Tensor, got "
                        f"{type(tensor).__name__}")
    if not callable(hook):
        raise TypeError(f"register_post_accumulate_grad_hook: hook must be callable, got "
                        f"{type(hook).__name__}")
    node = tensor._node
    if node is None:
        raise RuntimeError("cannot register a hook on a tensor that does not require grad")
    if node.leaf is None:
        raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf "
                           "tensors (their gradient is never accumulated into .grad)")
    record = tensor._hooks()       # carried to the sinks that replace this one
    handle = RemovableHandle(record)
    record.post_accumulate[handle.id] = hook
    return handle


def queue_callback(callback):
    """Run ``callback()`` once the backward pass now running has finished, before
    ``backward`` returns (PyTorch's ``Variable._execution_engine.queue_callback``); only
    from inside a pass (a hook). A pass that raises runs none of its callbacks."""
    queued = state.final_callbacks
    if queued is None:
        raise RuntimeError("queue_callback: final callbacks can only be queued during a "
                           "backward pass (from a hook)")
    queued.append(callback)


def _run_with_callbacks(seeds, retain_graph, create_graph, targets=None, then=None):
    """run_backward, ``then(its result)`` if given, then the callbacks that hooks queued
    (a pass of its own per nesting level: a backward inside a hook keeps its callbacks
    apart from the outer pass's)."""
    st = state
    outer = st.final_callbacks
    queued = st.final_callbacks = []
    try:
        result = run_backward(seeds, retain_graph, create_graph, targets)
        if then is not None:
            then(result)
        i = 0
        while i < len(queued):     # a callback may queue another
            queued[i]()
            i += 1
    finally:
        st.final_callbacks = outer
    return result
