"""Forward, VJP, JVP and second-order checks derived from the op table, on two device
instances (``cpu`` and a second, separate ``cpu:1`` standing in for ``cuda:1``)."""
import numpy as np
import pytest
from op_table import OPS, make_inputs

import gpugrad as gg
from gpugrad import _device

SEEDS = [0, 1, 2]
CASES = [pytest.param(case, seed, id=f"{case.name}-{seed}") for case in OPS for seed in SEEDS]
SMOOTH = [pytest.param(case, seed, id=f"{case.name}-{seed}")
          for case in OPS if case.smooth for seed in SEEDS[:2]]


@pytest.fixture(autouse=True, params=["cpu", "cpu:1"])
def device(request, monkeypatch):
    """Every test runs on the default CPU device and again on a second instance, made the
    default so that tensors the cases build themselves land there too."""
    monkeypatch.setattr(_device, "_default", _device.device(request.param))
    return request.param


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
    assert gg.gradcheck(lambda *xs: case.fn(*xs, *consts), _tensors(arrays), **case.gradcheck)


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
    eps = case.gradcheck.get("eps", 1e-6)
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


def test_results_live_on_the_device_of_the_inputs(device):
    case = next(c for c in OPS if c.name == "composite")
    arrays, consts = make_inputs(case, np.random.default_rng(0))
    xs = _tensors(arrays)
    out = case.fn(*xs, *consts)
    out.backward()
    assert out.device == device and all(x.grad.device == device for x in xs)


def test_every_primitive_in_the_registry_is_reached_by_the_table(device):
    """Forward, backward and double backward of every case, profiled: each primitive of
    the registry must show up (a new op without a case fails here)."""
    reached = set()
    for case in OPS:
        arrays, consts = make_inputs(case, np.random.default_rng(0))
        xs = _tensors(arrays)
        with gg.profiler.profile(record_memory=False) as prof:
            out = case.fn(*xs, *consts)
            grads = gg.autograd.grad(out.sum(), xs, create_graph=True, allow_unused=True)
            total = sum((g * g).sum() for g in grads if g is not None)
            if isinstance(total, gg.Tensor) and total.requires_grad:
                total.backward()
            gg.jvp(lambda *t, f=case.fn, c=consts: f(*t, *c), tuple(x.detach() for x in xs),
                   tuple(gg.ones_like(x) for x in xs))
        reached |= {e.name for e in prof.events}
    missing = set(gg.ops.PRIMITIVES) - reached
    assert not missing, f"primitives without a case in tests/op_table.py: {sorted(missing)}"


def test_two_device_instances_do_not_mix():
    a = gg.ones(3, device="cpu", requires_grad=True)
    b = gg.ones(3, device="cpu:1")
    with pytest.raises(ValueError, match="cpu.*cpu:1|cpu:1.*cpu"):
        a + b
    assert ((a * 2).sum() + 1).item() == 7.0      # the engine is still usable


class _Recorder:
    """Stands in for the profiler: sees every (op, device, params, arrays) that runs."""

    def __init__(self):
        self.calls = []

    def run(self, op, dev, p, arrays):
        self.calls.append((op, dev, p, list(arrays)))
        return dev.run(op, p, arrays)


def test_every_forward_writes_into_a_given_buffer(device, monkeypatch):
    """Each primitive run by the table's cases (forward and backward) is run again with
    ``out=`` a poisoned buffer: it must return that very buffer, holding the same values."""
    from gpugrad._autograd import graph
    seen = set()
    for case in OPS:
        arrays, consts = make_inputs(case, np.random.default_rng(1))
        recorder = _Recorder()
        monkeypatch.setattr(graph, "profiler", recorder)
        xs = _tensors(arrays)
        out = case.fn(*xs, *consts)
        gg.autograd.grad(out.sum(), xs, allow_unused=True)
        monkeypatch.setattr(graph, "profiler", None)
        for op, dev, p, ins in recorder.calls:
            if op.name in seen:
                continue
            seen.add(op.name)
            expected = dev.run(op, p, ins)
            buffer = dev.xp.full(expected.shape, np.nan, dtype=expected.dtype) \
                if expected.dtype.kind == "f" else dev.xp.empty(expected.shape, expected.dtype)
            result = dev.run(op, p, ins, out=buffer)
            assert result is buffer, op.name
            np.testing.assert_array_equal(dev.to_host(buffer), dev.to_host(expected),
                                          err_msg=op.name)
    assert len(seen) > 30
