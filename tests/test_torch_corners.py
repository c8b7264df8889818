"""The corners of PyTorch conformance: activations with ``inplace=True``, the in-place
selection ops, ``index_put``, the nuclear norm, softmax of a 0-d tensor, ``F.normalize`` of a
zero vector, and the habits a ported script relies on. Each is checked on its own and, where
torch is installed, against torch in float64 (those comparisons are skipped otherwise)."""
import math
import types

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn as nn
import gpugrad.nn.functional as F

try:
    import torch
    import torch.nn.functional as TF
except ImportError:          # torch is an optional cross-check
    torch = TF = None

needs_torch = pytest.mark.skipif(torch is None, reason="torch is not installed")


def _values(rng, shape):
    """Values away from the kinks of the activations (0, +-1, -3, 3, 6)."""
    x = rng.uniform(-4, 7, size=shape)
    for kink in (0.0, 1.0, -1.0, 3.0, -3.0, 6.0):
        x = np.where(np.abs(x - kink) < 0.1, kink + 0.3, x)
    return x


# -- activations with inplace=True ------------------------------------------------------------
# (name, gpugrad in-place call, gpugrad out-of-place call, torch in-place call)
_INPLACE = [
    ("relu", lambda t: F.relu(t, inplace=True), F.relu,
     lambda t: TF.relu(t, inplace=True)),
    ("relu_", F.relu_, F.relu, lambda t: TF.relu_(t)),
    ("Tensor.relu_", lambda t: t.relu_(), F.relu, lambda t: t.relu_()),
    ("Tensor.sigmoid_", lambda t: t.sigmoid_(), gg.sigmoid, lambda t: t.sigmoid_()),
    ("Tensor.tanh_", lambda t: t.tanh_(), gg.tanh, lambda t: t.tanh_()),
    ("leaky_relu", lambda t: F.leaky_relu(t, 0.2, inplace=True),
     lambda t: F.leaky_relu(t, 0.2), lambda t: TF.leaky_relu(t, 0.2, inplace=True)),
    ("leaky_relu_", lambda t: F.leaky_relu_(t, 0.2), lambda t: F.leaky_relu(t, 0.2),
     lambda t: TF.leaky_relu_(t, 0.2)),
    ("elu", lambda t: F.elu(t, 0.7, inplace=True), lambda t: F.elu(t, 0.7),
     lambda t: TF.elu(t, 0.7, inplace=True)),
    ("elu_", lambda t: F.elu_(t), F.elu, lambda t: TF.elu_(t)),
    ("selu", lambda t: F.selu(t, inplace=True), F.selu, lambda t: TF.selu(t, inplace=True)),
    ("selu_", F.selu_, F.selu, lambda t: TF.selu_(t)),
    ("celu", lambda t: F.celu(t, 1.5, inplace=True), lambda t: F.celu(t, 1.5),
     lambda t: TF.celu(t, 1.5, inplace=True)),
    ("celu_", lambda t: F.celu_(t, 1.5), lambda t: F.celu(t, 1.5),
     lambda t: TF.celu_(t, 1.5)),
    ("silu", lambda t: F.silu(t, inplace=True), F.silu, lambda t: TF.silu(t, inplace=True)),
    ("mish", lambda t: F.mish(t, inplace=True), F.mish, lambda t: TF.mish(t, inplace=True)),
    ("hardtanh", lambda t: F.hardtanh(t, -2.0, 2.5, inplace=True),
     lambda t: F.hardtanh(t, -2.0, 2.5), lambda t: TF.hardtanh(t, -2.0, 2.5, inplace=True)),
    ("hardtanh_", lambda t: F.hardtanh_(t), F.hardtanh, lambda t: TF.hardtanh_(t)),
    ("relu6", lambda t: F.relu6(t, inplace=True), F.relu6,
     lambda t: TF.relu6(t, inplace=True)),
    ("hardswish", lambda t: F.hardswish(t, inplace=True), F.hardswish,
     lambda t: TF.hardswish(t, inplace=True)),
    ("hardsigmoid", lambda t: F.hardsigmoid(t, inplace=True), F.hardsigmoid,
     lambda t: TF.hardsigmoid(t, inplace=True)),
    ("nn.ReLU", nn.ReLU(inplace=True), nn.ReLU(), lambda t: torch.nn.ReLU(inplace=True)(t)),
    ("nn.LeakyReLU", nn.LeakyReLU(0.3, inplace=True), nn.LeakyReLU(0.3),
     lambda t: torch.nn.LeakyReLU(0.3, inplace=True)(t)),
    ("nn.ELU", nn.ELU(inplace=True), nn.ELU(), lambda t: torch.nn.ELU(inplace=True)(t)),
    ("nn.SiLU", nn.SiLU(inplace=True), nn.SiLU(), lambda t: torch.nn.SiLU(inplace=True)(t)),
    ("nn.SELU", nn.SELU(inplace=True), nn.SELU(), lambda t: torch.nn.SELU(inplace=True)(t)),
    ("nn.CELU", nn.CELU(0.5, inplace=True), nn.CELU(0.5),
     lambda t: torch.nn.CELU(0.5, inplace=True)(t)),
    ("nn.Mish", nn.Mish(inplace=True), nn.Mish(), lambda t: torch.nn.Mish(inplace=True)(t)),
    ("nn.Hardtanh", nn.Hardtanh(-1.0, 2.0, inplace=True), nn.Hardtanh(-1.0, 2.0),
     lambda t: torch.nn.Hardtanh(-1.0, 2.0, inplace=True)(t)),
    ("nn.ReLU6", nn.ReLU6(inplace=True), nn.ReLU6(),
     lambda t: torch.nn.ReLU6(inplace=True)(t)),
    ("nn.Hardswish", nn.Hardswish(inplace=True), nn.Hardswish(),
     lambda t: torch.nn.Hardswish(inplace=True)(t)),
    ("nn.Hardsigmoid", nn.Hardsigmoid(inplace=True), nn.Hardsigmoid(),
     lambda t: torch.nn.Hardsigmoid(inplace=True)(t)),
]
INPLACE = [pytest.param(*row, id=row[0]) for row in _INPLACE]


@pytest.mark.parametrize("name,inplace,plain,torch_inplace", INPLACE)
def test_inplace_activation_writes_into_its_input(name, inplace, plain, torch_inplace):
    x = gg.tensor(_values(np.random.default_rng(0), (3, 4)))
    alias = x.view(12)
    version = x._ver[0]
    expected = plain(x.clone())
    out = inplace(x)
    assert out is x
    assert x._ver[0] > version
    np.testing.assert_allclose(x.numpy(), expected.numpy(), rtol=1e-6)
    np.testing.assert_array_equal(alias.numpy(), x.numpy().reshape(12))    # the same storage


@pytest.mark.parametrize("name,inplace,plain,torch_inplace", INPLACE)
def test_inplace_activation_on_a_leaf_that_requires_grad_is_refused(name, inplace, plain,
                                                                    torch_inplace):
    x = gg.tensor([1.0, -2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        inplace(x)
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        inplace(x[1:])
    assert x.tolist() == [1.0, -2.0]          # left as it was, the engine still usable
    with gg.no_grad():
        assert inplace(x) is x
    assert x.tolist() == plain(gg.tensor([1.0, -2.0])).tolist()


@pytest.mark.parametrize("name,inplace,plain,torch_inplace", INPLACE)
def test_inplace_activation_on_a_non_leaf_is_recorded(name, inplace, plain, torch_inplace):
    """Gradients through the in-place call equal those through the out-of-place one (and
    PyTorch's), for the input and for a second leaf that made it; first and second order."""
    rng = np.random.default_rng(1)
    a_np, w_np, u_np = _values(rng, (2, 5)), rng.uniform(0.5, 1.5, 5), rng.uniform(-1, 1, 5)

    def run(fn):
        a = gg.tensor(a_np, dtype=gg.float64, requires_grad=True)
        w = gg.tensor(w_np, dtype=gg.float64, requires_grad=True)
        h = a * w                          # a non-leaf
        before = (h + 1.0).sin()           # a use of h's value before the write
        out = fn(h)
        loss = (out * gg.tensor(u_np)).sum() + (before * out).sum()
        ga, gw = gg.autograd.grad(loss, (a, w), create_graph=True)
        (ga * ga).sum().backward()         # the gradient's own gradient
        return out, h, [t.numpy() for t in (ga, gw, a.grad, w.grad)]

    out, h, got = run(inplace)
    assert out is h
    _, _, expected = run(plain)
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=1e-10, atol=1e-12)
    if torch is None:
        return
    a = torch.tensor(a_np, requires_grad=True)
    w = torch.tensor(w_np, requires_grad=True)
    h = a * w
    before = (h + 1.0).sin()
    out = torch_inplace(h)
    loss = (out * torch.tensor(u_np)).sum() + (before * out).sum()
    ga, gw = torch.autograd.grad(loss, (a, w), create_graph=True)
    rtol = 1e-10
    if "ardsigmoid" in name:
        # torch has no second derivative of hardsigmoid, and its first uses 1/6 rounded to
        # float32 even in float64 (0.1666666716...)
        got, torch_grads, rtol = got[:2], (ga, gw), 1e-6
    else:
        (ga * ga).sum().backward()
        torch_grads = (ga, gw, a.grad, w.grad)
    for g, e in zip(got, torch_grads):
        np.testing.assert_allclose(g, e.detach().numpy(), rtol=rtol, atol=1e-12)


def test_inplace_activation_over_a_value_saved_for_backward_raises_naming_the_op():
    x = gg.tensor([1.0, -2.0], requires_grad=True)
    y = x.exp() - 3.0
    z = y * y                    # mul saves y
    F.relu(y, inplace=True)
    with pytest.raises(RuntimeError, match="'mul'.*modified in place"):
        z.sum().backward()
    y = x * 1.0
    r = y.relu_()
    r.tanh_()                    # relu saved its output, the tensor tanh_ overwrites
    if torch is not None:
        t = torch.tensor([1.0, -2.0], requires_grad=True) * 1.0
        t.relu_().tanh_()
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            t.sum().backward()
    # ours keeps relu's output apart from the tensor it was written into: still right
    r.sum().backward()
    assert x.grad.tolist() == pytest.approx([1 - np.tanh(1.0) ** 2, 0.0])


def test_inplace_activation_through_a_view_of_a_non_leaf():
    x = gg.tensor([[1.0, -2.0], [-3.0, 4.0]], dtype=gg.float64, requires_grad=True)
    y = x * 2.0
    F.relu(y[1], inplace=True)               # a row of y, through a view
    assert y.tolist() == [[2.0, -4.0], [0.0, 8.0]]
    y.sum().backward()
    assert x.grad.tolist() == [[2.0, 2.0], [0.0, 2.0]]


def test_inplace_relu_of_an_integer_tensor_keeps_its_dtype_and_sigmoid_refuses():
    x = gg.tensor([-1, 2])
    assert F.relu(x, inplace=True).tolist() == [0, 2] and x.dtype == gg.int64
    with pytest.raises(RuntimeError, match="can't be cast"):
        gg.tensor([1, 2]).sigmoid_()


def test_inplace_dropout():
    gg.manual_seed(3)
    x = gg.ones(1000)
    out = F.dropout(x, 0.25, inplace=True)
    assert out is x
    zeros = float((x == 0).sum().item())
    assert 150 < zeros < 350
    assert set(np.unique(x.numpy()).tolist()) <= {0.0, np.float32(1 / 0.75)}
    assert F.dropout(x, 0.5, training=False, inplace=True) is x
    assert F.dropout(x, 1.0, inplace=True) is x and x.sum().item() == 0.0
    a = gg.ones(8, dtype=gg.float64, requires_grad=True)
    h = a * 3.0
    m = nn.Dropout(0.5, inplace=True)
    assert m(h) is h
    h.sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), (h.detach().numpy() != 0) * 6.0)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        F.dropout(a, 0.5, inplace=True)


def test_activation_modules_show_inplace_as_pytorch():
    assert repr(nn.ReLU()) == "ReLU()" and repr(nn.ReLU(True)) == "ReLU(inplace=True)"
    assert repr(nn.LeakyReLU(0.1, True)) == "LeakyReLU(negative_slope=0.1, inplace=True)"
    assert repr(nn.Hardtanh(inplace=True)) == "Hardtanh(min_val=-1.0, max_val=1.0, inplace=True)"
    assert repr(nn.Dropout(0.2)) == "Dropout(p=0.2, inplace=False)"
    assert nn.ReLU6(inplace=True).inplace and not nn.SELU().inplace
    with pytest.raises(TypeError):
        nn.Tanh(inplace=True)              # as PyTorch: Tanh and Sigmoid take no inplace


# -- softmax of a 0-d tensor ----------------------------------------------------------------
@pytest.mark.parametrize("dim", [0, -1])
def test_softmax_and_log_softmax_of_a_0d_tensor_are_1_and_0(dim):
    x = gg.tensor(2.5, dtype=gg.float64, requires_grad=True)
    s, ls = gg.softmax(x, dim), F.log_softmax(x, dim=dim)
    assert s.shape == ls.shape == () and s.item() == 1.0 and ls.item() == 0.0
    assert x.softmax(dim).item() == 1.0 and nn.Softmax(dim)(x).item() == 1.0
    (s * 3 + ls).backward()
    assert x.grad.item() == 0.0
    assert gg.gradcheck(lambda t: gg.softmax(t, dim) * 2 + gg.log_softmax(t, dim), [x])
    with pytest.raises(IndexError, match=r"range of \[-1, 0\], but got 1"):
        gg.softmax(x, 1)
    if torch is not None:
        t = torch.tensor(2.5, dtype=torch.float64)
        assert torch.softmax(t, dim).item() == s.item()
        assert torch.log_softmax(t, dim).item() == ls.item()


# -- F.normalize of a zero vector -----------------------------------------------------------
@pytest.mark.parametrize("p", [2.0, 1.0, 3.0, float("inf")])
def test_normalize_of_a_zero_vector_has_a_finite_gradient(p):
    x_np = np.array([[0.0, 0.0, 0.0], [3.0, -4.0, 1.0]])
    u_np = np.array([[0.3, -0.2, 0.5], [0.1, 0.7, -0.4]])
    x = gg.tensor(x_np, requires_grad=True)
    out = F.normalize(x, p)
    assert out.numpy()[0].tolist() == [0.0, 0.0, 0.0]
    (out * gg.tensor(u_np)).sum().backward()
    grad = x.grad.numpy()
    # the zero row: x / eps, so its gradient is u / eps
    np.testing.assert_allclose(grad[0], u_np[0] / 1e-12)
    _, tangent = gg.jvp(lambda a: F.normalize(a, p), (gg.tensor(x_np),), (gg.tensor(u_np),))
    np.testing.assert_allclose(tangent.numpy()[0], u_np[0] / 1e-12)
    assert np.isfinite(grad).all() and np.isfinite(tangent.numpy()).all()
    if torch is None:
        return
    t = torch.tensor(x_np, requires_grad=True)
    (TF.normalize(t, p) * torch.tensor(u_np)).sum().backward()
    np.testing.assert_allclose(grad, t.grad.numpy(), rtol=1e-12)
    _, t_tangent = torch.func.jvp(lambda a: TF.normalize(a, p), (torch.tensor(x_np),),
                                  (torch.tensor(u_np),))
    np.testing.assert_allclose(tangent.numpy(), t_tangent.numpy(), rtol=1e-12, atol=1e-15)


# -- in-place selection ops -------------------------------------------------------------------
# (name, the call on a tensor y, given s (a float tensor of y's shape) and m (a bool mask))
_SELECTION = [
    ("scatter_", lambda y, s, m, T: y.scatter_(1, T.tensor([[2, 0], [1, 3], [0, 0]]),
                                                      s[:, :2])),
    ("scatter_value", lambda y, s, m, T: y.scatter_(0, T.tensor([[2, 0, 1, 1]]), 1.5)),
    ("scatter_add_", lambda y, s, m, T: y.scatter_add_(0, T.tensor([[2, 0, 2, 2]]), s[:1])),
    ("scatter_reduce_add", lambda y, s, m, T: y.scatter_(1, T.tensor([[1, 1]]), s[:1, :2],
                                                          reduce="add")),
    ("index_add_", lambda y, s, m, T: y.index_add_(1, T.tensor([3, 0, 3]), s[:, :3],
                                                   alpha=2.0)),
    ("index_copy_", lambda y, s, m, T: y.index_copy_(0, T.tensor([2, 0]), s[:2])),
    ("index_fill_", lambda y, s, m, T: y.index_fill_(1, T.tensor([1, 3]), -2.0)),
    ("index_fill_tensor", lambda y, s, m, T: y.index_fill_(0, T.tensor([1]), s[0, 0] * 1.0)),
    ("masked_fill_", lambda y, s, m, T: y.masked_fill_(m, 0.75)),
    ("masked_fill_row_mask", lambda y, s, m, T: y.masked_fill_(m[0], s[1, 1] * 1.0)),
    ("masked_scatter_", lambda y, s, m, T: y.masked_scatter_(m, s * 2.0)),
    ("index_put_", lambda y, s, m, T: y.index_put_((T.tensor([0, 2]), T.tensor([1, 3])),
                                                   s[0, :2])),
    ("index_put_accumulate", lambda y, s, m, T: y.index_put_((T.tensor([0, 0, 2]),),
                                                             s[:3], accumulate=True)),
    ("index_put_mask", lambda y, s, m, T: y.index_put_((m,), s[m])),
]
SELECTION = [pytest.param(*row, id=row[0]) for row in _SELECTION]


def _selection_inputs():
    rng = np.random.default_rng(5)
    return rng.uniform(-1, 1, (3, 4)), rng.uniform(-1, 1, (3, 4)), rng.random((3, 4)) < 0.5


@pytest.mark.parametrize("name,call", SELECTION)
def test_inplace_selection_op_on_a_non_leaf(name, call):
    """The same object comes back, its version moved; values and gradients (to the input
    and to the written source) as torch's in float64."""
    x_np, s_np, m_np = _selection_inputs()
    x = gg.tensor(x_np, requires_grad=True)
    s = gg.tensor(s_np, requires_grad=True)
    y = x * 1.0
    version = y._ver[0]
    assert call(y, s, gg.tensor(m_np), gg) is y
    assert y._ver[0] > version
    ((y * y).sum() + y.sum()).backward()
    gx = np.zeros_like(x_np) if x.grad is None else x.grad.numpy()
    gs = np.zeros_like(s_np) if s.grad is None else s.grad.numpy()
    if torch is None:
        return
    differentiable = name != "scatter_reduce_add"       # torch has no derivative there
    tx = torch.tensor(x_np, requires_grad=differentiable)
    ts = torch.tensor(s_np, requires_grad=differentiable)
    ty = tx * 1.0
    call(ty, ts, torch.tensor(m_np), torch)
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-12)
    if not differentiable:
        return
    ((ty * ty).sum() + ty.sum()).backward()
    np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-12)
    t_gs = np.zeros_like(s_np) if ts.grad is None else ts.grad.numpy()
    np.testing.assert_allclose(gs, t_gs, rtol=1e-12)


@pytest.mark.parametrize("name,call", SELECTION)
def test_inplace_selection_op_refused_on_a_leaf_that_requires_grad(name, call):
    x_np, s_np, m_np = _selection_inputs()
    x = gg.tensor(x_np, requires_grad=True)
    s = gg.tensor(s_np)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        call(x, s, gg.tensor(m_np), gg)
    np.testing.assert_array_equal(x.numpy(), x_np)
    with gg.no_grad():
        assert call(x, s, gg.tensor(m_np), gg) is x
    if torch is not None:
        t = torch.tensor(x_np)
        call(t, torch.tensor(s_np), torch.tensor(m_np), torch)
        np.testing.assert_allclose(x.numpy(), t.numpy(), rtol=1e-12)


def test_a_buffer_written_in_place_with_a_source_that_requires_grad():
    buf = gg.zeros(2, 3, dtype=gg.float64)        # a leaf that does not require grad
    s = gg.tensor([[1.0, 2.0, 3.0]], dtype=gg.float64, requires_grad=True)
    buf.index_add_(0, gg.tensor([1]), s, alpha=3.0)
    assert buf.requires_grad and not buf.is_leaf
    (buf * buf).sum().backward()
    np.testing.assert_allclose(s.grad.numpy(), 18.0 * s.detach().numpy())


def test_selection_ops_check_their_arguments_as_pytorch():
    x = gg.zeros(3, 4)
    with pytest.raises(TypeError, match="same dtype"):
        x.index_add_(0, gg.tensor([0]), gg.ones(1, 4, dtype=gg.float64))
    with pytest.raises(ValueError, match="does not fit"):
        x.index_copy_(0, gg.tensor([0, 1]), gg.ones(1, 4))
    with pytest.raises(IndexError, match="out of bounds"):
        x.index_fill_(1, gg.tensor([4]), 1.0)
    with pytest.raises(IndexError, match="vector"):
        x.index_add(0, gg.tensor([[0]]), gg.ones(1, 4))
    v = gg.ones(2, 4, requires_grad=True)
    with pytest.raises(RuntimeError, match="repeats a position"):
        gg.index_copy(x, 0, gg.tensor([1, 1]), v)
    assert x.abs().sum().item() == 0.0                 # untouched, the engine still usable
    assert gg.index_copy(x, 0, gg.tensor([1, 1]), v.detach()).sum().item() == 4.0


# -- index_put with tensor positions and a value that requires grad ---------------------------
def test_index_put_with_tensor_positions_and_a_value_that_requires_grad():
    x = gg.tensor([1.0, 2.0, 3.0, 4.0], dtype=gg.float64, requires_grad=True)
    v = gg.tensor([10.0, 20.0], dtype=gg.float64, requires_grad=True)
    out = gg.ops.index_put(x * 1.0, gg.tensor([0, 2]), v)        # flat positions
    assert out.tolist() == [10.0, 2.0, 20.0, 4.0]
    (out * gg.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert v.grad.tolist() == [1.0, 3.0] and x.grad.tolist() == [0.0, 2.0, 0.0, 4.0]
    y = gg.zeros(2, 3, dtype=gg.float64, requires_grad=True)
    w = gg.tensor([5.0, 6.0], dtype=gg.float64, requires_grad=True)
    out = gg.index_put(y, (gg.tensor([1, 0]), gg.tensor([2, 2])), w)   # PyTorch's form
    (out * out).sum().backward()
    assert out.tolist() == [[0.0, 0.0, 6.0], [0.0, 0.0, 5.0]]
    assert w.grad.tolist() == [10.0, 12.0]
    assert gg.gradcheck(lambda a, b: gg.index_put(a, (gg.tensor([1, 0]),), b, True),
                        [gg.tensor(np.ones((2, 3)), requires_grad=True),
                         gg.tensor(np.ones(3) * 0.5, requires_grad=True)])
    with pytest.raises(TypeError, match="must be integers"):
        gg.ops.index_put(x, gg.tensor([0.0]), v[:1])
    with pytest.raises(TypeError, match="tuple of index tensors"):
        gg.index_put(x, [0, 2], v)                   # not x[0, 2]: PyTorch refuses ints too
    assert gg.index_put(gg.zeros(2, 2), (None, gg.tensor([1])), 1.0).tolist() == [[0.0, 1.0],
                                                                                  [0.0, 1.0]]
    with pytest.raises(ValueError, match="cannot be broadcast"):
        gg.ops.index_put(x, gg.tensor([0, 1]), gg.ones(3, dtype=gg.float64))
    if torch is not None:
        tx = torch.tensor([[1.0, 2.0], [3.0, 4.0]], dtype=torch.float64)
        tv = torch.tensor([7.0, 8.0], dtype=torch.float64)
        expected = torch.index_put(tx, (torch.tensor([1, 1]),), tv, accumulate=True)
        got = gg.index_put(gg.tensor(tx.numpy()), (gg.tensor([1, 1]),), gg.tensor(tv.numpy()),
                           accumulate=True)
        np.testing.assert_array_equal(got.numpy(), expected.numpy())


@pytest.mark.parametrize("index", [
    lambda T: T.tensor([2, 0]),
    lambda T: (T.tensor([2, 0]), T.tensor([1, 1])),
    lambda T: T.tensor([True, False, True]),
    lambda T: (slice(None), T.tensor([0, 2])),
], ids=["rows", "pairs", "mask", "columns"])
def test_setitem_with_an_index_tensor_and_a_value_that_requires_grad(index):
    np_index = index(types.SimpleNamespace(tensor=np.array))
    x_np = np.arange(9.0).reshape(3, 3)
    x = gg.tensor(x_np, requires_grad=True)
    y = x * 1.0
    v = gg.tensor(np.full(np.shape(x_np[np_index]), 0.5), requires_grad=True)
    y[index(gg)] = v * 3.0
    (y * y).sum().backward()
    expected_y = x_np.copy()
    expected_y[np_index] = 1.5
    np.testing.assert_allclose(y.detach().numpy(), expected_y)
    written = np.zeros((3, 3), dtype=bool)
    written[np_index] = True
    np.testing.assert_allclose(x.grad.numpy(), np.where(written, 0.0, 2 * x_np))
    np.testing.assert_allclose(v.grad.numpy(), np.full(v.shape, 9.0))


# -- the nuclear norm ------------------------------------------------------------------------------
def test_nuclear_norm_third_derivative_is_a_clear_error_and_the_engine_stays_usable():
    x = gg.tensor(np.random.default_rng(2).uniform(-1, 1, (3, 2)), requires_grad=True)
    (g,) = gg.autograd.grad(gg.norm(x, "nuc"), [x], create_graph=True)
    (h,) = gg.autograd.grad((g * g).sum(), [x], create_graph=True)     # second order: fine
    with pytest.raises(NotImplementedError, match="third derivative of the nuclear norm"):
        gg.autograd.grad((h * h).sum(), [x])
    assert gg.norm(x, "nuc").item() == pytest.approx(
        np.linalg.norm(x.detach().numpy(), "nuc"))


def test_norm_with_nuc_and_fro_checks_its_dims_as_torch():
    x = gg.ones(2, 3, 4)
    with pytest.raises(ValueError, match="2-D tensor"):
        gg.norm(x, "nuc")
    with pytest.raises(ValueError, match="2-tuple"):
        gg.norm(x, "nuc", dim=1)
    with pytest.raises(ValueError, match="at most two dims"):
        gg.norm(x, "fro", dim=(0, 1, 2))
    assert gg.norm(x, "fro").item() == pytest.approx(np.sqrt(24))      # all elements
    with pytest.raises(TypeError, match="floating"):
        gg.norm(gg.ones(2, 2, dtype=gg.int64), "nuc")
    if torch is not None:
        for call in (lambda T, t: T.norm(t, "nuc"), lambda T, t: T.norm(t, "fro", dim=(0, 1, 2))):
            with pytest.raises(RuntimeError):
                call(torch, torch.ones(2, 3, 4))


# -- habits a ported script relies on (found by comparing against torch) ---------------------
def test_where_of_two_python_numbers_gives_pytorchs_dtype():
    cond = gg.tensor([True, False])
    assert gg.where(cond, 1.0, 0.0).dtype == gg.float32          # was float64 (NumPy's)
    assert gg.where(cond, 1, 0).dtype == gg.int64
    assert gg.where(cond, True, False).dtype == gg.bool
    assert gg.where(cond, 1, 0.5).tolist() == [1.0, 0.5]
    x = gg.tensor([1.0, -2.0], dtype=gg.float64, requires_grad=True)
    gg.where(x > 0, x, 0.0).sum().backward()                    # a tensor beside a number
    assert x.grad.tolist() == [1.0, 0.0]


def test_integer_logsumexp_is_the_default_float_and_bool_square_is_int64():
    i = gg.tensor([[1, 2], [3, 4]])
    assert gg.logsumexp(i, 1).dtype == gg.float32                # was float64
    np.testing.assert_allclose(gg.logsumexp(i, 1).numpy(),
                               np.log(np.exp([[1, 2], [3, 4]]).sum(1)), rtol=1e-6)
    assert gg.tensor([True, False]).square().dtype == gg.int64   # was int8
    assert gg.tensor([True, False]).square().tolist() == [1, 0]


def test_sum_mean_and_logsumexp_of_a_0d_tensor_over_dim_0_and_minus_1():
    x = gg.tensor(2.5, dtype=gg.float64, requires_grad=True)
    for dim in (0, -1):
        assert x.sum(dim).item() == 2.5 and x.mean(dim).item() == 2.5
        assert gg.logsumexp(x, dim).item() == pytest.approx(2.5)
        assert x.sum(dim, keepdim=True).shape == ()
    (x.sum(0) + x.mean(-1) * 2).backward()
    assert x.grad.item() == 3.0
    with pytest.raises(IndexError, match="range of \\[-1, 0\\]"):
        x.sum(1)


@pytest.mark.parametrize("expr", [
    "T.tensor([1., 2.]).add(T.tensor([1., 1.]), alpha=3)",
    "T.tensor([1., 2.]).sub(1.5)", "T.tensor([1, 2]).mul(2)", "T.tensor([1, 2]).div(2)",
    "T.tensor([5, -5]).div(2, rounding_mode='trunc')",
    "T.tensor([5, -5]).div(2, rounding_mode='floor')",
    "T.tensor([5., -5.]).div(2, rounding_mode='trunc')", "T.tensor([1, 2]).true_divide(4)",
    "T.tensor([1, 2]).pow(2)", "T.tensor([1, 2]).pow(0.5)", "T.tensor([1., 2.]).neg()",
    "T.tensor([1, 2]).reciprocal()", "T.tensor([1, 2]).maximum(T.tensor([2., 1.]))",
    "T.tensor([1., 2.]).minimum(T.tensor([2., 1.]))", "T.tensor([1, -2]).clamp_min(0)",
    "T.tensor([1., 3.]).clamp_max(2.0)", "T.tensor([1.5, 2.]).type_as(T.tensor([1]))",
    "T.tensor([1., 2.]).new_zeros(2, 3)", "T.tensor([1, 2]).new_ones((2,))",
    "T.tensor([1., 2.]).new_full((2,), 3)", "T.tensor([1., 2.]).new_tensor([3, 4])",
    "T.tensor([[1., 2.]]).mm(T.tensor([[3.], [4.]]))", "T.ones(2, 1, 3).bmm(T.ones(2, 3, 2))",
    "T.tensor([1., 2.]).dot(T.tensor([3., 4.]))", "T.tensor([[1., 2.]]).t()",
    "T.arange(6).reshape_as(T.ones(2, 3))", "T.tensor([1, 2]).byte()",
    "T.tensor([1, 2]).short()", "T.tensor([1, 2]).char()", "T.ones(2).to(T.bool)",
    "T.tensor([1.0, 4.0]).sqrt_()", "T.tensor([1.0, -4.0]).abs_()", "T.tensor([0.5]).exp_()",
    "T.tensor([-1.5, 1.5]).floor_()", "T.tensor([1, 2]).is_floating_point()",
    "T.tensor([1., 2.]).element_size()", "T.zeros(2, 3).t().is_contiguous()",
    "T.zeros(2, 3).nelement()", "T.zeros(2, 3).ndimension()",
])
def test_method_spellings_match_torch(expr):
    got = eval(expr, {"T": gg})
    if torch is None:
        assert got is not None
        return
    expected = eval(expr, {"T": torch})
    if isinstance(expected, torch.Tensor):
        assert str(got.dtype) == str(expected.dtype).replace("torch.", "")
        assert tuple(got.shape) == tuple(expected.shape)
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-6)
    else:
        assert got == expected


def test_inplace_unary_methods_on_a_non_leaf():
    x = gg.tensor([0.5, 1.5], dtype=gg.float64, requires_grad=True)
    y = x * 2.0
    assert y.exp_() is y and y.log_() is y and y.sqrt_() is y
    y.sum().backward()                     # sqrt(log(exp(2x))) = sqrt(2x)
    np.testing.assert_allclose(x.grad.numpy(), 1 / np.sqrt(2 * x.detach().numpy()))
    with pytest.raises(RuntimeError, match="leaf Variable"):
        x.exp_()


@pytest.mark.parametrize("shape,dim", [((0,), 0), ((2, 0), -1), ((0, 3), 1)])
def test_softmax_of_an_empty_tensor_is_empty(shape, dim):
    x = gg.zeros(*shape, requires_grad=True)
    for f in (gg.softmax, gg.log_softmax):
        out = f(x, dim)
        assert out.shape == shape and out.dtype == gg.float32
        out.sum().backward()
        assert x.grad.shape == shape


@pytest.mark.parametrize("expr", [
    "T.tensor([[1., 0.], [3., 0.]]).count_nonzero()",
    "T.tensor([[1., 0.], [3., 0.]]).count_nonzero(0)",
    "T.tensor([[1, 0], [3, 0]]).count_nonzero((0, 1))",
    "T.tensor([[1., 0.], [3., 0.]]).nonzero()",
    "T.tensor([[1., 0.], [3., 0.]]).nonzero(as_tuple=True)[1]",
    "T.tensor([0., 0.]).nonzero()", "T.tensor(2.).nonzero()", "T.tensor(0.).nonzero()",
    "T.tensor([1, 4, 9, 16]).diff()", "T.tensor([[1., 4.], [9., 16.]]).diff(dim=0)",
    "T.tensor([1, 4, 9, 16]).diff(n=2)",
    "T.tensor([1, 4]).diff(prepend=T.tensor([0]), append=T.tensor([5, 7]))",
    "T.tensor([True, False, False]).diff()",
    "T.tensor([1., 2.]).addcmul(T.tensor([2., 3.]), T.tensor([4., 5.]), value=0.5)",
    "T.tensor([1., 2.]).addcdiv(T.tensor([2., 3.]), T.tensor([4., 5.]), value=2)",
    "T.tensor([1, 2]).addcmul(T.tensor([2, 3]), T.tensor([4, 5]))",
])
def test_counting_and_difference_methods_match_torch(expr):
    test_method_spellings_match_torch(expr)


def test_addcmul_and_diff_are_differentiable():
    a, b, c = (gg.tensor(np.random.default_rng(k).uniform(0.5, 1.5, (2, 3)), requires_grad=True)
               for k in range(3))
    assert gg.gradcheck(lambda x, y, z: x.addcdiv(y, z, value=0.5).addcmul(y, z).diff(dim=0),
                        [a, b, c])
    y = a * 1.0
    y.addcmul_(b, c, value=2.0)
    y.sum().backward()
    np.testing.assert_allclose(b.grad.numpy(), 2.0 * c.detach().numpy())


def test_forward_mode_through_an_inplace_activation():
    x = gg.tensor([0.3, -1.2], dtype=gg.float64)
    t = gg.tensor([1.0, 0.5], dtype=gg.float64)
    for f, g in ((lambda a: F.silu(a * 2.0, inplace=True).sum(), lambda a: F.silu(a * 2.0).sum()),
                 (lambda a: (a * 1.0).tanh_().sum(), lambda a: gg.tanh(a).sum())):
        np.testing.assert_allclose(gg.jvp(f, (x,), (t,))[1].numpy(),
                                   gg.jvp(g, (x,), (t,))[1].numpy(), rtol=1e-12)
        np.testing.assert_allclose(gg.hvp(f, (x,), (t,))[1][0].numpy(),
                                   gg.hvp(g, (x,), (t,))[1][0].numpy(), rtol=1e-12)


def test_max_and_min_of_all_elements_share_the_gradient_among_nans_as_pytorch():
    """PyTorch differentiates max()/min() over all elements by evenly_distribute_backward,
    in which a NaN result is shared by the NaNs; amax/amin give a slice holding a NaN NaN
    gradients everywhere. Both rules, forward mode included, checked by hand."""
    nan = float("nan")
    for reduce in (gg.max, gg.min, lambda t: t.max(), lambda t: t.min()):
        x = gg.tensor([1.0, nan, 3.0, nan], dtype=gg.float64, requires_grad=True)
        reduce(x).backward()
        assert x.grad.tolist() == [0.0, 0.5, 0.0, 0.5]
        tangent = gg.tensor([1.0, 2.0, 4.0, 8.0], dtype=gg.float64)
        assert gg.jvp(reduce, (x.detach(),), (tangent,))[1].item() == 5.0
    ties = gg.tensor([3.0, 1.0, 3.0], dtype=gg.float64, requires_grad=True)
    gg.max(ties).backward()
    assert ties.grad.tolist() == [0.5, 0.0, 0.5]
    x = gg.tensor([1.0, nan, 3.0], dtype=gg.float64, requires_grad=True)
    gg.amax(x).backward()
    assert all(math.isnan(v) for v in x.grad.tolist())
