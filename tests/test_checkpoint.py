"""gg.utils.checkpoint.checkpoint (non-reentrant) and MLP(checkpoint_every=k)."""
import numpy as np
import pytest

import gpugrad as gg
from gpugrad.nn import functional as F


def _grads(params):
    return [p.grad.numpy().copy() for p in params]


def test_same_values_and_gradients_as_without_it():
    gg.manual_seed(0)
    a, b = gg.nn.Linear(5, 7), gg.nn.Linear(7, 3)
    x = gg.randn(4, 5, requires_grad=True)
    params = [x, a.weight, a.bias, b.weight, b.bias]

    def f(t):
        return b(gg.tanh(a(t))) * 2.0

    y = f(x)
    y.sum().backward()
    expected = _grads(params)
    for p in params:
        p.grad = None
    y2 = gg.utils.checkpoint.checkpoint(f, x)
    assert y2.grad_fn.name == "checkpoint"
    assert np.array_equal(y.numpy(), y2.numpy())
    y2.sum().backward()
    for e, p in zip(expected, params):
        assert np.allclose(e, p.grad.numpy(), rtol=1e-6, atol=1e-7)


def test_random_ops_inside_replay_the_same_draws_in_the_recompute():
    gg.manual_seed(0)
    layer = gg.nn.Linear(64, 64)

    def f(t):
        return F.dropout(gg.tanh(layer(t)), 0.5)

    x = gg.randn(32, 64, requires_grad=True)
    gg.manual_seed(7)
    f(x).sum().backward()
    expected = x.grad.numpy().copy()
    after_plain = gg.rand(3).numpy()
    x.grad = None
    gg.manual_seed(7)
    y = gg.checkpoint(f, x)
    gg.rand(100)                # draws between the forward and the backward do not matter
    y.sum().backward()
    assert np.allclose(expected, x.grad.numpy(), rtol=1e-6, atol=1e-7)
    gg.manual_seed(7)
    gg.checkpoint(f, x)
    assert np.array_equal(gg.rand(3).numpy(), after_plain)   # the stream moved on as usual


def test_activations_inside_are_freed_after_the_forward():
    gg.manual_seed(0)
    layers = [gg.nn.Linear(128, 128) for _ in range(8)]
    x = gg.randn(256, 128)

    def f(t):
        for layer in layers:
            t = gg.tanh(layer(t))
        return t

    def live_after_forward(use_checkpoint):
        base = gg.memory.stats()["current_bytes"]
        y = gg.checkpoint(f, x) if use_checkpoint else f(x)
        live = gg.memory.stats()["current_bytes"] - base
        y.sum().backward()
        return live

    plain, checked = live_after_forward(False), live_after_forward(True)
    one_activation = 256 * 128 * 4
    assert plain >= 8 * one_activation
    assert checked <= 2 * one_activation


def test_several_outputs_and_autograd_grad():
    gg.manual_seed(1)
    x = gg.randn(3, 4, requires_grad=True)
    w = gg.randn(4, 4, requires_grad=True)

    def f(t):
        h = t @ w
        return gg.tanh(h), h * h

    a, b = f(x)
    ga, gw = gg.autograd.grad((a * 3.0).sum() + b.sum(), (x, w))
    a2, b2 = gg.checkpoint(f, x)
    assert isinstance(a2, gg.Tensor) and np.array_equal(b.numpy(), b2.numpy())
    ga2, gw2 = gg.autograd.grad((a2 * 3.0).sum() + b2.sum(), (x, w))
    assert np.allclose(ga.numpy(), ga2.numpy(), rtol=1e-6)
    assert np.allclose(gw.numpy(), gw2.numpy(), rtol=1e-6)


def test_create_graph_through_a_checkpoint_gives_second_derivatives():
    x = gg.tensor([0.5, -1.0, 2.0], dtype=np.float64, requires_grad=True)
    y = gg.checkpoint(lambda t: gg.sin(t) * t, x)
    (g,) = gg.autograd.grad(y.sum(), x, create_graph=True)
    (h,) = gg.autograd.grad(g.sum(), x)
    v = x.numpy()
    assert np.allclose(g.numpy(), np.cos(v) * v + np.sin(v))
    assert np.allclose(h.numpy(), 2 * np.cos(v) - v * np.sin(v))


def test_gradcheck_through_a_checkpoint():
    w = gg.randn(3, 3, dtype=np.float64)
    assert gg.gradcheck(lambda t: gg.checkpoint(lambda u: gg.tanh(u @ w) * u, t),
                        [gg.randn(2, 3, dtype=np.float64, requires_grad=True)])


def test_an_argument_modified_in_place_after_the_forward_is_an_error():
    x = gg.randn(3, 3, requires_grad=True)
    h = x * 1.0
    y = gg.checkpoint(lambda t: gg.exp(t), h)
    h.data[0, 0] = 5.0          # a write through .data bumps h's version
    with pytest.raises(RuntimeError, match="modified in place"):
        y.sum().backward()


def test_without_grad_it_is_a_plain_call_and_bad_use_is_reported():
    x = gg.randn(2, 2)
    with gg.no_grad():
        y = gg.checkpoint(gg.exp, x)
    assert y.grad_fn is None
    with pytest.raises(ValueError, match="non-reentrant"):
        gg.checkpoint(gg.exp, x, use_reentrant=True)
    with pytest.raises(TypeError, match="callable"):
        gg.checkpoint(3, x)


@pytest.mark.parametrize("every", [1, 3, 4])
def test_mlp_checkpoint_every_matches_the_plain_mlp(every):
    gg.manual_seed(3)
    model = gg.nn.MLP([6] + [16] * 8 + [3], activation="tanh", dropout=0.2)
    x, labels = gg.randn(10, 6), gg.tensor(np.arange(10) % 3)
    gg.manual_seed(11)
    loss = F.cross_entropy(model(x), labels)
    loss.backward()
    expected = _grads(model.parameters())
    model.zero_grad()
    model.checkpoint_every = every
    gg.manual_seed(11)
    loss2 = F.cross_entropy(model(x), labels)
    loss2.backward()
    assert loss.item() == loss2.item()
    for e, p in zip(expected, model.parameters()):
        assert np.allclose(e, p.grad.numpy(), rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="checkpoint_every"):
        gg.nn.MLP([2, 2], checkpoint_every=0)


def test_the_recompute_runs_under_the_forwards_autocast_state():
    """Backward outside the autocast region: the recompute must still run the region in
    bfloat16, or its graph would not match the forward's."""
    gg.manual_seed(5)
    layer = gg.nn.Linear(8, 8)
    x = gg.randn(4, 8, requires_grad=True)

    def f(t):
        return gg.tanh(layer(t))

    with gg.autocast(dtype=gg.bfloat16):
        y = f(x)
    y.to(np.float32).sum().backward()
    expected = [x.grad.numpy().copy(), layer.weight.grad.numpy().copy()]
    x.grad = None
    layer.zero_grad()
    with gg.autocast(dtype=gg.bfloat16):
        y2 = gg.checkpoint(f, x)
    assert y2.dtype == gg.bfloat16
    y2.to(np.float32).sum().backward()
    assert np.array_equal(expected[0], x.grad.numpy())
    assert np.array_equal(expected[1], layer.weight.grad.numpy())


def test_draws_replay_where_the_generator_state_cannot_be_read(monkeypatch):
    """A GPU's generator (CuPy's) has no state to read back: the device forks its stream
    at the region instead (Device.rng_state's default). Forced here on the CPU, with a
    draw of that generator inside the region (dropout draws from the Philox counter)."""
    from gpugrad import _device
    monkeypatch.setattr(_device.CPUDevice, "rng_state", _device.Device.rng_state)
    monkeypatch.setattr(_device.CPUDevice, "set_rng_state", _device.Device.set_rng_state)
    gg.manual_seed(0)
    x = gg.randn(64, 32, requires_grad=True)

    def f(t):
        return gg.tanh(t) * (gg.rand(*t.shape) + 0.5)

    y = gg.checkpoint(f, x)
    noise = y.numpy() / np.tanh(x.numpy())
    gg.rand(50)                     # draws between the forward and the backward
    y.sum().backward()
    # d/dx tanh(x) * noise with the forward's noise: the recompute drew the same numbers
    expected = (1 - np.tanh(x.numpy()) ** 2) * noise
    assert np.allclose(x.grad.numpy(), expected, rtol=1e-4, atol=1e-5)
    x.grad = None
    y = gg.checkpoint(f, x)         # a new region draws new numbers
    assert not np.allclose(y.numpy() / np.tanh(x.numpy()), noise)
