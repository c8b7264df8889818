"""Krylov methods that need only matrix-vector products: conjugate gradients, Lanczos,
Hessian eigenvalues from Hessian-vector products, and Hutchinson's trace estimate.

Vectors stay on their tensors' device; only scalars (inner products, norms) cross to
the host, one handful per iteration.
"""
import math

import numpy as np

from . import _device, _tensor, ops
from ._autograd.mode import no_grad
from ._tensor import Tensor

__all__ = [
    "cg", "lanczos", "hessian_matvec", "hessian_eigenvalues", "hessian_trace",
    "hutchinson_trace"
]


def _dot(a, b):
    return float(ops.sum(a * b).item())


def cg(matvec, b, tol=1e-6, maxiter=None, x0=None):
    """Solve A x = b for symmetric positive definite A given as ``matvec(v) = A v``.

    Stops when ||r|| <= tol * ||b|| or after ``maxiter`` (default: size of b) steps.
    """
    if not isinstance(b, Tensor):
        raise TypeError(f"cg: b must be a Tensor, got {type(b).__name__}")
    maxiter = b.numel() if maxiter is None else maxiter
    with no_grad():
        x = _tensor.wrap(b.device.xp.zeros(b.shape, dtype=b.dtype), b.device) if x0 is None else x0
        r = b - matvec(x) if x0 is not None else b
        p = r
        rs = _dot(r, r)
        target = (tol * math.sqrt(_dot(b, b))) ** 2
        for _ in range(maxiter):
            if rs <= target:
                break
            ap = matvec(p)
            curvature = _dot(p, ap)
            if curvature <= 0:
                raise ValueError("cg: the operator is not positive definite "
                                 f"(p^T A p = {curvature:.3g})")
            alpha = rs / curvature
            x = x + alpha * p
            r = r - alpha * ap
            rs_new = _dot(r, r)
            p = r + (rs_new / rs) * p
            rs = rs_new
    return x


def lanczos(matvec, n_or_v0, k=1, tol=1e-8, return_vectors=False, seed=0):
    """The top-k (largest algebraic) eigenvalues of a symmetric operator, descending.

    ``n_or_v0``: the dimension (a random float32 start on the default device) or a start
    vector, which sets dtype and device. Fully re-orthogonalised; iterates until the top-k
    Ritz values have converged (residual bound below ``tol`` relative to their size) or
    the Krylov space is the whole space. With ``return_vectors`` also returns the
    eigenvectors as the rows of a (k, n) tensor.
    """
    if isinstance(n_or_v0, Tensor):
        v = n_or_v0.reshape(-1)
    else:
        dev = _device.default_device()
        v = _start_vector(int(n_or_v0), np.dtype(np.float32), dev, seed)
    n = v.numel()
    if not 1 <= k <= n:
        raise ValueError(f"lanczos: k={k} must be between 1 and the dimension {n}")
    with no_grad():
        v = v / math.sqrt(_dot(v, v))
        basis = [v]
        alphas, betas = [], []
        theta = s = None
        for m in range(1, n + 1):
            w = matvec(basis[-1]).reshape(-1)
            alphas.append(_dot(w, basis[-1]))
            # full re-orthogonalisation, twice ("twice is enough"), on the device
            q = ops.stack(basis)
            for _ in range(2):
                w = w - ops.matmul(ops.matmul(q, w), q)
            beta = math.sqrt(max(_dot(w, w), 0.0))
            tri = np.diag(alphas) + np.diag(betas, 1) + np.diag(betas, -1)
            theta, s = np.linalg.eigh(tri)
            top = min(k, m)
            bounds = beta * np.abs(s[-1, -top:])
            scale = np.maximum(np.abs(theta[-top:]), 1.0)
            if m >= k and (np.all(bounds <= tol * scale) or m == n):
                break
            if beta <= tol * max(1.0, abs(theta[-1])):
                # an invariant subspace: continue from a fresh direction orthogonal to it
                from .creation import randn
                w = randn(n, dtype=v.dtype, device=v.device)
                for _ in range(2):
                    w = w - ops.matmul(ops.matmul(q, w), q)
                beta_next = 0.0
                w = w / math.sqrt(_dot(w, w))
            else:
                beta_next = beta
                w = w / beta
            betas.append(beta_next)
            basis.append(w)
        order = np.argsort(theta)[::-1][:k]
        values = theta[order]
        if not return_vectors:
            return values
        coeffs = _tensor.wrap(v.device.asarray(s[:, order].T.astype(v.dtype)), v.device)
        vectors = ops.matmul(coeffs, ops.stack(basis[:s.shape[0]]))
        return values, vectors


def _flat(tensors):
    return ops.concatenate([t.reshape(-1) for t in tensors])


def _unflat(vector, like):
    parts, start = [], 0
    for t in like:
        parts.append(vector[start:start + t.numel()].reshape(t.shape))
        start += t.numel()
    return parts


def hessian_matvec(loss_fn, params):
    """``v -> H v`` for the Hessian of ``loss_fn(*params)`` with respect to all params,
    v flattened over them (forward over reverse)."""
    from .functional import hvp
    params = [p.detach() for p in params]

    def matvec(v):
        _, hv = hvp(loss_fn, params, _unflat(v, params))
        return _flat(hv)
    return matvec, params


def hessian_eigenvalues(loss_fn, params, k=1, tol=1e-6, return_vectors=False, seed=0):
    """Top-k (largest algebraic) eigenvalues of the Hessian of ``loss_fn(*params)`` with
    respect to ``params`` together, descending, from Hessian-vector products only."""
    params = list(params)
    matvec, detached = hessian_matvec(loss_fn, params)
    v0 = _start_vector(sum(p.numel() for p in detached), detached[0].dtype, detached[0].device,
                       seed)
    return lanczos(matvec, v0, k, tol=tol, return_vectors=return_vectors)


def hutchinson_trace(matvec, n_or_like, samples=100, seed=0):
    """Hutchinson's estimate of tr(A) = E[z^T A z] over Rademacher vectors z; returns
    (estimate, standard error)."""
    if isinstance(n_or_like, Tensor):
        n, dtype, dev = n_or_like.numel(), n_or_like.dtype, n_or_like.device
    else:
        n, dtype, dev = int(n_or_like), np.dtype(np.float32), _device.default_device()
    rng = dev.new_generator(seed)
    signs = dev.asarray(np.array([-1.0, 1.0], dtype=dtype))
    values = []
    with no_grad():
        for _ in range(samples):
            z = _tensor.wrap(dev.adopt(rng.choice(signs, (n,))), dev)
            values.append(_dot(z, matvec(z).reshape(-1)))
    values = np.array(values)
    return float(values.mean()), float(values.std(ddof=1) / math.sqrt(samples)) \
        if samples > 1 else float("nan")


def hessian_trace(loss_fn, params, samples=100, seed=0):
    """Hutchinson's estimate of the trace of the Hessian of ``loss_fn(*params)``."""
    matvec, detached = hessian_matvec(loss_fn, list(params))
    return hutchinson_trace(matvec, _flat(detached), samples, seed)


def _start_vector(n, dtype, dev, seed):
    """A random start from a generator of its own: the user's random stream is untouched."""
    return _tensor.wrap(dev.adopt(dev.new_generator(seed).normal((n,), dtype)), dev)
