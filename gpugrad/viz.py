"""Graphviz pictures of the recorded graphs: the forward graph G, and the backward graph
B that the scheduler walks (one VJP node per forward node, edges reversed)."""
from ._tensor import Tensor

__all__ = ["to_dot"]


def _walk(root):
    """Nodes reachable from ``root`` (iterative), in a stable order."""
    order, seen, stack = [], {root}, [root]
    while stack:
        node = stack.pop()
        order.append(node)
        for parent in node.parents:
            if parent is not None and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return order


def _label(node):
    if node.leaf is not None:
        tensor = node.leaf()
        shape = tuple(tensor.shape) if tensor is not None else node.shape
        return f"leaf {shape}"
    return f"{node.name}\\n{tuple(node.shape)}"


def to_dot(output, backward=False):
    """Graphviz DOT text of the graph that produced ``output``.

    ``backward=False``: the forward graph, inputs to output. ``backward=True``: the
    backward graph, node for node, each edge reversed and labelled with the VJP that
    sends the cotangent along it; leaves end in AccumulateGrad.
    """
    if not isinstance(output, Tensor):
        raise TypeError(f"to_dot: expected a Tensor, got {type(output).__name__}")
    if output.grad_fn is None:
        raise ValueError("to_dot: the tensor has no recorded graph (it is a leaf, or was "
                         "made under no_grad)")
    nodes = _walk(output.grad_fn)
    ids = {node: f"n{i}" for i, node in enumerate(nodes)}
    title = "backward" if backward else "forward"
    lines = [f"digraph {title} {{", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node in nodes:
        leaf = node.leaf is not None
        if backward:
            label = "AccumulateGrad\\n" + _label(node) if leaf else \
                f"{node.name}.vjp\\n{tuple(node.shape)}"
        else:
            label = _label(node)
        shape = "box" if leaf else "ellipse"
        lines.append(f'  {ids[node]} [label="{label}", shape={shape}];')
    lines.append(f'  out [label="output {tuple(output.shape)}", shape=doubleoctagon];')
    root = ids[output.grad_fn]
    lines.append(f"  out -> {root} [label=\"seed 1\"];" if backward else f"  {root} -> out;")
    for node in nodes:
        for i, parent in enumerate(node.parents):
            if parent is None:
                continue
            if backward:
                lines.append(f'  {ids[node]} -> {ids[parent]} '
                             f'[label="{node.name}.vjp[{i}]"];')
            else:
                lines.append(f"  {ids[parent]} -> {ids[node]} [label=\"{i}\"];")
    lines.append("}")
    return "\n".join(lines) + "\n"
