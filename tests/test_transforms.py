"""Functional transforms, Jacobian accumulation order, Krylov methods."""
import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F


def t64(a, requires_grad=False):
    return gg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def f_scalar(x):
    return (x.tanh() * x * x).sum() + (x * x * x).sum()


def test_grad_and_value_and_grad_against_finite_differences():
    x = t64([0.3, -0.5, 0.8])
    g = gg.grad(f_scalar)(x)
    eps = 1e-6
    for j in range(3):
        e = np.zeros(3)
        e[j] = eps
        num = (f_scalar(t64(x.numpy() + e)).item()
               - f_scalar(t64(x.numpy() - e)).item()) / (2 * eps)
        assert g.numpy()[j] == pytest.approx(num, rel=1e-7)
    value, grads = gg.value_and_grad(lambda a, b: (a * b.exp()).sum(), argnums=(0, 1))(x, x * 2)
    assert value.item() == pytest.approx(float(np.sum(x.numpy() * np.exp(2 * x.numpy()))))
    np.testing.assert_allclose(grads[0].numpy(), np.exp(2 * x.numpy()))
    np.testing.assert_allclose(grads[1].numpy(), x.numpy() * np.exp(2 * x.numpy()))


def test_grad_nests_for_higher_order():
    x = t64([0.7])
    d1 = gg.grad(lambda x: (x ** 4).sum())
    d2 = gg.grad(lambda x: d1(x).sum())
    d3 = gg.grad(lambda x: d2(x).sum())
    assert d2(x).item() == pytest.approx(12 * 0.49)
    assert d3(x).item() == pytest.approx(24 * 0.7)


def test_vjp_fn_can_be_called_many_times():
    x = t64([0.2, 0.4])
    out, pullback = gg.vjp(lambda x: x.sin() * 3, x)
    for scale in (1.0, 2.0, -1.0):
        (g,) = pullback(t64([scale, scale]))
        np.testing.assert_allclose(g.numpy(), 3 * np.cos(x.numpy()) * scale)


def test_hvp_forward_over_reverse_equals_reverse_over_reverse_and_hessian():
    x = t64([0.3, -0.5, 0.8])
    v = t64([1.0, 0.5, -1.0])
    _, (fwd,) = gg.hvp(f_scalar, (x,), (v,))
    _, (rev,) = gg.hvp(f_scalar, (x,), (v,), mode="rev")
    hess = gg.hessian(f_scalar, x).numpy()
    np.testing.assert_allclose(fwd.numpy(), rev.numpy(), rtol=1e-12)
    np.testing.assert_allclose(fwd.numpy(), hess @ v.numpy(), rtol=1e-12)
    xv = x.numpy()
    diag = 6 * xv + 2 * np.tanh(xv) + 4 * xv / np.cosh(xv) ** 2 \
        - 2 * xv ** 2 * np.tanh(xv) / np.cosh(xv) ** 2
    np.testing.assert_allclose(np.diag(hess), diag, rtol=1e-10)


def test_batched_hvp_stacks_tangents():
    x = t64([0.3, -0.5, 0.8])
    vs = t64(np.eye(3))
    _, (stacked,) = gg.hvp(f_scalar, (x,), (vs,), batched=True)
    np.testing.assert_allclose(stacked.numpy(), gg.hessian(f_scalar, x).numpy(), rtol=1e-12)


def _wide(x):       # R^6 -> R^2
    return gg.stack([(x * x).sum(), x.sin().sum() * x[0]])


def _tall(x):       # R^2 -> R^5
    return gg.concatenate([x * x[1], x.exp(), x[:1] * 3])


@pytest.mark.parametrize("fn,n", [(_wide, 6), (_tall, 2)])
def test_jacobian_modes_agree_with_finite_differences(fn, n):
    x = t64(np.linspace(-0.7, 0.9, n))
    jf, jr, ja = (gg.jacobian(fn, x, m).numpy() for m in ("fwd", "rev", "auto"))
    eps = 1e-6
    num = np.stack([(fn(t64(x.numpy() + eps * e)).numpy() - fn(t64(x.numpy() - eps * e)).numpy())
                    / (2 * eps) for e in np.eye(n)], axis=1)
    for j in (jf, jr, ja):
        np.testing.assert_allclose(j, num, rtol=1e-6, atol=1e-8)


def _chain_narrow_middle():
    gg.manual_seed(0)
    l1, l2, l3, l4 = (gg.nn.Linear(a, b) for a, b in ((30, 40), (40, 2), (2, 40), (40, 30)))
    for layer in (l1, l2, l3, l4):
        layer.weight.data = layer.weight.numpy().astype(np.float64)
        layer.bias.data = layer.bias.numpy().astype(np.float64)
    return [lambda x: l1(x).tanh(), l2, lambda x: l3(x).sin(), l4]


def test_chain_with_a_narrow_middle_gets_a_mixed_order_cheaper_than_both_pure_modes():
    stages = _chain_narrow_middle()
    x = t64(np.linspace(-1, 1, 30))
    plan = gg.jacobian_plan(stages, x)
    assert plan["sizes"] == [30, 40, 2, 40, 30]
    assert plan["cost"] < plan["forward_cost"] and plan["cost"] < plan["reverse_cost"]
    assert plan["order"] not in ("(J4 (J3 (J2 J1)))", "(((J4 J3) J2) J1)")
    assert plan["stage_modes"] == ["fwd", "rev", "fwd", "rev"]
    chain = gg.jacobian(stages, x, mode="chain").numpy()

    def composed(x):
        for s in stages:
            x = s(x)
        return x
    np.testing.assert_allclose(chain, gg.jacobian(composed, x, "fwd").numpy(), rtol=1e-10)
    np.testing.assert_allclose(chain, gg.jacobian(composed, x, "rev").numpy(), rtol=1e-10)


def test_chain_accepts_a_sequential():
    gg.manual_seed(1)
    model = gg.nn.Sequential(gg.nn.Linear(3, 4), gg.nn.Tanh(), gg.nn.Linear(4, 2))
    x = gg.tensor([0.1, 0.2, 0.3])
    np.testing.assert_allclose(gg.jacobian(model, x, "chain").numpy(),
                               gg.jacobian(model, x, "rev").numpy(), rtol=1e-5, atol=1e-6)


def test_cg_matches_numpy_solve():
    rng = np.random.default_rng(0)
    m = rng.standard_normal((20, 20))
    a = m @ m.T + 20 * np.eye(20)
    b = rng.standard_normal(20)
    amat = t64(a)
    x = gg.krylov.cg(lambda v: gg.matmul(amat, v), t64(b), tol=1e-12)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(a, b), rtol=1e-8)


def test_lanczos_matches_eigh_with_vectors():
    rng = np.random.default_rng(1)
    m = rng.standard_normal((25, 25))
    a = (m + m.T) / 2
    amat = t64(a)
    values, vectors = gg.krylov.lanczos(lambda v: gg.matmul(amat, v), t64(rng.standard_normal(25)),
                                        k=3, return_vectors=True)
    expected = np.linalg.eigvalsh(a)[::-1][:3]
    np.testing.assert_allclose(values, expected, rtol=1e-8)
    for val, vec in zip(values, vectors.numpy()):
        np.testing.assert_allclose(a @ vec, val * vec, atol=1e-6)


def _small_mlp_loss():
    rng = np.random.default_rng(2)
    x = t64(rng.standard_normal((8, 3)))
    y = gg.tensor(rng.integers(0, 2, size=8))
    w1, b1 = t64(rng.standard_normal((4, 3)) * 0.5), t64(rng.standard_normal(4) * 0.1)
    w2, b2 = t64(rng.standard_normal((2, 4)) * 0.5), t64(rng.standard_normal(2) * 0.1)

    def loss(w1, b1, w2, b2):
        return F.cross_entropy(F.linear(F.linear(x, w1, b1).tanh(), w2, b2), y)
    return loss, [w1, b1, w2, b2]


def _explicit_hessian(loss, params):
    sizes = [p.numel() for p in params]
    flat = np.concatenate([p.numpy().ravel() for p in params])

    def f(v):
        parts, start = [], 0
        for p, s in zip(params, sizes):
            parts.append(v[start:start + s].reshape(p.shape))
            start += s
        return loss(*parts)
    return gg.hessian(f, t64(flat)).numpy()


def test_hessian_eigenvalues_of_a_small_mlp_loss_match_eigh():
    loss, params = _small_mlp_loss()
    hess = _explicit_hessian(loss, params)
    np.testing.assert_allclose(hess, hess.T, atol=1e-10)
    values = gg.krylov.hessian_eigenvalues(loss, params, k=2, tol=1e-10)
    np.testing.assert_allclose(values, np.linalg.eigvalsh(hess)[::-1][:2], rtol=1e-7, atol=1e-9)


def test_hutchinson_trace_is_close_to_the_exact_trace():
    loss, params = _small_mlp_loss()
    exact = np.trace(_explicit_hessian(loss, params))
    estimate, stderr = gg.krylov.hessian_trace(loss, params, samples=300, seed=3)
    assert abs(estimate - exact) < 4 * stderr + 1e-9


def test_forward_over_reverse_with_many_gradient_contributions():
    x = t64([0.3, -0.5, 0.8])
    v = t64([1.0, 0.5, -1.0])
    _, (hv,) = gg.hvp(lambda x: (x * x * x * x).sum(), (x,), (v,))
    np.testing.assert_allclose(hv.numpy(), 12 * x.numpy() ** 2 * v.numpy(), rtol=1e-12)
