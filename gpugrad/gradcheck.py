"""Checking derivatives against central differences."""
from __future__ import annotations

import numpy as np

from ._tensor import Tensor


class GradcheckError(AssertionError):
    """Raised by gradcheck with the worst element."""


def _as_tuple(x):
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _numeric_jacobians(f, inputs, eps):
    """d out / d inputs[i] by central differences, each of shape (out.size, in.size)."""
    hosts = [x.numpy().astype(np.float64) for x in inputs]

    def evaluate(values):
        # recording stays on: f may differentiate inside (a check of second order)
        args = [Tensor(v, device=x.device, requires_grad=x.requires_grad)
                if x.dtype.kind == "f" else x for v, x in zip(values, inputs)]
        outs = _as_tuple(f(*args))
        return np.concatenate([o.numpy().astype(np.float64).ravel() for o in outs])

    jacobians = []
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            jacobians.append(None)
            continue
        base = hosts[i]
        cols = []
        for j in range(base.size):         # base: a NumPy array
            plus = [h.copy() for h in hosts]
            minus = [h.copy() for h in hosts]
            plus[i].flat[j] += eps
            minus[i].flat[j] -= eps
            cols.append((evaluate(plus) - evaluate(minus)) / (2 * eps))
        jacobians.append(np.stack(cols, axis=1) if cols else
                         np.zeros((_total_size(f, inputs), 0)))
    return jacobians


def _reverse_jacobians(f, inputs):
    from .autograd import grad
    outs = _as_tuple(f(*inputs))
    sizes = [o.numel() for o in outs]
    diff = [x for x in inputs if x.requires_grad]
    rows = []
    for k, out in enumerate(outs):
        for j in range(out.numel()):
            seeds = []
            for m, o in enumerate(outs):
                seed = np.zeros(o.shape, dtype=o.dtype)
                if m == k:
                    seed.flat[j] = 1
                seeds.append(Tensor(seed, device=o.device))
            reached = [o for o in outs if o.requires_grad]
            if not reached:
                rows.append([np.zeros(x.numel()) for x in diff])
                continue
            gs = grad([o for o in outs if o.requires_grad],
                      diff, [s for s, o in zip(seeds, outs) if o.requires_grad],
                      retain_graph=True, allow_unused=True)
            rows.append([np.zeros(x.numel()) if g is None else g.numpy().astype(np.float64).ravel()
                         for g, x in zip(gs, diff)])
    result, it = [], iter(range(len(diff)))
    for x in inputs:
        if not x.requires_grad:
            result.append(None)
            continue
        i = next(it)
        result.append(np.stack([r[i] for r in rows], axis=0) if rows else
                      np.zeros((sum(sizes), x.numel())))
    return result


def _forward_jacobians(f, inputs):
    from ._autograd.forward import jvp
    float_idx = [m for m, y in enumerate(inputs) if y.dtype.kind == "f"]

    def with_floats(*floats):
        args = list(inputs)
        for m, v in zip(float_idx, floats):
            args[m] = v
        return f(*args)

    result = []
    for i, x in enumerate(inputs):
        if not x.requires_grad:
            result.append(None)
            continue
        cols = []
        for j in range(x.numel()):
            tangents = []
            for m in float_idx:
                t = np.zeros(inputs[m].shape, dtype=inputs[m].dtype)
                if m == i:
                    t.flat[j] = 1
                tangents.append(Tensor(t, device=inputs[m].device))
            _, touts = jvp(with_floats, tuple(inputs[m] for m in float_idx), tuple(tangents))
            touts = _as_tuple(touts)
            cols.append(np.concatenate([t.numpy().astype(np.float64).ravel() for t in touts]))
        result.append(np.stack(cols, axis=1) if cols else
                      np.zeros((_total_size(f, inputs), 0)))
    return result


def _total_size(f, inputs):
    """The number of output elements of f at inputs (the rows of its Jacobian)."""
    return sum(o.numel() for o in _as_tuple(f(*inputs)))


def _compare(kind, numeric, analytic, i, atol, rtol):
    if numeric.shape != analytic.shape:
        raise GradcheckError(f"{kind} Jacobian of input {i} has shape {analytic.shape}, "
                             f"finite differences {numeric.shape}")
    err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
    if err.size and (err.max() > 0 or not np.isfinite(analytic).all()):
        bad = np.where(np.isfinite(analytic), err, np.inf)
        r, c = np.unravel_index(int(np.argmax(bad)), bad.shape)
        raise GradcheckError(
            f"{kind} derivative of output element {r} with respect to element {c} of input "
            f"{i} is {analytic[r, c]!r}, central differences give {numeric[r, c]!r} "
            f"(atol={atol}, rtol={rtol})")


def gradcheck(f, inputs, eps=1e-6, atol=1e-5, rtol=1e-3, check_forward=True,
              check_reverse=True):
    """Check the VJP and the JVP of ``f`` at ``inputs`` against central differences.

    Inputs that require grad are checked; use float64 inputs. Returns True, or raises
    GradcheckError naming the worst element.

    >>> import gpugrad as gg
    >>> x = gg.tensor([0.5, 1.5], dtype=gg.float64, requires_grad=True)
    >>> gg.gradcheck(lambda x: (x.exp() * x).sum(), (x,))
    True
    """
    inputs = _as_tuple(inputs)
    for i, x in enumerate(inputs):
        if x.requires_grad and x.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} has dtype {x.dtype}; use float64 so that "
                            "central differences are accurate")
    numeric = _numeric_jacobians(f, inputs, eps)
    if check_reverse:
        for i, (n, a) in enumerate(zip(numeric, _reverse_jacobians(f, inputs))):
            if n is not None:
                _compare("reverse-mode (VJP)", n, a, i, atol, rtol)
    if check_forward:
        for i, (n, a) in enumerate(zip(numeric, _forward_jacobians(f, inputs))):
            if n is not None:
                _compare("forward-mode (JVP)", n, a, i, atol, rtol)
    return True
