"""The backward scheduler: reverse topological order, one gradient slot per node,
contributions from several paths summed, saved arrays released as each node finishes.
"""
from __future__ import annotations

from . import _graph
from ._graph import Node, enable_grad, no_grad, set_grad_enabled
from ._tensor import Tensor, wrap

__all__ = ["backward", "grad", "no_grad", "enable_grad"]

_FREED = ("Trying to backward through the graph a second time (or to read saved values "
          "after they were freed): the saved arrays of op '{}' were released by the first "
          "backward. Pass retain_graph=True to the first backward or autograd.grad call if "
          "you need to go through the graph again.")


def _key(t):
    """The gradient slot of a tensor: its node, or the leaf tensor itself."""
    return t._node if t._node is not None else t


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


def _topological(roots):
    """Nodes reachable from ``roots`` with the number of edges into each from consumers
    (iterative: graphs of any depth)."""
    deps = {}
    stack = [r for r in roots if type(r) is Node]
    seen = set(stack)
    while stack:
        node = stack.pop()
        for parent in node.parents:
            if type(parent) is Node:
                deps[parent] = deps.get(parent, 0) + 1
                if parent not in seen:
                    seen.add(parent)
                    stack.append(parent)
    return seen, deps


def _needed(nodes, deps, roots, target_keys):
    """Nodes from which some target is reachable: only their VJPs need to run."""
    order = []
    remaining = dict(deps)
    ready = [r for r in roots if type(r) is Node and remaining.get(r, 0) == 0]
    ready = list(dict.fromkeys(ready))
    while ready:
        node = ready.pop()
        order.append(node)
        for parent in node.parents:
            if type(parent) is Node:
                remaining[parent] -= 1
                if remaining[parent] == 0:
                    ready.append(parent)
    needed = set()
    for node in reversed(order):
        if node in target_keys or any(p in needed or p in target_keys
                                      for p in node.parents if p is not None):
            needed.add(node)
    return needed


def _accumulate(grads, key, g):
    previous = grads.get(key)
    grads[key] = g if previous is None else previous + g


def _fix_meta(gs, meta):
    from .ops import cast, sum_to
    fixed = []
    for g, m in zip(gs, meta):
        if g is not None and m is not None:
            shape, dtype = m
            if g.shape != shape:
                g = sum_to(g, shape)
            if g.dtype != dtype:
                g = cast(g, dtype)
        fixed.append(g)
    return fixed


def _run_vjp(node, g, needs, create_graph):
    if node.released:
        raise RuntimeError(_FREED.format(node.op.name))
    ins = node.ins
    if ins is not None:
        for x in ins:
            if isinstance(x, Tensor) and x._ver[0] > node.stamp:
                raise RuntimeError(
                    f"an array saved for the backward of op '{node.op.name}' was modified in "
                    "place after it was saved (its version counter moved); compute on a "
                    "copy instead")
    out = None
    if node.out is not None:
        if node.out_ver[0] > node.stamp:
            raise RuntimeError(
                f"the output of op '{node.op.name}', saved for its backward, was modified in "
                "place after it was saved (its version counter moved); compute on a copy "
                "instead")
        out = node.saved_output(create_graph)
    gs = node.op.vjp(g, ins, out, node.p, needs)
    if node.meta is not None:
        gs = _fix_meta(gs, node.meta)
    return gs


def _release(node):
    if node.ins is not None or node.out is not None:
        node.ins = None
        node.out = None
        node.out_tangents = None
        node.released = True


def run_backward(seeds, retain_graph, create_graph, target_keys=None):
    """Propagate the seeded cotangents to the leaves. Returns the gradient table of the
    leaves (and, for ``target_keys``, of those keys)."""
    grads = {}
    for key, g in seeds:
        _accumulate(grads, key, g)
    roots = list(dict.fromkeys(key for key, _ in seeds))
    nodes, deps = _topological(roots)
    needed = None if target_keys is None else _needed(nodes, deps, roots, target_keys)
    captured = {}
    ready = [r for r in roots if type(r) is Node and deps.get(r, 0) == 0]
    previous_mode = set_grad_enabled(create_graph)
    try:
        while ready:
            node = ready.pop()
            g = grads.pop(node, None)
            if node.retained is not None and g is not None:
                tensor = node.retained()
                if tensor is not None:
                    tensor._grad = g if create_graph else g.detach()
            if target_keys is not None and node in target_keys:
                captured[node] = g
            parents = node.parents
            if g is not None and (needed is None or node in needed):
                if needed is None:
                    needs = tuple(p is not None for p in parents)
                else:
                    needs = tuple(p is not None and (p in needed or p in target_keys)
                                  for p in parents)
            else:
                needs = None
            if needs is not None and True in needs:
                gs = _run_vjp(node, g, needs, create_graph)
                del g
                for parent, gi, need in zip(parents, gs, needs):
                    if need and gi is not None:
                        _accumulate(grads, parent, gi)
                if not retain_graph:
                    _release(node)
            for parent in parents:
                if type(parent) is Node:
                    deps[parent] -= 1
                    if deps[parent] == 0:
                        ready.append(parent)
    finally:
        set_grad_enabled(previous_mode)
    grads.update(captured)
    return grads


def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate the gradients of ``tensors`` into the ``.grad`` of every leaf."""
    outputs = [tensors] if isinstance(tensors, Tensor) else list(tensors)
    if not isinstance(grad_tensors, (list, tuple)):
        grad_tensors = [grad_tensors] * len(outputs)
    if retain_graph is None:
        retain_graph = create_graph
    seeds = _seed(outputs, list(grad_tensors), create_graph)
    grads = run_backward(seeds, retain_graph, create_graph)
    for key, g in grads.items():
        if isinstance(key, Tensor):
            if not create_graph:
                g = g.detach()
            key._grad = g if key._grad is None else key._grad + g


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
    grads = run_backward(seeds, retain_graph, create_graph, target_keys=set(keys))
    result = []
    for i, (x, key) in enumerate(zip(inputs, keys)):
        g = grads.get(key)
        if g is None:
            if not allow_unused:
                raise RuntimeError(
                    f"grad: input {i} (shape {tuple(x.shape)}) is not reached from the "
                    "outputs; pass allow_unused=True to get None for it")
        elif not create_graph:
            g = g.detach()
        result.append(g)
    return tuple(result)
