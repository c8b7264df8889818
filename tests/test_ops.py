"""Forward, VJP, JVP and second-order checks derived from the op table."""
import numpy as np
import pytest
from op_table import OPS, make_inputs

import gpugrad as gg

SEEDS = [0, 1, 2]
CASES = [pytest.param(case, seed, id=f"{case.name}-{seed}") for case in OPS for seed in SEEDS]
SMOOTH = [pytest.param(case, seed, id=f"{case.name}-{seed}")
          for case in OPS if case.smooth for seed in SEEDS[:2]]


def _tensors(arrays, requires_grad=True):
    return [gg.tensor(a, dtype=gg.float64, requires_grad=requires_grad) for a in arrays]


@pytest.mark.parametrize("case,seed", CASES)
def test_forward_matches_numpy(case, seed):
    rng = np.random.default_rng(seed)
    arrays, consts = make_inputs(case, rng)
    out = case.fn(*_tensors(arrays, requires_grad=False), *consts)
    expected = case.ref(*arrays, *[c.numpy() for c in consts])
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("case,seed", CASES)
def test_vjp_and_jvp_match_central_differences(case, seed):
    rng = np.random.default_rng(100 + seed)
    arrays, consts = make_inputs(case, rng)
    assert gg.gradcheck(lambda *xs: case.fn(*xs, *consts), _tensors(arrays))


@pytest.mark.parametrize("case,seed", CASES)
def test_vjp_inner_product_identity(case, seed):
    """<u, J v> from a central difference equals <J^T u, v> from one VJP."""
    rng = np.random.default_rng(200 + seed)
    arrays, consts = make_inputs(case, rng)
    xs = _tensors(arrays)
    out = case.fn(*xs, *consts)
    u = rng.uniform(0.5, 1.5, size=out.shape)
    vs = [rng.uniform(-1, 1, size=a.shape) for a in arrays]
    grads = gg.autograd.grad(out, xs, gg.tensor(u, dtype=gg.float64), allow_unused=True)
    lhs = sum(float(np.sum(g.numpy() * v)) for g, v in zip(grads, vs) if g is not None)
    eps = 1e-6
    with gg.no_grad():
        plus = case.fn(*_tensors([a + eps * v for a, v in zip(arrays, vs)], False), *consts)
        minus = case.fn(*_tensors([a - eps * v for a, v in zip(arrays, vs)], False), *consts)
    rhs = float(np.sum(u * (plus.numpy() - minus.numpy()) / (2 * eps)))
    assert lhs == pytest.approx(rhs, rel=1e-5, abs=1e-6)


@pytest.mark.parametrize("case,seed", SMOOTH)
def test_second_order(case, seed):
    """The VJP itself is differentiable (reverse over reverse, forward over reverse)."""
    rng = np.random.default_rng(300 + seed)
    arrays, consts = make_inputs(case, rng)
    xs = _tensors(arrays)
    out_shape = case.fn(*xs, *consts).shape
    u = gg.tensor(rng.uniform(0.5, 1.5, size=out_shape), dtype=gg.float64)

    def vjp_fn(*inputs):
        out = case.fn(*inputs, *consts)
        grads = gg.autograd.grad(out, inputs, u, create_graph=True, allow_unused=True)
        return tuple(g if g is not None else gg.zeros_like(x) * x for g, x in zip(grads, inputs))
    assert gg.gradcheck(vjp_fn, xs, atol=1e-4, rtol=1e-3)


def test_table_covers_every_contract_function():
    covered = {case.name.split("_")[0] for case in OPS}
    for name in ["add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "sin", "cos",
                 "tanh", "sigmoid", "relu", "gelu", "abs", "maximum", "minimum", "clip",
                 "where", "matmul", "sum", "mean", "max", "logsumexp", "softmax", "log",
                 "cross", "mse", "linear", "reshape", "transpose", "broadcast", "concatenate",
                 "stack", "getitem"]:
        assert name in covered, name
