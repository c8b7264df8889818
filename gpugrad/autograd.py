"""The backward scheduler: reverse topological order, one gradient slot per node,
contributions from several paths summed, saved arrays released as each node finishes.
"""
from __future__ import annotations

import heapq

from . import _graph
from ._graph import AccumulateGrad, enable_grad, leaf_node, no_grad, set_grad_enabled
from ._tensor import Tensor, wrap
from ._tensor import _clock as clock

__all__ = ["backward", "grad", "no_grad", "enable_grad"]

_FREED = ("Trying to backward through the graph a second time (or to read saved values "
          "after they were freed): the saved arrays of op '{}' were released by the first "
          "backward. Pass retain_graph=True to the first backward or autograd.grad call if "
          "you need to go through the graph again.")


def _key(t):
    """The node a tensor's gradient flows into: its creator, or its AccumulateGrad."""
    return t._node if t._node is not None else leaf_node(t)


def _seed(outputs, grad_outputs, create_graph):
    seeds = []
    for i, (out, g) in enumerate(zip(outputs, grad_outputs)):
        if not isinstance(out, Tensor):
            raise TypeError(f"backward: output {i} is a {type(out).__name__}, not a Tensor")
        if not out._rg:
            raise RuntimeError(
                f"element {i} of tensors does not require grad and does not have a grad_fn: "
                "no input that requires grad reaches this output")
        if g is None:
            if out.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs: backward on an "
                    f"output of shape {tuple(out.shape)} needs a gradient argument of that "
                    "shape (or call it on a scalar, e.g. out.sum())")
            g = wrap(out.device.xp.ones(out.shape, dtype=out.dtype), out.device)
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
                g = g.detach()
        seeds.append((_key(out), g))
    return seeds


def _needed(roots, targets):
    """Nodes from which some target is reachable: only their VJPs need to run. Creation
    order is a topological order, so one pass over the reachable nodes, parents first,
    decides each node from its parents."""
    reachable = set(roots)
    stack = list(roots)
    while stack:
        for parent in stack.pop().parents:
            if parent is not None and parent not in reachable:
                reachable.add(parent)
                stack.append(parent)
    needed = set(targets)
    for node in sorted(reachable, key=lambda n: n.seq):
        if node not in needed and any(p in needed for p in node.parents if p is not None):
            needed.add(node)
    return needed


def _conform(g, node):
    """A cotangent summed back over broadcast axes and cast to the dtype of the tensor
    it belongs to."""
    from .ops import cast, sum_to
    if g.shape != node.shape:
        g = sum_to(g, node.shape)
    if g.dtype != node.dtype:
        g = cast(g, node.dtype)
    return g


def run_backward(seeds, retain_graph, create_graph, targets=None):
    """Propagate the seeded cotangents through the graph in reverse topological order.

    Every node is created after its parents, so processing nodes by descending creation
    number (a heap) runs each one after all its consumers, with all its cotangent
    contributions summed, and needs no dependency count. Without ``targets``, gradients
    reaching leaf nodes are accumulated into ``.grad``; with them, the total gradient
    reaching each target node is returned instead and only the VJPs on a path to a
    target run.
    """
    grads = {}
    for key, g in seeds:
        previous = grads.get(key)
        grads[key] = g if previous is None else previous + g
    roots = list(dict.fromkeys(key for key, _ in seeds))
    needed = None if targets is None else _needed(roots, targets)
    captured = {}
    heap = [(-r.seq, r) for r in roots]
    heapq.heapify(heap)
    push, pop = heapq.heappush, heapq.heappop
    # slots whose array was made here by a sum: later contributions are added in place
    owned = set()
    previous_mode = set_grad_enabled(create_graph)
    previous_phase = _graph.in_backward
    _graph.in_backward = True
    pop_grad, get_grad = grads.pop, grads.get
    fw_active = _graph._fw_active
    try:
        while heap:
            node = pop(heap)[1]
            g = pop_grad(node)
            op = node.op
            if targets is not None and node in targets:
                captured[node] = g
            if op is AccumulateGrad:
                if targets is None:
                    _accumulate_leaf(node, g, create_graph)
                continue
            if node.retained is not None:
                _retain(node, g, create_graph)
            if needed is None:
                needs = node.parents     # a recorded node has a parent needing grad
            else:
                needs = [p if p in needed else None for p in node.parents]
                if not any(needs):
                    continue
            if node.released:
                raise RuntimeError(_FREED.format(op.name))
            if node.stamp != clock[0]:
                _check_versions(node)    # something was written since it was saved
            gs = op.vjp(g, node.ins,
                        None if node.out is None else node.saved_output(create_graph),
                        node.p, needs)
            del g
            for parent, gi in zip(needs, gs):
                if parent is None or gi is None:
                    continue
                data = gi._data
                if data.shape != parent.shape or data.dtype is not parent.dtype:
                    gi = _conform(gi, parent)
                previous = get_grad(parent)
                if previous is None:
                    grads[parent] = gi
                    push(heap, (-parent.seq, parent))
                elif parent in owned and gi._tangents is None:
                    previous._data += gi._data
                else:
                    grads[parent] = previous + gi
                    if not create_graph and not fw_active:
                        owned.add(parent)
            if not retain_graph and (node.ins is not None or node.out is not None):
                node.ins = None
                node.out = None
                node.out_tangents = None
                node.released = True
    finally:
        set_grad_enabled(previous_mode)
        _graph.in_backward = previous_phase
    return captured


def _check_versions(node):
    for x in node.ins or ():
        if isinstance(x, Tensor) and x._ver[0] > node.stamp:
            _raise_modified(node.op, "an input")
    if node.out is not None and node.out_ver[0] > node.stamp:
        _raise_modified(node.op, "the output")


def _raise_modified(op, what):
    raise RuntimeError(
        f"{what} of op '{op.name}', saved for its backward, was modified in place after it "
        "was saved (its version counter moved); compute on a copy instead")


def _cut(t):
    """t without its graph, keeping its forward-mode tangents (forward over reverse)."""
    out = t.detach()
    out._tangents = t._tangents
    return out


def _accumulate_leaf(node, g, create_graph):
    tensor = node.leaf()
    if tensor is None:
        return
    if not create_graph:
        g = g.detach()
    elif tensor._grad is None and g._node is None:
        g = g.detach()   # a fresh tensor object: never share one between two leaves
    tensor._grad = g if tensor._grad is None else tensor._grad + g


def _retain(node, g, create_graph):
    tensor = node.retained()
    if tensor is not None:
        tensor._grad = g if create_graph else g.detach()


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf."""
    outputs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not isinstance(grad_tensors, (list, tuple)):
        grad_tensors = [grad_tensors] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    seeds = _seed(outputs, list(grad_tensors), create_graph)
    run_backward(seeds, retain_graph, create_graph)


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
        if not x._rg:
            raise RuntimeError(f"grad: input {i} does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    seeds = _seed(outputs, grad_outputs, create_graph)
    keys = [_key(x) for x in inputs]
    grads = run_backward(seeds, retain_graph, create_graph, targets=set(keys))
    result = []
    for i, (x, key) in enumerate(zip(inputs, keys)):
        g = grads.get(key)
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {tuple(x.shape)}) is not reached from the "
                    "outputs; pass allow_unused=True to get None for it")
        elif not create_graph:
            g = _cut(g)
        result.append(g)
    return tuple(result)
