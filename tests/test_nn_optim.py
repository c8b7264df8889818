"""nn modules, optimizers against hand-computed updates, state dicts."""
import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F
from gpugrad import nn, optim


def test_parameters_in_registration_order_and_named():
    model = nn.MLP([4, 3, 2])
    names = [n for n, _ in model.named_parameters()]
    assert names == ["0.weight", "0.bias", "2.weight", "2.bias"]
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(3, 4), (3,), (2, 3), (2,)]
    assert [type(m).__name__ for m in model.modules()] == ["MLP", "Linear", "ReLU", "Linear"]


def test_linear_follows_pytorch_layout_and_init_bounds():
    gg.manual_seed(0)
    layer = nn.Linear(100, 7)
    assert layer.weight.shape == (7, 100) and layer.bias.shape == (7,)
    bound = 1 / np.sqrt(100)
    assert np.abs(layer.weight.numpy()).max() <= bound
    assert np.abs(layer.weight.numpy()).max() > 0.8 * bound
    x = gg.randn(5, 100)
    np.testing.assert_allclose(layer(x).numpy(),
                               x.numpy() @ layer.weight.numpy().T + layer.bias.numpy(),
                               rtol=1e-5, atol=1e-6)


def test_zero_grad_sets_none_and_train_eval_propagate():
    model = nn.MLP([3, 4, 2], dropout=0.5)
    F.cross_entropy(model(gg.randn(2, 3)), gg.tensor([0, 1])).backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())
    model.eval()
    assert not any(m.training for m in model.modules())
    x = gg.randn(4, 3)
    np.testing.assert_array_equal(model(x).numpy(), model(x).numpy())
    model.train()
    assert all(m.training for m in model.modules())


def test_dropout_scales_kept_elements_and_is_seeded():
    x = gg.ones(1000)
    gg.manual_seed(3)
    a = F.dropout(x, 0.25).numpy()
    gg.manual_seed(3)
    b = F.dropout(x, 0.25).numpy()
    np.testing.assert_array_equal(a, b)
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}
    assert 0.15 < (a == 0).mean() < 0.35


@pytest.mark.parametrize("dtype", [gg.float32, gg.float64, gg.float16])
def test_dropout_multiplies_by_the_mask_as_pytorch_does(dtype):
    """A dropped element is x * 0, as PyTorch's x * mask gives: -0 for a negative (so that
    1 / out and atan2 see the sign), NaN for NaN and infinities; its gradient likewise.
    Found by the fuzzer (seed 43): atan2(dropout(x), x) gave pi where PyTorch gives -pi."""
    values = np.tile(np.array([-1.5, 2.0, np.nan, np.inf, -np.inf, -0.0]), 50)
    # the same draw on ones: the mask, 0 or 1 / (1 - p)
    mask = gg.ops.dropout(gg.ones(values.size, dtype=gg.float64), 0.5, seed=11,
                          offset=3).numpy()
    assert 0 < (mask == 0).sum() < mask.size
    x = gg.tensor(values, dtype=dtype, requires_grad=True)
    out = gg.ops.dropout(x, 0.5, seed=11, offset=3)
    seed = gg.tensor(np.linspace(-2, 2, values.size), dtype=dtype)
    seed[::7] = float("nan")
    out.backward(seed)
    # the scale, 2, makes every product exact in each dtype
    for got, expected in ((out.detach(), values * mask),
                          (x.grad, seed.numpy().astype(np.float64) * mask)):
        got = got.numpy().astype(np.float64)
        assert np.array_equal(np.isnan(got), np.isnan(expected))
        finite = ~np.isnan(expected)
        assert np.array_equal(got[finite], expected[finite])
        assert np.array_equal(np.signbit(got[finite]), np.signbit(expected[finite]))


def test_state_dict_round_trip_and_errors():
    a, b = nn.MLP([3, 4, 2]), nn.MLP([3, 4, 2])
    b.load_state_dict(a.state_dict())
    for pa, pb in zip(a.parameters(), b.parameters()):
        np.testing.assert_array_equal(pa.numpy(), pb.numpy())
    # missing, unexpected and mis-shaped keys: tests/test_nn_modules.py


def _one_param(values):
    p = nn.Parameter(gg.tensor(np.array(values, dtype=np.float64)))
    return p


def test_sgd_momentum_nesterov_weight_decay_by_hand():
    p = _one_param([1.0, -2.0])
    opt = optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=0.01, nesterov=True)
    g1, g2 = np.array([0.5, 1.0]), np.array([-1.0, 2.0])
    w = np.array([1.0, -2.0])
    buf = None
    for g in (g1, g2):
        p.grad = gg.tensor(g)
        opt.step()
        d = g + 0.01 * w
        buf = d.copy() if buf is None else 0.9 * buf + d
        w = w - 0.1 * (d + 0.9 * buf)
    np.testing.assert_allclose(p.numpy(), w, rtol=1e-12)


def test_adam_and_adamw_by_hand():
    for cls, decoupled in ((optim.Adam, False), (optim.AdamW, True)):
        p = _one_param([0.3, -0.7])
        opt = cls([p], lr=0.01, betas=(0.8, 0.9), eps=1e-6, weight_decay=0.1)
        w = np.array([0.3, -0.7])
        m = np.zeros(2)
        v = np.zeros(2)
        for t, g in enumerate([np.array([0.2, -0.1]), np.array([0.4, 0.3])], start=1):
            p.grad = gg.tensor(g)
            opt.step()
            if decoupled:
                w = w * (1 - 0.01 * 0.1)
            else:
                g = g + 0.1 * w
            m = 0.8 * m + 0.2 * g
            v = 0.9 * v + 0.1 * g * g
            denom = np.sqrt(v) / np.sqrt(1 - 0.9 ** t) + 1e-6
            w = w - 0.01 / (1 - 0.8 ** t) * m / denom
        np.testing.assert_allclose(p.numpy(), w, rtol=1e-12)


def test_optimizer_state_dict_round_trip(tmp_path):
    model = nn.MLP([3, 4, 2])
    opt = optim.Adam(model.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        F.cross_entropy(model(gg.randn(5, 3)), gg.tensor([0, 1, 0, 1, 1])).backward()
        opt.step()
    path = tmp_path / "ckpt.npz"
    gg.save({"model": model.state_dict(), "optim": opt.state_dict()}, str(path))
    loaded = gg.load(str(path))
    model2 = nn.MLP([3, 4, 2])
    model2.load_state_dict(loaded["model"])
    opt2 = optim.Adam(model2.parameters(), lr=0.5)
    opt2.load_state_dict(loaded["optim"])
    assert opt2.param_groups[0]["lr"] == 0.01 and opt2.state_dict()["state"][0]["step"] == 2
    x, y = gg.randn(5, 3), gg.tensor([1, 0, 1, 0, 0])
    for o, m in ((opt, model), (opt2, model2)):
        o.zero_grad()
        F.cross_entropy(m(x), y).backward()
        o.step()
    for pa, pb in zip(model.parameters(), model2.parameters()):
        np.testing.assert_allclose(pa.numpy(), pb.numpy(), rtol=1e-6)


def test_optimizer_step_bumps_version_of_saved_parameters():
    w = nn.Parameter(gg.randn(3))
    opt = optim.SGD([w], lr=0.1)
    y = (w * w).sum()
    w.grad = gg.ones(3)
    opt.step()
    with pytest.raises(RuntimeError, match="'mul'"):
        y.backward()


def test_mlp_matches_pytorch_loss_curve_when_available():
    torch = pytest.importorskip("torch")
    torch.set_default_dtype(torch.float32)
    sizes = [6, 5, 3]
    gg.manual_seed(1)
    model = nn.MLP(sizes)
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
    with torch.no_grad():
        for tp, p in zip(tmodel.parameters(), model.parameters()):
            tp.copy_(torch.from_numpy(p.numpy()))
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 6)).astype(np.float32)
    y = rng.integers(0, 3, size=8)
    for make, tmake in ((lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9),
                         lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9)),
                        (lambda ps: optim.Adam(ps, lr=0.01),
                         lambda ps: torch.optim.Adam(ps, lr=0.01))):
        m = nn.MLP(sizes)
        m.load_state_dict(model.state_dict())
        tm = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3))
        tm.load_state_dict(tmodel.state_dict())
        opt, topt = make(list(m.parameters())), tmake(tm.parameters())
        for _ in range(10):
            loss = F.cross_entropy(m(gg.tensor(x)), gg.tensor(y))
            opt.zero_grad()
            loss.backward()
            opt.step()
            tloss = torch.nn.functional.cross_entropy(tm(torch.from_numpy(x)),
                                                      torch.from_numpy(y))
            topt.zero_grad()
            tloss.backward()
            topt.step()
            assert loss.item() == pytest.approx(tloss.item(), rel=1e-4, abs=1e-6)
