"""Mixed precision: gg.bfloat16, autocast's casting rules and numerics, GradScaler."""
import numpy as np
import pytest

import gpugrad as gg
from gpugrad.nn import functional as F

bf16 = gg.bfloat16


def _host(arr):
    return np.array(arr.get() if hasattr(arr, "get") else arr)


def _round(a, dtype):
    return np.asarray(a, np.float32).astype(dtype)


def test_bfloat16_is_a_dtype_tensors_can_hold_and_differentiate():
    x = gg.tensor([1.0, 2.0, 3.0], dtype=gg.bfloat16, requires_grad=True)
    assert x.dtype == gg.bfloat16 and str(x.dtype) == "bfloat16"
    (x * x).sum().backward()
    assert x.grad.dtype == gg.bfloat16
    assert x.grad.numpy().astype(np.float32).tolist() == [2.0, 4.0, 6.0]


@pytest.mark.parametrize("low", [gg.bfloat16, gg.float16], ids=["bf16", "fp16"])
def test_autocast_matmul_rounds_like_a_low_precision_gemm_with_float32_accumulation(low):
    gg.manual_seed(1)
    a, b = gg.randn(5, 64), gg.randn(64, 3)
    with gg.autocast(dtype=low):
        y = a @ b
    assert y.dtype == low
    expected = (_round(a.numpy(), low).astype(np.float32)
                @ _round(b.numpy(), low).astype(np.float32)).astype(low)
    assert np.array_equal(y.numpy().view(np.uint16), expected.view(np.uint16))
    assert (a @ b).dtype == np.float32          # outside the region: float32 again


def test_parameters_and_their_gradients_stay_float32_under_autocast():
    gg.manual_seed(2)
    model = gg.nn.MLP([6, 16, 4])
    x, y = gg.randn(8, 6), gg.tensor(np.arange(8) % 4)
    with gg.autocast(dtype=gg.bfloat16):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
    assert logits.dtype == gg.bfloat16 and loss.dtype == np.float32
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(p.dtype == np.float32 for p in model.parameters())
    assert all(g.dtype == np.float32 for g in grads)
    # close to the float32 gradients, to bfloat16's precision
    model.zero_grad()
    F.cross_entropy(model(x), y).backward()
    for g, p in zip(grads, model.parameters()):
        assert np.allclose(g.numpy(), p.grad.numpy(), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("name", ["softmax", "log_softmax", "sum", "mean", "logsumexp",
                                  "cross_entropy", "norm", "var", "std", "layer_norm"])
def test_softmax_losses_and_reductions_run_in_float32_under_autocast(name):
    gg.manual_seed(3)
    x = gg.randn(4, 5).to(gg.bfloat16)
    fns = {"softmax": lambda t: gg.softmax(t, -1), "log_softmax": lambda t: gg.log_softmax(t, -1),
           "sum": gg.sum, "mean": gg.mean, "logsumexp": lambda t: gg.logsumexp(t, -1),
           "cross_entropy": lambda t: F.cross_entropy(t, gg.tensor([0, 1, 2, 3])),
           "norm": lambda t: t.norm(), "var": lambda t: t.var(-1), "std": lambda t: t.std(0),
           "layer_norm": lambda t: F.layer_norm(t, (5,))}
    with gg.autocast(dtype=gg.bfloat16):
        out = fns[name](x)
    assert out.dtype == np.float32
    expected = fns[name](x.to(np.float32))
    assert np.allclose(out.numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
    assert fns[name](x).dtype == gg.bfloat16     # without autocast the dtype is kept


def test_autocast_disabled_inside_and_as_decorator():
    a = gg.randn(2, 3)
    with gg.autocast(dtype=gg.bfloat16):
        with gg.autocast(dtype=gg.bfloat16, enabled=False):
            assert (a @ a.T).dtype == np.float32
        assert (a @ a.T).dtype == gg.bfloat16

    @gg.autocast(dtype=gg.float16)
    def f(t):
        return t @ t.T
    assert f(a).dtype == np.float16 and (a @ a.T).dtype == np.float32


def test_autocast_leaves_float64_alone_and_refuses_other_dtypes():
    a = gg.randn(2, 3, dtype=np.float64)
    with gg.autocast(dtype=gg.bfloat16):
        assert (a @ a.T).dtype == np.float64
    with pytest.raises(ValueError, match="bfloat16 or gg.float16"):
        gg.autocast(dtype=gg.float32)


def _train_curve(amp, steps=200, sizes=(32, 64, 64, 10), batch=64):
    """Losses of SGD on a noisy teacher task, a fresh batch each step (no memorising)."""
    gg.manual_seed(0)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((batch * steps, sizes[0])).astype(np.float32)
    Y = (X @ rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)).argmax(1)
    flip = rng.random(len(Y)) < 0.3
    Y[flip] = rng.integers(0, sizes[-1], flip.sum())
    model = gg.nn.MLP(list(sizes))
    opt = gg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for s in range(steps):
        x, y = gg.tensor(X[s * batch:(s + 1) * batch]), gg.tensor(Y[s * batch:(s + 1) * batch])
        with gg.autocast(dtype=amp or gg.bfloat16, enabled=amp is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses)


def test_bf16_loss_curve_over_200_steps_within_2_percent_of_float32():
    reference = _train_curve(None)
    curve = _train_curve(gg.bfloat16)
    assert reference[-20:].mean() < 0.85 * reference[:5].mean()     # it does learn
    assert not np.array_equal(curve, reference)                     # and bf16 really ran
    worst = np.max(np.abs(curve - reference) / reference)
    assert worst <= 0.02, f"bf16 loss differs by {worst:.2%} at worst"


# -- GradScaler -----------------------------------------------------------------------
def _model_and_opt(opt_cls=gg.optim.SGD, **kw):
    gg.manual_seed(4)
    model = gg.nn.Linear(3, 2)
    return model, opt_cls(model.parameters(), lr=0.1, **kw)


def test_scaled_step_equals_the_unscaled_step():
    x = gg.randn(4, 3)
    model, opt = _model_and_opt()
    scaler = gg.amp.GradScaler(init_scale=1024.0)
    scaler.scale(model(x).sum()).backward()
    assert np.allclose(model.weight.grad.numpy(), 1024 * np.tile(x.numpy().sum(0), (2, 1)),
                       rtol=1e-5)
    scaler.step(opt)
    scaler.update()
    reference, ref_opt = _model_and_opt()
    reference(x).sum().backward()
    ref_opt.step()
    assert np.allclose(model.weight.numpy(), reference.weight.numpy(), rtol=1e-6)
    assert scaler.get_scale() == 1024.0


@pytest.mark.filterwarnings("ignore:invalid value encountered")   # the update the skip undoes
@pytest.mark.parametrize("device_side", [False, True], ids=["host-flag", "device-restore"])
@pytest.mark.parametrize("opt_cls", [gg.optim.SGD, gg.optim.Adam])
def test_a_step_with_inf_gradients_is_skipped_and_the_scale_backs_off(device_side, opt_cls):
    kw = {"momentum": 0.9} if opt_cls is gg.optim.SGD else {}
    model, opt = _model_and_opt(opt_cls, **kw)
    scaler = gg.amp.GradScaler(init_scale=8.0)
    scaler._device_side_on_cpu = device_side
    x = gg.randn(4, 3)
    scaler.scale(model(x).sum()).backward()     # one clean step: state buffers exist
    scaler.step(opt)
    scaler.update()
    before = [p.numpy().copy() for p in model.parameters()]
    state = [{k: _host(v) for k, v in opt.state[p].items() if hasattr(v, "shape")}
             for p in model.parameters()]
    opt.zero_grad()
    bad = gg.tensor([[np.inf, 1.0, 1.0]] * 4)
    scaler.scale(model(bad).sum()).backward()
    scaler.step(opt)
    scaler.update()
    for b, p in zip(before, model.parameters()):
        assert np.array_equal(b, p.numpy())
    for saved, s in zip(state, [opt.state[p] for p in model.parameters()]):
        for k, v in saved.items():
            assert np.array_equal(v, _host(s[k])), k
    assert scaler.get_scale() == 4.0


def test_the_scale_grows_after_growth_interval_clean_steps():
    model, opt = _model_and_opt()
    scaler = gg.amp.GradScaler(init_scale=2.0, growth_factor=3.0, growth_interval=3)
    scales = []
    for _ in range(7):
        opt.zero_grad()
        scaler.scale(model(gg.randn(2, 3)).sum()).backward()
        scaler.step(opt)
        scaler.update()
        scales.append(scaler.get_scale())
    assert scales == [2.0, 2.0, 6.0, 6.0, 6.0, 18.0, 18.0]
    state = scaler.state_dict()
    assert state == {"scale": 18.0, "growth_factor": 3.0, "backoff_factor": 0.5,
                     "growth_interval": 3, "_growth_tracker": 1}
    other = gg.amp.GradScaler()
    other.load_state_dict(state)
    assert other.get_scale() == 18.0 and other.state_dict() == state


@pytest.mark.filterwarnings("ignore:invalid value encountered")   # the inf/NaN steps
def test_gradscaler_matches_torch_on_a_sequence_with_overflows():
    torch = pytest.importorskip("torch")
    steps = [1.0, np.inf, 1.0, 1.0, np.nan, 1.0, 1.0, 1.0]
    ours = gg.amp.GradScaler(init_scale=16.0, growth_interval=2)
    theirs = torch.amp.GradScaler("cpu", init_scale=16.0, growth_interval=2)
    model, opt = _model_and_opt()
    tw = torch.nn.Parameter(torch.tensor(model.weight.numpy()))
    topt = torch.optim.SGD([tw], lr=0.1)
    for v in steps:
        opt.zero_grad()
        topt.zero_grad()
        x = np.full((1, 3), v, np.float32)
        ours.scale((gg.tensor(x) @ model.weight.T).sum()).backward()
        theirs.scale((torch.tensor(x) @ tw.T).sum()).backward()
        ours.step(opt)
        theirs.step(topt)
        ours.update()
        theirs.update()
        assert ours.get_scale() == theirs.get_scale()
        assert np.allclose(model.weight.numpy(), tw.detach().numpy(), rtol=1e-6)


def test_gradscaler_misuse_is_reported():
    model, opt = _model_and_opt()
    scaler = gg.amp.GradScaler()
    scaler.scale(model(gg.randn(2, 3)).sum()).backward()
    scaler.unscale_(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.unscale_(opt)
    scaler.step(opt)
    with pytest.raises(RuntimeError, match="already been called"):
        scaler.step(opt)
    with pytest.raises(ValueError, match="growth_factor"):
        gg.amp.GradScaler(growth_factor=1.0)
    with pytest.raises(TypeError, match="Tensor"):
        scaler.scale(3.0)


@pytest.mark.parametrize("mode", ["bf16", "fp16"])
def test_train_with_amp_learns(mode):
    from gpugrad.training import train
    summary = train(hidden=(32,), epochs=2, batch_size=256, amp=mode, device="cpu",
                    progress=False, log=lambda msg: None)
    assert summary["amp"] == mode and summary["test_accuracy"] > 0.7
    with pytest.raises(ValueError, match="amp mode"):
        train(amp="int8", progress=False, log=lambda msg: None)


def test_cli_train_amp_flag():
    from gpugrad.cli import build_parser
    args = build_parser().parse_args(["train", "--amp", "bf16"])
    assert args.amp == "bf16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--amp", "fp8"])


def _bf16_steps(compiled, steps=3):
    gg.manual_seed(6)
    model = gg.nn.MLP([5, 16, 3])
    opt = gg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    x, y = gg.randn(8, 5), gg.tensor(np.arange(8) % 3)

    def step(x, y):
        opt.zero_grad()
        with gg.autocast(dtype=gg.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    run = gg.compile(step) if compiled else step
    losses = [run(x, y).item() for _ in range(steps)]
    return losses, [p.numpy() for p in model.parameters()]


def test_a_compiled_bf16_step_replays_the_eager_one():
    eager, compiled = _bf16_steps(False), _bf16_steps(True)
    assert eager[0] == compiled[0]
    for a, b in zip(eager[1], compiled[1]):
        assert np.array_equal(a, b)


def test_a_gradscaler_inside_a_compiled_step_is_refused():
    model, opt = _model_and_opt()
    scaler = gg.amp.GradScaler()

    @gg.compile
    def step(x):
        opt.zero_grad()
        scaler.scale(model(x).sum()).backward()
        scaler.step(opt)
        scaler.update()
    with pytest.raises(RuntimeError, match="GradScaler.scale while gg.compile records"):
        step(gg.randn(2, 3))
    from gpugrad.training import train
    with pytest.raises(ValueError, match="fp16.*GradScaler"):
        train(amp="fp16", compiled=True, progress=False, log=lambda msg: None)
