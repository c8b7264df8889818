"""Functional transforms in JAX's style: grad, value_and_grad, vjp, hvp, jacobian,
hessian, and the Jacobian of a chain of stages multiplied in its cheapest order."""
import math
import weakref

import numpy as np

from . import _tensor, ops
from ._autograd.forward import jvp
from ._autograd.mode import enable_grad, is_grad_enabled
from ._tensor import Tensor
from .autograd import grad as _autograd_grad

__all__ = ["grad", "value_and_grad", "vjp", "jvp", "hvp", "jacobian", "jacobian_plan", "hessian"]


def _differentiable_alias(x):
    """A tensor equal to x that requires grad and, when x itself is recorded or carries
    tangents, stays connected to it (so transforms nest)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"expected a Tensor argument, got {type(x).__name__}")
    if x.dtype.kind not in "fc":
        raise TypeError(f"cannot differentiate with respect to a tensor of dtype {x.dtype}")
    if x.requires_grad or x._tangents:
        with enable_grad():
            alias = ops.identity(x)
        if not alias.requires_grad:
            alias.requires_grad_(True)
        return alias
    return x.detach().requires_grad_(True)


# the leaf sinks of aliases whose transform has its gradients: reaching one from an
# enclosing transform is no reason to record (see _reaches_beyond)
_finished_leaves = weakref.WeakValueDictionary()


def _finished(aliases):
    for alias in aliases:
        node = alias._node
        if node is not None and node.leaf is not None:
            _finished_leaves[id(node)] = node


def _outer_active(args):
    """Whether an enclosing reverse-mode transform needs the derivative recorded (forward
    mode needs no recording: tangents flow through the VJPs as they run)."""
    return any(isinstance(a, Tensor) and a.requires_grad for a in args)


def _reaches_beyond(outputs, aliases):
    """Whether the graph of ``outputs`` reaches a tensor that requires grad other than
    ``aliases``: a closed-over tensor of an enclosing transform (or a model's weight), for
    which the derivative must be recorded too, as torch.func does."""
    own = {a._node for a in aliases}
    stack = [o._node for o in outputs if isinstance(o, Tensor) and o._node is not None]
    seen = set(stack)
    while stack:
        node = stack.pop()
        if node in own:
            continue
        if node.leaf is not None:
            if _finished_leaves.get(id(node)) is node:
                continue         # an inner transform's own argument
            return True          # a leaf that is not ours: a closed-over tensor
        for parent in node.parents:
            if parent is not None and parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return False


def _cut(t):
    """t without its graph, keeping its forward-mode tangents."""
    out = t.detach()
    out._tangents = t._tangents
    return out


def _zeros_like(x):
    return _tensor.wrap(x.device.xp.zeros(x.shape, dtype=x.dtype), x.device)


def _argnums_tuple(argnums, nargs):
    nums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    for a in nums:
        if not -nargs <= a < nargs:
            raise ValueError(f"argnums {argnums} out of range for {nargs} argument(s)")
    return tuple(a % nargs for a in nums)


def value_and_grad(f, argnums=0):
    """A function returning ``(f(*args), gradient)``; f must return a scalar Tensor.
    An int argnums gives one gradient, a tuple gives a tuple."""
    def wrapped(*args):
        nums = _argnums_tuple(argnums, len(args))
        outer = _outer_active([args[i] for i in nums])
        args = list(args)
        for i in nums:
            args[i] = _differentiable_alias(args[i])
        with enable_grad():
            value = f(*args)
        if not isinstance(value, Tensor) or value.numel() != 1:
            raise ValueError("grad: f must return a scalar Tensor, got "
                             + (f"shape {tuple(value.shape)}" if isinstance(value, Tensor)
                                else type(value).__name__))
        if not outer and is_grad_enabled():
            outer = _reaches_beyond([value], [args[i] for i in nums])
        if not value.requires_grad:
            grads = tuple(_zeros_like(args[i]) for i in nums)
        else:
            grads = _autograd_grad(value, [args[i] for i in nums], create_graph=outer,
                                   allow_unused=True)
            grads = tuple(_zeros_like(args[i]) if g is None else g
                          for g, i in zip(grads, nums))
            _finished([args[i] for i in nums])
        if not outer:
            value = _cut(value)
        return value, (grads[0] if isinstance(argnums, int) else grads)
    return wrapped


def grad(f, argnums=0):
    """The gradient of scalar-valued f with respect to argument(s) ``argnums``.

    >>> import gpugrad as gg
    >>> gg.grad(lambda x: (x * x).sum())(gg.tensor([1.0, 2.0])).tolist()
    [2.0, 4.0]
    """
    vg = value_and_grad(f, argnums)

    def wrapped(*args):
        return vg(*args)[1]
    return wrapped


def vjp(f, *primals):
    """``(f(*primals), vjp_fn)``; ``vjp_fn(cotangent)`` returns one cotangent per primal
    and can be called any number of times."""
    outer = _outer_active(primals)
    aliases = [_differentiable_alias(p) for p in primals]
    with enable_grad():
        out = f(*aliases)
    if not outer and is_grad_enabled():
        outer = _reaches_beyond(list(out) if isinstance(out, (tuple, list)) else [out],
                                aliases)

    def vjp_fn(cotangent):
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        cts = list(cotangent) if isinstance(cotangent, (tuple, list)) else [cotangent]
        if len(cts) != len(outs):
            raise ValueError(f"vjp_fn: {len(cts)} cotangents for {len(outs)} outputs")
        for o, c in zip(outs, cts):
            if tuple(c.shape) != tuple(o.shape):
                raise ValueError(f"vjp_fn: cotangent of shape {tuple(c.shape)} for an output "
                                 f"of shape {tuple(o.shape)}")
        live = [(o, c) for o, c in zip(outs, cts) if o.requires_grad]
        if not live:
            return tuple(_zeros_like(a) for a in aliases)
        # a cotangent that requires grad (a jacobian or grad taken through vjp_fn)
        # needs the pullback recorded too
        record = outer or (is_grad_enabled()
                           and any(isinstance(c, Tensor) and c.requires_grad for _, c in live))
        grads = _autograd_grad([o for o, _ in live], aliases, [c for _, c in live],
                               retain_graph=True, create_graph=record, allow_unused=True)
        return tuple(_zeros_like(a) if g is None else g for g, a in zip(grads, aliases))
    if outer:
        return out, vjp_fn
    return (type(out)(_cut(o) for o in out) if isinstance(out, (tuple, list)) else _cut(out)), \
        vjp_fn


def hvp(f, primals, tangents, mode="fwd", batched=False):
    """``(f(*primals), H v)``: Hessian-vector products of scalar f, one per primal.

    ``mode="fwd"`` is forward-over-reverse (a JVP of the gradient), ``"rev"`` is
    reverse-over-reverse. With ``batched=True`` each tangent carries a leading axis of
    vectors and the products are stacked along it.
    """
    primals, tangents = tuple(primals), tuple(tangents)
    if len(primals) != len(tangents):
        raise ValueError(f"hvp: {len(primals)} primals but {len(tangents)} tangents")
    if batched:
        count = tangents[0].shape[0]
        results = [hvp(f, primals, tuple(t[i] for t in tangents), mode)[1]
                   for i in range(count)]
        value = f(*primals)
        return value.detach(), tuple(ops.stack([r[j] for r in results])
                                     for j in range(len(primals)))
    argnums = tuple(range(len(primals)))
    if mode == "fwd":
        value = f(*primals)
        _, hv = jvp(lambda *p: grad(f, argnums)(*p), primals, tangents)
        return value.detach(), tuple(hv)
    if mode == "rev":
        outer = _outer_active(primals + tangents)
        aliases = [_differentiable_alias(p) for p in primals]
        with enable_grad():
            value = f(*aliases)
            grads = _autograd_grad(value, aliases, create_graph=True, allow_unused=True)
            live = [(g, t) for g, t in zip(grads, tangents) if g is not None]
            if not live:
                return value.detach(), tuple(_zeros_like(p) for p in primals)
            dot = ops.sum(live[0][0] * live[0][1])
            for g, t in live[1:]:
                dot = dot + ops.sum(g * t)
        if not dot.requires_grad:        # the gradient is constant (f linear, or piecewise)
            return value.detach(), tuple(_zeros_like(p) for p in primals)
        if not outer and is_grad_enabled():
            outer = _reaches_beyond([dot], aliases)
        hv = _autograd_grad(dot, aliases, allow_unused=True, create_graph=outer)
        _finished(aliases)
        return value.detach(), tuple(_zeros_like(p) if h is None else h
                                     for h, p in zip(hv, primals))
    raise ValueError(f"hvp: unknown mode '{mode}': expected 'fwd' or 'rev'")


def _basis(x, j):
    e = np.zeros(x.numel(), dtype=x.dtype)
    e[j] = 1
    return _tensor.wrap(x.device.asarray(e.reshape(x.shape)), x.device)


def jacobian(f, x, mode="auto"):
    """d f(x) / d x with shape ``out.shape + x.shape``.

    ``mode``: "fwd" (one JVP per input element), "rev" (one VJP per output element),
    "auto" (the cheaper by sizes), or "chain": f is a sequence of stages whose Jacobians
    are computed each in its cheaper mode and multiplied in the cheapest order.
    """
    if mode == "chain":
        return _chain_jacobian(f, x)
    if mode not in ("fwd", "rev", "auto"):
        raise ValueError(f"jacobian: unknown mode '{mode}': expected fwd, rev, auto or chain")
    if not isinstance(x, Tensor):
        raise TypeError(f"jacobian: x must be a Tensor, got {type(x).__name__}")
    out = f(x)
    if mode == "auto":
        mode = "fwd" if x.numel() <= out.numel() else "rev"
    if mode == "fwd":
        cols = [jvp(f, (x,), (_basis(x, j),))[1].reshape(-1) for j in range(x.numel())]
        mat = ops.stack(cols, axis=1) if cols else _zeros_flat(out.numel(), 0, x)
    else:
        out_v, pullback = vjp(f, x)
        rows = [pullback(_basis(out_v, i))[0].reshape(-1) for i in range(out_v.numel())]
        mat = ops.stack(rows, axis=0) if rows else _zeros_flat(0, x.numel(), x)
    return mat.reshape(tuple(out.shape) + tuple(x.shape))


def _zeros_flat(m, n, like):
    return _tensor.wrap(like.device.xp.zeros((m, n), dtype=like.dtype), like.device)


def hessian(f, x):
    """The Hessian of scalar f at x, shape ``x.shape + x.shape`` (forward over reverse)."""
    return jacobian(grad(f), x, mode="fwd")


# -- the Jacobian of a chain of stages, in the cheapest multiplication order -------------------
def _stages(stages):
    if hasattr(stages, "_modules") and hasattr(stages, "__iter__"):
        return list(stages)
    stages = list(stages)
    if not stages or not all(callable(s) for s in stages):
        raise TypeError("a chain must be a non-empty sequence of callables")
    return stages


def _chain_sizes(stages, x):
    sizes = [x.numel()]
    values = [x]
    for stage in stages:
        values.append(stage(values[-1]))
        sizes.append(values[-1].numel())
    return sizes, values


def _matrix_chain(dims):
    """Cheapest bracketing of J_L ... J_1, where J_i has shape (dims[i], dims[i-1]).

    Returns (cost, split) with split[i][j] the best split of the product J_j ... J_i."""
    n = len(dims) - 1
    cost = [[0] * (n + 1) for _ in range(n + 1)]
    split = [[0] * (n + 1) for _ in range(n + 1)]
    for length in range(2, n + 1):
        for i in range(1, n - length + 2):
            j = i + length - 1
            cost[i][j] = math.inf
            for k in range(i, j):
                # (J_j ... J_{k+1}) (J_k ... J_i): dims[j] x dims[k] times dims[k] x dims[i-1]
                c = cost[i][k] + cost[k + 1][j] + dims[j] * dims[k] * dims[i - 1]
                if c < cost[i][j]:
                    cost[i][j] = c
                    split[i][j] = k
    return cost, split


def _bracketing(split, i, j):
    if i == j:
        return f"J{i}"
    k = split[i][j]
    return f"({_bracketing(split, k + 1, j)} {_bracketing(split, i, k)})"


def jacobian_plan(stages, x):
    """The multiplication order ``jacobian(stages, x, mode="chain")`` uses, with its cost
    in multiply-adds next to pure forward (from the input side) and pure reverse.

    Stage i's Jacobian is J_i, of shape (size of stage i's output, size of its input).
    """
    stages = _stages(stages)
    dims, _ = _chain_sizes(stages, x)
    n = len(stages)
    cost, split = _matrix_chain(dims)
    forward = sum(dims[i] * dims[i - 1] * dims[0] for i in range(2, n + 1))
    reverse = sum(dims[n] * dims[i] * dims[i - 1] for i in range(1, n))
    return {
        "sizes": dims,
        "stage_modes": ["fwd" if dims[i - 1] <= dims[i] else "rev" for i in range(1, n + 1)],
        "order": _bracketing(split, 1, n),
        "cost": cost[1][n],
        "forward_cost": forward,
        "reverse_cost": reverse,
    }


def _chain_jacobian(stages, x):
    stages = _stages(stages)
    dims, values = _chain_sizes(stages, x)
    n = len(stages)
    mats = [None]
    for i, stage in enumerate(stages, start=1):
        inp = values[i - 1]
        mode = "fwd" if dims[i - 1] <= dims[i] else "rev"
        mats.append(jacobian(stage, inp, mode).reshape(dims[i], dims[i - 1]))
    _, split = _matrix_chain(dims)

    def product(i, j):
        if i == j:
            return mats[i]
        k = split[i][j]
        return ops.matmul(product(k + 1, j), product(i, k))
    result = product(1, n)
    return result.reshape(tuple(values[-1].shape) + tuple(x.shape))
