"""nn modules, Module's PyTorch methods, nn.init and nn.utils; against torch where installed."""
import math

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F
from gpugrad import nn


def _torch():
    return pytest.importorskip("torch")


# -- Module methods ------------------------------------------------------------------------------
class _WithBuffer(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(3, 2)
        self.register_buffer("scale", gg.ones(2) * 2)
        self.register_buffer("scratch", gg.zeros(2), persistent=False)

    def forward(self, x):
        return self.lin(x) * self.scale


def test_buffers_are_saved_loaded_and_moved_but_not_trained():
    m = _WithBuffer()
    assert list(m.state_dict()) == ["scale", "lin.weight", "lin.bias"]     # as PyTorch
    assert [n for n, _ in m.named_buffers()] == ["scale", "scratch"]
    assert [n for n, _ in m.named_parameters()] == ["lin.weight", "lin.bias"]
    other = _WithBuffer()
    state = m.state_dict()
    state["scale"] = gg.tensor([3.0, 4.0])
    result = other.load_state_dict(state)
    assert result.missing_keys == [] and result.unexpected_keys == []
    assert other.scale.tolist() == [3.0, 4.0]
    weight = m.lin.weight
    m.to("cpu:1")
    assert m.lin.weight is weight and weight.device == "cpu:1" and m.scale.device == "cpu:1"
    assert m.scratch.device == "cpu:1"
    out = m(gg.ones(1, 3, device="cpu:1"))
    out.sum().backward()
    assert weight.grad.device == "cpu:1"
    m.double()
    assert m.lin.weight.dtype == gg.float64 and m.scale.dtype == gg.float64


def test_load_state_dict_returns_missing_and_unexpected_keys_and_names_shape_mismatches():
    a, b = nn.MLP([3, 4, 2]), nn.MLP([3, 4, 2])
    state = a.state_dict()
    del state["2.bias"]
    state["extra"] = gg.zeros(1)
    with pytest.raises(RuntimeError, match=r'(?s)Unexpected key\(s\).*"extra".*Missing key\(s\).*'
                                           r'"2.bias"'):
        b.load_state_dict(state)
    before = b.state_dict()["0.weight"].numpy().copy()
    result = b.load_state_dict(state, strict=False)
    assert result == (["2.bias"], ["extra"])
    assert result.missing_keys == ["2.bias"] and result.unexpected_keys == ["extra"]
    assert not np.array_equal(before, b.state_dict()["0.weight"].numpy())
    bad = a.state_dict()
    bad["0.weight"] = gg.zeros(5, 5)
    kept = b.state_dict()["0.bias"].numpy().copy()
    with pytest.raises(RuntimeError, match=r"size mismatch for 0.weight.*\(5, 5\).*\(4, 3\)"):
        b.load_state_dict(bad, strict=False)
    np.testing.assert_array_equal(b.state_dict()["0.bias"].numpy(), kept)   # nothing copied


def test_apply_named_modules_requires_grad_and_zero_grad():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    assert [n for n, _ in model.named_modules()] == ["", "0", "1"]     # the shared one once
    visited = []
    model.apply(lambda m: visited.append(type(m).__name__))
    assert visited == ["Linear", "ReLU", "Sequential"]
    model.apply(lambda m: nn.init.zeros_(m.bias) if isinstance(m, nn.Linear) else None)
    assert shared.bias.tolist() == [0.0, 0.0]
    model.requires_grad_(False)
    assert not any(p.requires_grad for p in model.parameters())
    model.requires_grad_()
    model(gg.ones(1, 2)).sum().backward()
    grad = shared.weight.grad
    model.zero_grad(set_to_none=False)
    assert shared.weight.grad is grad and not grad.numpy().any()
    model.zero_grad()
    assert shared.weight.grad is None


def test_module_list_and_dict_register_their_modules():
    layers = nn.ModuleList([nn.Linear(2, 3), nn.Linear(3, 1)])
    layers.append(nn.ReLU())
    assert len(layers) == 3 and isinstance(layers[-1], nn.ReLU)
    assert [n for n, _ in layers.named_parameters()] == ["0.weight", "0.bias", "1.weight",
                                                         "1.bias"]
    heads = nn.ModuleDict({"a": nn.Linear(2, 2), "b": nn.Identity()})
    heads["c"] = nn.Flatten()
    assert list(heads.keys()) == ["a", "b", "c"] and "a" in heads
    assert [n for n, _ in heads.named_parameters()] == ["a.weight", "a.bias"]
    assert nn.Flatten()(gg.ones(2, 3, 4)).shape == (2, 12)
    assert nn.Flatten(0, 1)(gg.ones(2, 3, 4)).shape == (6, 4)
    x = gg.ones(3)
    assert nn.Identity(7, key=1)(x) is x


# -- modules against torch ------------------------------------------------------------------------
ACTIVATION_MODULES = [
    ("SiLU", {}), ("LeakyReLU", {"negative_slope": 0.2}), ("ELU", {"alpha": 0.7}),
    ("SELU", {}), ("CELU", {"alpha": 1.3}), ("Softplus", {"beta": 2.0, "threshold": 3.0}),
    ("Mish", {}), ("Softsign", {}), ("Hardtanh", {"min_val": -0.5, "max_val": 2.0}),
    ("ReLU6", {}), ("Hardswish", {}), ("Hardsigmoid", {}), ("LogSigmoid", {}),
    ("GELU", {"approximate": "tanh"}), ("Softmax", {"dim": 0}), ("LogSoftmax", {"dim": 1}),
    ("ReLU", {}), ("Tanh", {}), ("Sigmoid", {}),
]


@pytest.mark.parametrize("name,kwargs", ACTIVATION_MODULES, ids=lambda v: str(v))
def test_activation_modules_match_torch(name, kwargs):
    torch = _torch()
    x = np.random.default_rng(0).uniform(-7, 7, size=(4, 5))
    ours = gg.tensor(x, dtype=gg.float64, requires_grad=True)
    theirs = torch.tensor(x, requires_grad=True)
    out = getattr(nn, name)(**kwargs)(ours)
    tout = getattr(torch.nn, name)(**kwargs)(theirs)
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = np.random.default_rng(1).uniform(size=x.shape)
    (out * gg.tensor(w)).sum().backward()
    (tout * torch.tensor(w)).sum().backward()
    # torch's CELU and Hardsigmoid kernels round 1/alpha and 1/6 to float32 even in float64
    rtol = 1e-6 if name in ("CELU", "Hardsigmoid", "Hardswish") else 1e-9
    np.testing.assert_allclose(ours.grad.numpy(), theirs.grad.numpy(), rtol=rtol, atol=1e-12)


def test_mlp_with_parameterised_activation_fuses_with_its_parameter():
    gg.manual_seed(0)
    model = nn.MLP([3, 4, 2], activation="leaky_relu")
    model[1].activation_params = (0.5,)         # a slope away from the default
    x = gg.randn(6, 3)
    w0, b0, w1, b1 = model.parameters()
    h = x @ w0.T + b0
    expected = gg.where(h > 0, h, h * 0.5) @ w1.T + b1
    np.testing.assert_allclose(model(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-7)


def test_layer_norm_module_matches_torch_and_its_options():
    torch = _torch()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 3, 4)) * 3 + 1
    for kwargs in ({}, {"elementwise_affine": False}, {"bias": False}, {"eps": 1e-2}):
        for shape in (4, (3, 4)):
            ours, theirs = nn.LayerNorm(shape, **kwargs).double(), \
                torch.nn.LayerNorm(shape, **kwargs).double()
            if ours.weight is not None:
                w = rng.uniform(0.5, 1.5, size=ours.weight.shape)
                ours.weight.data = gg.tensor(w)
                with torch.no_grad():
                    theirs.weight.copy_(torch.tensor(w))
            xg = gg.tensor(x, requires_grad=True)
            xt = torch.tensor(x, requires_grad=True)
            out, tout = ours(xg), theirs(xt)
            np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10,
                                       atol=1e-12)
            (out * out).sum().backward()
            (tout * tout).sum().backward()
            np.testing.assert_allclose(xg.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-10)
            assert [n for n, _ in ours.named_parameters()] == \
                [n for n, _ in theirs.named_parameters()]
    with pytest.raises(ValueError, match=r"normalized_shape \(5,\).*\(2, 3, 4\)"):
        nn.LayerNorm(5)(gg.ones(2, 3, 4))


def test_layer_norm_third_derivative_matches_central_differences():
    """(torch's third derivative of layer_norm is off; ours must agree with differences)"""
    rng = np.random.default_rng(3)
    x = gg.tensor(rng.standard_normal((2, 5)), dtype=gg.float64, requires_grad=True)
    w = gg.tensor(rng.uniform(0.5, 1.5, 5), dtype=gg.float64, requires_grad=True)
    b = gg.tensor(rng.standard_normal(5), dtype=gg.float64, requires_grad=True)
    u = gg.tensor(rng.standard_normal((2, 5)), dtype=gg.float64)
    v = gg.tensor(rng.standard_normal((2, 5)), dtype=gg.float64)

    def hessian_vector(x, w, b):
        out = F.layer_norm(x, (5,), w, b)
        gx, gw = gg.autograd.grad((out * u).sum(), [x, w], create_graph=True)
        return gg.autograd.grad((gx * v).sum() + gw.sum(), [x, w], create_graph=True)
    assert gg.gradcheck(hessian_vector, [x, w, b], atol=1e-4)


@pytest.mark.parametrize("momentum", [0.1, None])
@pytest.mark.parametrize("shape", [(8, 3), (4, 3, 5)])
def test_batchnorm1d_matches_torch_in_train_and_eval(momentum, shape):
    torch = _torch()
    rng = np.random.default_rng(0)
    ours = nn.BatchNorm1d(3, momentum=momentum).double()
    theirs = torch.nn.BatchNorm1d(3, momentum=momentum).double()
    for step in range(3):
        x = rng.standard_normal(shape) * 2 + step
        xg, xt = gg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
        out, tout = ours(xg), theirs(xt)
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-9, atol=1e-12)
        (out * out * out).sum().backward()
        (tout * tout * tout).sum().backward()
        np.testing.assert_allclose(xg.grad.numpy(), xt.grad.numpy(), rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                                   rtol=1e-8)
    for key, value in theirs.state_dict().items():
        np.testing.assert_allclose(ours.state_dict()[key].numpy(), value.numpy(), rtol=1e-12,
                                   err_msg=key)
    ours.eval()
    theirs.eval()
    x = rng.standard_normal(shape)
    np.testing.assert_allclose(ours(gg.tensor(x)).numpy(),
                               theirs(torch.tensor(x)).detach().numpy(), rtol=1e-10)
    with pytest.raises(ValueError, match=r"BatchNorm1d\(3\).*\(2, 4\)"):
        ours(gg.ones(2, 4))


def test_batchnorm1d_running_statistics_by_hand():
    bn = nn.BatchNorm1d(2, momentum=0.5)
    x = np.array([[1.0, 2.0], [3.0, 6.0]])
    bn(gg.tensor(x))
    np.testing.assert_allclose(bn.running_mean.numpy(), 0.5 * x.mean(0), rtol=1e-6)
    np.testing.assert_allclose(bn.running_var.numpy(), 0.5 + 0.5 * x.var(0, ddof=1), rtol=1e-6)
    assert int(bn.num_batches_tracked.item()) == 1
    assert "num_batches_tracked" in bn.state_dict()


def test_embedding_matches_torch_with_padding_and_max_norm():
    torch = _torch()
    rng = np.random.default_rng(0)
    table = rng.standard_normal((6, 3)) * 2
    idx = np.array([[0, 2, 2], [5, 1, 2]])
    for kwargs in ({}, {"padding_idx": 2}, {"max_norm": 1.5}):
        ours = nn.Embedding(6, 3, **kwargs).double()
        theirs = torch.nn.Embedding(6, 3, **kwargs).double()
        ours.weight.data = gg.tensor(table.copy())
        with torch.no_grad():
            theirs.weight.copy_(torch.tensor(table))
        out, tout = ours(gg.tensor(idx)), theirs(torch.tensor(idx))
        np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-7)
        (out * out).sum().backward()
        (tout * tout).sum().backward()
        np.testing.assert_allclose(ours.weight.grad.numpy(), theirs.weight.grad.numpy(),
                                   rtol=1e-7)
        np.testing.assert_allclose(ours.weight.numpy(), theirs.weight.detach().numpy(),
                                   rtol=1e-7)
    assert not nn.Embedding(4, 2, padding_idx=1).weight.numpy()[1].any()
    with pytest.raises(IndexError, match="index 6 is out of range for 6"):
        ours(gg.tensor([6]))


LOSSES = [
    ("CrossEntropyLoss", {"label_smoothing": 0.1}, "classes"),
    ("NLLLoss", {"ignore_index": 0}, "classes"),
    ("MSELoss", {"reduction": "sum"}, "same"),
    ("L1Loss", {}, "same"),
    ("SmoothL1Loss", {"beta": 0.7}, "same"),
    ("HuberLoss", {"delta": 0.6, "reduction": "none"}, "same"),
    ("BCELoss", {}, "probs"),
    ("BCEWithLogitsLoss", {"reduction": "sum"}, "probs_logits"),
    ("KLDivLoss", {"reduction": "batchmean"}, "log_probs"),
]


@pytest.mark.parametrize("name,kwargs,kind", LOSSES, ids=lambda v: str(v))
def test_loss_modules_match_torch(name, kwargs, kind):
    torch = _torch()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3))
    if kind == "classes":
        target = rng.integers(0, 3, size=4)
        target[0] = 1
    else:
        target = rng.uniform(0.1, 0.9, size=(4, 3))
    if kind == "probs":
        x = 1 / (1 + np.exp(-x))
    if kind == "log_probs":
        x = x - np.log(np.exp(x).sum(1, keepdims=True))
        target = target / target.sum(1, keepdims=True)
    xg, xt = gg.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    out = getattr(nn, name)(**kwargs)(xg, gg.tensor(target))
    tout = getattr(torch.nn, name)(**kwargs)(xt, torch.tensor(target))
    np.testing.assert_allclose(out.numpy(), tout.detach().numpy(), rtol=1e-10, atol=1e-12)
    out.sum().backward()
    tout.sum().backward()
    np.testing.assert_allclose(xg.grad.numpy(), xt.grad.numpy(), rtol=1e-9, atol=1e-12)


def test_loss_errors_name_the_problem():
    with pytest.raises(ValueError, match=r"l1_loss.*\(2, 3\).*\(3,\)"):
        F.l1_loss(gg.ones(2, 3), gg.ones(3))
    with pytest.raises(ValueError, match="between 0 and 1"):
        F.binary_cross_entropy(gg.tensor([0.5, 1.5]), gg.tensor([0.0, 1.0]))
    with pytest.raises(IndexError, match="target 3 is out of range for 3 classes"):
        F.nll_loss(gg.zeros(2, 3), gg.tensor([0, 3]))
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        F.huber_loss(gg.ones(2), gg.ones(2), reduction="avg")
    assert float(F.nll_loss(gg.zeros(2, 3), gg.tensor([0, -100]))) == 0.0


def test_cross_entropy_with_ignored_labels_stays_on_the_fused_path():
    """An ignored label (PyTorch's default -100) counts neither in the sum nor the mean."""
    logits = gg.tensor([[1.0, 2.0, 0.5], [0.3, 0.1, 2.0]], requires_grad=True)
    loss = F.cross_entropy(logits, gg.tensor([1, -100]))
    expected = -F.log_softmax(logits, -1)[0, 1]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert not logits.grad.numpy()[1].any()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("ignore_index", [-100, -1, 7])
def test_cross_entropy_ignore_index_fused_equals_the_general_path(reduction, ignore_index):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(6, 5)) * 2
    labels = gg.tensor([ignore_index, 3, 0, ignore_index, 4, 1])
    fused_in = gg.tensor(x, dtype=gg.float64, requires_grad=True)
    general_in = gg.tensor(x, dtype=gg.float64, requires_grad=True)
    with gg.profiler.profile() as prof:
        fused = F.cross_entropy(fused_in, labels, ignore_index=ignore_index,
                                reduction=reduction)
        fused.sum().backward()
    names = {e.name for e in prof.events}
    if reduction != "none":
        assert {"softmax_xent", "softmax_xent_grad"} <= names
    assert "log_softmax" not in names or reduction == "none"
    general = F.nll_loss(F.log_softmax(general_in, 1), labels, ignore_index=ignore_index,
                         reduction=reduction)
    general.sum().backward()
    np.testing.assert_allclose(fused.numpy(), general.numpy(), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(fused_in.grad.numpy(), general_in.grad.numpy(), rtol=1e-12,
                               atol=1e-15)
    assert not fused_in.grad.numpy()[[0, 3]].any()


def test_cross_entropy_mean_over_no_kept_row_is_nan():
    x = gg.randn(3, 4, dtype=gg.float64, requires_grad=True)
    loss = F.cross_entropy(x, gg.tensor([-100, -100, -100]))
    assert np.isnan(loss.item())
    loss.backward()
    assert not x.grad.numpy().any()
    assert F.cross_entropy(x, gg.tensor([-100] * 3), reduction="sum").item() == 0.0


def test_cross_entropy_ignore_index_inside_the_classes_takes_the_general_path():
    x = gg.tensor(np.random.default_rng(2).normal(size=(4, 3)), requires_grad=True)
    labels = gg.tensor([0, 1, 2, 1])
    with gg.profiler.profile() as prof:
        loss = F.cross_entropy(x, labels, ignore_index=1)
    assert "softmax_xent" not in {e.name for e in prof.events}
    logp = F.log_softmax(x, 1).numpy()
    assert loss.item() == pytest.approx(-(logp[0, 0] + logp[2, 2]) / 2, rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gradcheck_through_the_fused_cross_entropy_with_an_ignored_row(reduction):
    rng = np.random.default_rng(4)
    labels = gg.tensor([2, -100, 0, 1])
    x = gg.tensor(rng.normal(size=(4, 3)), dtype=gg.float64, requires_grad=True)
    assert gg.gradcheck(lambda x: F.cross_entropy(x, labels, reduction=reduction), (x,))
    # and through the fused backward (second order, and its gradient in g)
    g = gg.tensor(0.7, dtype=gg.float64, requires_grad=True)
    assert gg.gradcheck(
        lambda x, g: gg.ops.softmax_xent_grad(x, labels, g, reduction == "mean"), (x, g))


# -- init and utils ------------------------------------------------------------------------------
def test_init_bounds_and_statistics_follow_pytorchs_gains():
    gg.manual_seed(0)
    w = nn.Parameter(gg.zeros(400, 300))
    out = nn.init.kaiming_uniform_(w, a=math.sqrt(5))
    assert out is w
    bound = math.sqrt(6 / ((1 + 5) * 300))       # PyTorch's Linear default
    assert w.numpy().max() <= bound and w.numpy().max() > 0.99 * bound
    nn.init.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 400), rel=0.02)
    nn.init.xavier_uniform_(w, gain=nn.init.calculate_gain("tanh"))
    bound = 5 / 3 * math.sqrt(6 / 700)
    assert w.numpy().max() <= bound and w.numpy().max() > 0.99 * bound
    nn.init.xavier_normal_(w)
    assert w.numpy().std() == pytest.approx(math.sqrt(2 / 700), rel=0.02)
    nn.init.normal_(w, 3.0, 0.5)
    assert w.numpy().mean() == pytest.approx(3.0, abs=0.01)
    nn.init.uniform_(w, -2.0, -1.0)
    assert -2.0 <= w.numpy().min() and w.numpy().max() < -1.0
    nn.init.constant_(w, 0.25)
    assert set(np.unique(w.numpy())) == {0.25}
    assert w.requires_grad and w.is_leaf and w.grad is None
    gg.manual_seed(5)
    a = nn.init.normal_(gg.zeros(3)).numpy()
    gg.manual_seed(5)
    np.testing.assert_array_equal(a, nn.init.normal_(gg.zeros(3)).numpy())
    assert nn.init.calculate_gain("leaky_relu", 0.2) == pytest.approx(math.sqrt(2 / 1.04))
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        nn.init.xavier_uniform_(gg.zeros(3))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        nn.init.kaiming_uniform_(w, mode="fan_avg")


def test_init_writes_bump_the_version_of_saved_tensors():
    w = nn.Parameter(gg.ones(3))
    y = (w * w).sum()
    nn.init.zeros_(w)
    with pytest.raises(RuntimeError, match="'mul'"):
        y.backward()


@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, math.inf])
def test_clip_grad_norm_matches_torch(norm_type):
    torch = _torch()
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal((3, 4)), rng.standard_normal(5)]
    ours = [nn.Parameter(gg.zeros(g.shape, dtype=gg.float64)) for g in grads]
    theirs = [torch.zeros(g.shape, dtype=torch.float64, requires_grad=True) for g in grads]
    for p, tp, g in zip(ours, theirs, grads):
        p.grad = gg.tensor(g)
        tp.grad = torch.tensor(g)
    total = nn.utils.clip_grad_norm_(ours, 1.5, norm_type)
    ttotal = torch.nn.utils.clip_grad_norm_(theirs, 1.5, norm_type)
    assert total.item() == pytest.approx(ttotal.item(), rel=1e-12)
    for p, tp in zip(ours, theirs):
        np.testing.assert_allclose(p.grad.numpy(), tp.grad.numpy(), rtol=1e-12)


def test_clip_grad_norm_by_hand_and_clip_grad_value():
    p = nn.Parameter(gg.zeros(2))
    p.grad = gg.tensor([3.0, 4.0])
    total = nn.utils.clip_grad_norm_([p], max_norm=1.0)
    assert total.item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8], rtol=1e-5)
    p.grad = gg.tensor([0.3, 0.4])
    nn.utils.clip_grad_norm_(p, max_norm=1.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.3, 0.4], rtol=1e-6)   # under the limit
    p.grad = gg.tensor([-3.0, 0.5])
    nn.utils.clip_grad_value_([p], 1.0)
    assert p.grad.tolist() == [-1.0, 0.5]
    p.grad = gg.tensor([float("nan"), 1.0])
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_([p], 1.0, error_if_nonfinite=True)


def test_functional_softmax_takes_dim_as_pytorch():
    x = gg.tensor([[1.0, 2.0], [0.5, 3.0]])
    np.testing.assert_allclose(F.softmax(x, dim=0).numpy().sum(0), [1.0, 1.0], rtol=1e-6)
    np.testing.assert_allclose(np.exp(F.log_softmax(x, dim=1).numpy()).sum(1), [1.0, 1.0],
                               rtol=1e-6)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        np.testing.assert_allclose(F.softmax(x).numpy(), F.softmax(x, 1).numpy())
    assert F.softmax(x, 1, dtype=gg.float64).dtype == gg.float64
