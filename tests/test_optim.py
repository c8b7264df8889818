"""Optimizers with parameter groups and schedulers, against PyTorch in float64 where torch
is installed, and their state dicts and errors everywhere."""
import numpy as np
import pytest

import gpugrad as gg
from gpugrad import nn, optim
from gpugrad.optim import lr_scheduler


def _params(rng, shapes):
    return [nn.Parameter(gg.tensor(rng.standard_normal(s), dtype=gg.float64)) for s in shapes]


def _torch_params(torch, params):
    return [torch.tensor(p.numpy(), requires_grad=True) for p in params]


OPTIMIZERS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.03, betas=(0.85, 0.99), weight_decay=0.3)),
    ("SGD", dict(lr=0.05, maximize=True)),
    ("SGD", dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True, maximize=True)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.02, weight_decay=0.1, amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.03, weight_decay=0.3, amsgrad=True, maximize=True)),
]


@pytest.mark.parametrize("name,options", OPTIMIZERS, ids=lambda v: str(v))
def test_twenty_steps_match_torch_in_float64_with_two_groups(name, options):
    """Two parameter groups, the second with its own lr (and weight decay): the options are
    read from each group at every step, and the lr is changed half way as a user would."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    ours = _params(rng, [(3, 4), (4,), (2, 3)])
    theirs = _torch_params(torch, ours)
    extra = {"lr": options["lr"] * 0.5, "weight_decay": 0.02}
    opt = getattr(optim, name)([{"params": ours[:2]}, {"params": ours[2:], **extra}], **options)
    topt = getattr(torch.optim, name)([{"params": theirs[:2]}, {"params": theirs[2:], **extra}],
                                      **options)
    for step in range(20):
        if step == 10:
            for groups in (opt.param_groups, topt.param_groups):
                groups[0]["lr"] *= 0.3
        # gradients large every fourth step: AMSGrad's maximum then differs from v
        grads = [rng.standard_normal(p.shape) * (3.0 if step % 4 == 0 else 0.2) for p in ours]
        for p, tp, g in zip(ours, theirs, grads):
            if step == 5 and p is ours[1]:
                p.grad, tp.grad = None, None       # a parameter without a gradient is skipped
                continue
            p.grad = gg.tensor(g, dtype=gg.float64)
            tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs):
            np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-12, atol=1e-14)
    theirs_state = topt.state_dict()["state"]
    for index, entry in opt.state_dict()["state"].items():
        for key, value in theirs_state.get(index, {}).items():   # SGD without momentum: none
            if key == "step":
                assert entry[key] == int(value)
            elif value is not None:
                np.testing.assert_allclose(entry[key].numpy(), value.numpy(), rtol=1e-10,
                                           atol=1e-14, err_msg=key)


def test_the_fused_update_kernels_are_used(monkeypatch):
    seen = []
    p = nn.Parameter(gg.ones(3))
    # the lr is the kernels' fourth and fifth argument
    for cls, kernel, at in ((optim.SGD, "sgd_update", 3), (optim.Adam, "adam_update", 4)):
        original = getattr(p.device.kernels, kernel)
        monkeypatch.setattr(p.device.kernels, kernel,
                            lambda *a, k=kernel, f=original, i=at: (seen.append((k, a[i])), f(*a)))
        opt = cls([p], lr=0.25)
        p.grad = gg.ones(3)
        opt.param_groups[0]["lr"] = 0.125
        opt.step()
    assert seen == [("sgd_update", 0.125), ("adam_update", 0.125)]


def test_amsgrad_and_maximize_by_hand_without_torch():
    """AMSGrad divides by the largest second moment seen, not the current one; maximize
    walks up the gradient."""
    p = nn.Parameter(gg.zeros(1, dtype=gg.float64))
    opt = optim.Adam([p], lr=0.1, betas=(0.0, 0.5), eps=0.0, amsgrad=True)
    steps = []
    for g in (2.0, 0.5):
        before = p.item()
        p.grad = gg.tensor([g], dtype=gg.float64)
        opt.step()
        steps.append(before - p.item())
    v = [0.5 * 4.0, 0.25 * 4.0 + 0.5 * 0.25]        # beta2 = 0.5: v_t = v/2 + g^2/2
    vmax = max(v)
    assert steps[0] == pytest.approx(0.1 * 2.0 / (np.sqrt(v[0]) / np.sqrt(0.5)), rel=1e-12)
    assert steps[1] == pytest.approx(0.1 * 0.5 / (np.sqrt(vmax) / np.sqrt(0.75)), rel=1e-12)
    np.testing.assert_allclose(opt.state[p]["max_exp_avg_sq"], [vmax], rtol=1e-12)
    assert set(opt.state_dict()["state"][0]) == {"step", "exp_avg", "exp_avg_sq",
                                                 "max_exp_avg_sq"}
    q = nn.Parameter(gg.zeros(2, dtype=gg.float64))
    sgd = optim.SGD([q], lr=0.5, maximize=True)
    q.grad = gg.tensor([1.0, -2.0], dtype=gg.float64)
    sgd.step()
    assert q.tolist() == [0.5, -1.0]
    assert opt.param_groups[0]["amsgrad"] and sgd.param_groups[0]["maximize"]


def test_add_param_group_and_group_defaults():
    a, b = nn.Parameter(gg.ones(2)), nn.Parameter(gg.ones(3))
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.01})
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.01]
    assert opt.param_groups[1]["momentum"] == 0.9 and opt.param_groups[1]["params"] == [b]
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": [a]})
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.Adam([])
    with pytest.raises(TypeError, match="not a leaf tensor that requires grad"):
        optim.SGD([gg.ones(2)], lr=0.1)
    with pytest.raises(ValueError, match="invalid learning rate"):
        optim.SGD([a], lr=-1.0)
    with pytest.raises(ValueError, match="beta"):
        optim.Adam([a], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="Nesterov"):
        optim.SGD([a], lr=0.1, nesterov=True)


def test_zero_grad_to_none_by_default_or_to_zeros():
    p = nn.Parameter(gg.ones(2))
    opt = optim.SGD([p], lr=0.1)
    p.grad = gg.ones(2)
    kept = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is kept and p.grad.tolist() == [0.0, 0.0]
    opt.zero_grad()
    assert p.grad is None


@pytest.mark.parametrize("cls", [optim.SGD, optim.Adam, optim.AdamW])
def test_state_dict_round_trip_through_a_file_with_groups(cls, tmp_path):
    def make():
        gg.manual_seed(0)
        model = nn.MLP([3, 4, 2])
        params = list(model.parameters())
        opt = cls([{"params": params[:2]}, {"params": params[2:], "lr": 0.003}], lr=0.01,
                  **({"momentum": 0.9} if cls is optim.SGD else {}))
        return model, opt
    model, opt = make()
    x, y = gg.randn(5, 3), gg.tensor([0, 1, 0, 1, 1])
    for _ in range(2):
        opt.zero_grad()
        gg.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    opt.param_groups[1]["lr"] = 0.007
    path = tmp_path / "ckpt.npz"
    gg.save({"model": model.state_dict(), "optim": opt.state_dict()}, str(path))
    loaded = gg.load(str(path))
    model2, opt2 = make()
    model2.load_state_dict(loaded["model"])
    opt2.load_state_dict(loaded["optim"])
    assert [g["lr"] for g in opt2.param_groups] == [0.01, 0.007]
    for o, m in ((opt, model), (opt2, model2)):
        o.zero_grad()
        gg.nn.functional.cross_entropy(m(x), y).backward()
        o.step()
    for pa, pb in zip(model.parameters(), model2.parameters()):
        np.testing.assert_allclose(pa.numpy(), pb.numpy(), rtol=1e-6)
    bad = opt.state_dict()
    bad["param_groups"] = bad["param_groups"][:1]
    with pytest.raises(ValueError, match="1 parameter group.*2"):
        opt2.load_state_dict(bad)


def test_state_dict_layout_is_pytorchs():
    p = nn.Parameter(gg.ones(2))
    opt = optim.Adam([p], lr=0.1)
    p.grad = gg.ones(2)
    opt.step()
    state = opt.state_dict()
    assert state["param_groups"][0]["params"] == [0] and state["param_groups"][0]["lr"] == 0.1
    assert set(state["state"][0]) == {"step", "exp_avg", "exp_avg_sq"}
    assert state["state"][0]["step"] == 1


# -- schedulers ----------------------------------------------------------------------------------
SCHEDULERS = [
    ("StepLR", dict(step_size=7, gamma=0.5)),
    ("MultiStepLR", dict(milestones=[3, 10, 10, 31], gamma=0.3)),
    ("ExponentialLR", dict(gamma=0.93)),
    ("CosineAnnealingLR", dict(T_max=12, eta_min=0.001)),
    ("CosineAnnealingLR", dict(T_max=50)),
    ("LinearLR", dict(start_factor=0.25, end_factor=0.9, total_iters=17)),
    ("LinearLR", dict()),
    ("OneCycleLR", dict(max_lr=0.4, total_steps=50)),
    ("OneCycleLR", dict(max_lr=[0.4, 0.2], epochs=5, steps_per_epoch=10, pct_start=0.2,
                        anneal_strategy="linear", three_phase=True)),
]


@pytest.mark.parametrize("opt_name", ["SGD", "Adam"])
@pytest.mark.parametrize("name,options", SCHEDULERS, ids=lambda v: str(v))
def test_schedules_equal_torchs_over_fifty_steps(name, options, opt_name):
    torch = pytest.importorskip("torch")
    ours = [nn.Parameter(gg.ones(2)), nn.Parameter(gg.ones(1))]
    theirs = [torch.ones(2, requires_grad=True), torch.ones(1, requires_grad=True)]
    extra = {"momentum": 0.9} if opt_name == "SGD" else {}
    opt = getattr(optim, opt_name)([{"params": ours[:1]}, {"params": ours[1:], "lr": 0.05}],
                                   lr=0.1, **extra)
    topt = getattr(torch.optim, opt_name)([{"params": theirs[:1]},
                                           {"params": theirs[1:], "lr": 0.05}], lr=0.1, **extra)
    sched = getattr(lr_scheduler, name)(opt, **options)
    tsched = getattr(torch.optim.lr_scheduler, name)(topt, **options)
    assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-13)
    for _ in range(49):
        for p, tp in zip(ours, theirs):
            p.grad = gg.ones(p.shape)
            tp.grad = torch.ones(tp.shape)
        opt.step()
        topt.step()
        sched.step()
        tsched.step()
        assert sched.get_last_lr() == pytest.approx(tsched.get_last_lr(), rel=1e-13, abs=1e-15)
        for g, tg in zip(opt.param_groups, topt.param_groups):
            assert g["lr"] == pytest.approx(tg["lr"], rel=1e-13, abs=1e-15)
            key = "momentum" if opt_name == "SGD" else "betas"
            assert np.allclose(g[key], tg[key], rtol=1e-13)
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.numpy(), tp.detach().numpy(), rtol=1e-5)


def test_schedules_by_hand_without_torch():
    p = nn.Parameter(gg.ones(1))
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)
    lrs = [sched.get_last_lr()[0]]
    for _ in range(4):
        sched.step()
        lrs.append(opt.param_groups[0]["lr"])
    assert lrs == [1.0, 1.0, 0.5, 0.5, 0.25]
    opt2 = optim.SGD([p], lr=1.0)
    cos = lr_scheduler.CosineAnnealingLR(opt2, T_max=4)
    values = []
    for _ in range(4):
        cos.step()
        values.append(cos.get_last_lr()[0])
    assert values == pytest.approx([(1 + np.cos(np.pi * t / 4)) / 2 for t in range(1, 5)],
                                   abs=1e-12)
    one = lr_scheduler.OneCycleLR(optim.SGD([p], lr=1.0, momentum=0.9), max_lr=1.0,
                                  total_steps=10)
    assert one.get_last_lr() == [pytest.approx(1.0 / 25)]
    assert one.optimizer.param_groups[0]["momentum"] == pytest.approx(0.95)
    with pytest.raises(ValueError, match="total_steps"):
        lr_scheduler.OneCycleLR(opt, max_lr=1.0)
    for _ in range(9):
        one.step()
    assert one.get_last_lr()[0] == pytest.approx(1.0 / 25 / 1e4)
    one.step()
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        one.step()
    with pytest.raises(ValueError, match="momentum or beta1"):
        lr_scheduler.OneCycleLR(_NoMomentum(), max_lr=1.0, total_steps=3)


class _NoMomentum:
    defaults = {"lr": 0.1}

    def __init__(self):
        self.param_groups = [{"lr": 0.1, "params": []}]


def test_scheduler_state_dict_resumes():
    p = nn.Parameter(gg.ones(1))
    opt = optim.SGD([p], lr=1.0)
    sched = lr_scheduler.ExponentialLR(opt, gamma=0.5)
    sched.step()
    sched.step()
    state = sched.state_dict()
    assert "optimizer" not in state and state["last_epoch"] == 2
    opt2 = optim.SGD([p], lr=1.0)
    sched2 = lr_scheduler.ExponentialLR(opt2, gamma=0.5)
    sched2.load_state_dict(state)
    assert sched2.get_last_lr() == [0.25]


def _without_host_blas(monkeypatch):
    from gpugrad.kernels import host_blas
    monkeypatch.setattr(host_blas, "_AXPY", {})
    monkeypatch.setattr(host_blas, "_searched", True)


@pytest.mark.parametrize("blas", [True, False], ids=["host BLAS", "NumPy only"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_twin_updates_in_blocks_give_the_whole_array_bits(dtype, blas, monkeypatch):
    """A large parameter's host update runs in cache-sized blocks where it needs
    temporaries; every variant gives the bits of the same arithmetic over the whole array,
    state included, and so does every variant given a scratch for its temporaries
    (gg.compile's host replay), with NumPy's BLAS or without."""
    from gpugrad.kernels import reference as R
    if not blas:
        _without_host_blas(monkeypatch)
    blocked = []

    def counted(run):
        return lambda *a: blocked.append(run(*a)) or blocked[-1]
    monkeypatch.setattr(R, "_in_blocks", counted(R._in_blocks))
    # a scratch of one block, dirty: it must be written before it is read
    scratch = np.full(R.UPDATE_BLOCK, np.nan, dtype)
    rng = np.random.default_rng(0)
    n = 2 * R.UPDATE_BLOCK + 12345 + 1       # blocks, and a short last one (n % 3 == 0)
    shape = (n // 3, 3)
    grad = rng.standard_normal(shape).astype(dtype)
    # param, momentum buffer or m, v, vmax (the last two nonnegative)
    base = [rng.standard_normal(shape).astype(dtype) for _ in range(2)] + \
        [np.abs(rng.standard_normal(shape)).astype(dtype) for _ in range(2)]

    def fresh():
        return [a.copy() for a in base]
    sgd = [dict(momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=False),
           dict(momentum=0.9, dampening=0.1, weight_decay=0.01, nesterov=False),
           dict(momentum=0.9, dampening=0.0, weight_decay=0.01, nesterov=True)]
    for options in sgd:
        for first in (True, False):
            for maximize in (False, True):
                a, b, c = fresh(), fresh(), fresh()
                buf_a = a[1] if options["momentum"] else None
                buf_b = b[1] if options["momentum"] else None
                buf_c = c[1] if options["momentum"] else None
                R.sgd_update(a[0], grad, buf_a, 0.05, first=first, maximize=maximize,
                             **options)
                R.sgd_update(c[0], grad, buf_c, 0.05, first=first, maximize=maximize,
                             scratch=scratch, **options)
                with monkeypatch.context() as whole:
                    whole.setattr(R, "UPDATE_BLOCK", n)
                    R.sgd_update(b[0], grad, buf_b, 0.05, first=first, maximize=maximize,
                                 **options)
                assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b)), options
                assert all(x.tobytes() == y.tobytes() for x, y in zip(a, c)), options
    for decoupled in (False, True):
        for amsgrad in (False, True):
            a, b, c = fresh(), fresh(), fresh()
            args = (1e-3, 0.9, 0.999, 1e-8, 0.01, 3)
            R.adam_update(a[0], grad, a[1], a[2], *args, decoupled,
                          vmax=a[3] if amsgrad else None, maximize=amsgrad)
            R.adam_update_host(c[0], grad, c[1], c[2], c[3] if amsgrad else None,
                               R.adam_scalars(*args), decoupled, amsgrad, scratch=scratch)
            assert all(x.tobytes() == y.tobytes() for x, y in zip(a, c)), (decoupled, amsgrad)
            with monkeypatch.context() as whole:
                whole.setattr(R, "UPDATE_BLOCK", n)
                R.adam_update(b[0], grad, b[1], b[2], *args, decoupled,
                              vmax=b[3] if amsgrad else None, maximize=amsgrad)
            assert all(x.tobytes() == y.tobytes() for x, y in zip(a, b)), (decoupled, amsgrad)
    # the runs of a large parameter (two of every three) blocked: all of them without BLAS;
    # with it, SGD's only where it makes a temporary (maximize, weight decay, Nesterov)
    sgd_blocked = 2 * (2 + 4 + 4) if blas and R.host_blas.available(dtype) else 2 * 3 * 2 * 2
    assert len(blocked) == sgd_blocked + 2 * 2 * 2 and all(blocked)


SGD_FLOAT32_CASES = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, weight_decay=0.1, nesterov=True),
    dict(lr=0.05, momentum=0.9, weight_decay=0.01, nesterov=True, maximize=True),
]


@pytest.mark.parametrize("options", SGD_FLOAT32_CASES, ids=lambda v: str(v))
def test_sgd_in_float32_gives_torchs_bits(options):
    """PyTorch's CPU SGD rounds each ``add(..., alpha=)`` once (a fused multiply-add); so
    does ours on NumPy's BLAS: five float32 steps give the same bits, parameters and
    momentum buffers, for a small parameter and one large enough to run in blocks."""
    torch = pytest.importorskip("torch")
    from gpugrad.kernels import host_blas, reference
    if not host_blas.available(np.float32):
        pytest.skip("this NumPy's BLAS has no axpy that rounds once")
    rng = np.random.default_rng(3)
    shapes = [(7, 5), (3,), (2 * reference.UPDATE_BLOCK + 11,)]
    ours = [nn.Parameter(gg.tensor(rng.standard_normal(s).astype(np.float32))) for s in shapes]
    theirs = [torch.tensor(p.numpy(), requires_grad=True) for p in ours]
    opt, topt = optim.SGD(ours, **options), torch.optim.SGD(theirs, **options)
    for _ in range(5):
        for p, tp in zip(ours, theirs):
            g = rng.standard_normal(p.shape).astype(np.float32)
            p.grad, tp.grad = gg.tensor(g), torch.tensor(g)
        opt.step()
        topt.step()
        for p, tp in zip(ours, theirs):
            assert p.numpy().tobytes() == tp.detach().numpy().tobytes(), options
            if options.get("momentum"):
                buf = topt.state[tp]["momentum_buffer"].numpy()
                assert np.asarray(opt.state[p]["momentum_buffer"]).tobytes() == buf.tobytes()


@pytest.mark.parametrize("blas", [True, False], ids=["host BLAS", "NumPy only"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("size", [67, "large"])
def test_sgd_update_rounds_once_on_the_host_blas_and_twice_without(dtype, size, blas,
                                                                   monkeypatch):
    """p + lr g for p = -1, g = 1 + 2^-k, lr = 1 - 2^-k (an ascending step) is exactly
    -2^-2k rounded once, and 0 when lr g is rounded first: the bits tell which arithmetic
    ran, without torch."""
    from gpugrad.kernels import host_blas, reference
    if not blas:
        _without_host_blas(monkeypatch)
    n = size if size != "large" else 2 * reference.UPDATE_BLOCK + 5
    k = 13 if dtype == np.float32 else 28
    param = np.full(n, -1.0, dtype)
    grad = np.full(n, 1 + 2.0 ** -k, dtype)
    reference.sgd_update(param, grad, None, 1 - 2.0 ** -k, 0.0, 0.0, 0.0, False, False,
                         maximize=True)
    once = blas and host_blas.available(dtype)
    expected = -(2.0 ** (-2 * k)) if once else 0.0
    assert np.all(param == dtype(expected))
