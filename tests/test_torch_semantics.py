"""PyTorch's tensor semantics: in-place ops, views, promotion, indexing, max/min(dim),
dim=/keepdim=, size(), .data, hooks and the autograd corners. The first block holds the
habits that silently gave wrong results before (each of those tests failed then)."""
import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn as nn


# -- silent wrong results before ------------------------------------------------------------------
def test_inplace_update_of_a_parameter_under_no_grad_changes_it():
    p = gg.tensor([1.0, 2.0], requires_grad=True)
    (p * p).sum().backward()
    with gg.no_grad():
        p -= 0.5 * p.grad
    assert p.tolist() == [0.0, 0.0]
    assert p.requires_grad and p.is_leaf


def test_inplace_op_keeps_the_parameter_object_the_optimizer_holds():
    m = nn.Linear(3, 2)
    weight = m.weight
    with gg.no_grad():
        m.weight -= 0.0
        m.weight += 1.0
    assert m.weight is weight and isinstance(m.weight, nn.Parameter)
    assert any(p is weight for p in m.parameters())


def test_augmented_assignment_changes_every_alias():
    x = gg.zeros(3)
    y = x
    x += 1
    assert y.tolist() == [1.0, 1.0, 1.0] and y is x
    x *= 3
    x -= 1
    x /= 2
    assert y.tolist() == [1.0, 1.0, 1.0]


def test_transpose_swaps_two_dims():
    x = gg.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert x.transpose(0, 1).tolist() == [[1.0, 4.0], [2.0, 5.0], [3.0, 6.0]]
    assert gg.transpose(x, 1, 0).shape == (3, 2)
    y = gg.zeros(2, 3, 4)
    assert y.transpose(0, 2).shape == (4, 3, 2) and y.transpose(-1, 1).shape == (2, 4, 3)
    assert y.permute(2, 0, 1).shape == (4, 2, 3) and y.permute((1, 0, 2)).shape == (3, 2, 4)
    assert y.T.shape == (4, 3, 2) and y.mT.shape == (2, 4, 3)
    with pytest.raises(TypeError):
        x.transpose()
    with pytest.raises(ValueError, match="permut"):
        y.permute(0, 0, 1)


def test_max_and_min_along_a_dim_return_values_and_indices():
    x = gg.tensor([[1.0, 5.0, 3.0], [7.0, 2.0, 0.0]])
    v, i = x.max(1)
    assert v.tolist() == [5.0, 7.0] and i.tolist() == [1, 0] and i.dtype == gg.int64
    result = gg.min(x, dim=0, keepdim=True)
    assert result.values.tolist() == [[1.0, 2.0, 0.0]] and result.indices.tolist() == [[0, 1, 1]]
    assert type(result).__name__ == "min"
    assert x.max().item() == 7.0 and x.min().item() == 0.0
    assert gg.max(x, gg.full((2, 3), 4.0)).tolist() == [[4.0, 5.0, 4.0], [7.0, 4.0, 4.0]]


def test_max_along_a_dim_sends_the_gradient_to_the_returned_index():
    x = gg.tensor([[2.0, 2.0, 1.0]], requires_grad=True)
    v, i = x.max(1)
    v.sum().backward()
    expected = np.zeros(3)
    expected[i.item()] = 1.0
    np.testing.assert_array_equal(x.grad.numpy()[0], expected)
    x.grad = None
    x.max().backward()                 # the full reduction spreads ties evenly (amax)
    np.testing.assert_array_equal(x.grad.numpy()[0], [0.5, 0.5, 0.0])


def test_scalars_do_not_upcast_and_integers_become_the_default_float():
    f32 = gg.ones(2)
    i64 = gg.arange(3)
    assert (f32 * np.float64(2.0)).dtype == gg.float32
    assert (np.float64(2.0) * f32).dtype == gg.float32
    assert (f32 * np.array(2.0)).dtype == gg.float32       # a 0-d array: as a 0-d tensor
    assert (f32 + gg.tensor(1.0, dtype=gg.float64)).dtype == gg.float32
    assert (i64 + gg.tensor(1.0, dtype=gg.float64)).dtype == gg.float64
    assert (i64 / 2).dtype == gg.float32 and (i64 / i64[1:2]).dtype == gg.float32
    assert (i64 * 2.5).dtype == gg.float32 and (2.5 * i64).dtype == gg.float32
    assert (i64 * np.float64(2)).dtype == gg.float32
    assert (i64 * 2).dtype == gg.int64 and (i64 // 1 if hasattr(gg.Tensor, "__floordiv__")
                                              else i64).dtype == gg.int64
    for fn in (gg.exp, gg.cos, gg.sin, gg.log, gg.sqrt, gg.tanh, gg.sigmoid):
        assert fn(i64 + 1).dtype == gg.float32, fn
    assert gg.exp(gg.tensor([True, False])).dtype == gg.float32
    assert (gg.tensor([1, 2], dtype=gg.int32) + gg.arange(2)).dtype == gg.int64
    assert (gg.tensor([True]) + 1).dtype == gg.int64
    mask = i64 > 0
    assert gg.maximum(i64, gg.ones(3)).dtype == gg.float32
    assert gg.where(mask, i64, 2.5).dtype == gg.float32
    assert gg.where(mask, gg.ones(3), np.float64(2.5)).dtype == gg.float32


def test_an_integer_input_to_a_float_linear_layer_is_a_dtype_error():
    layer = nn.Linear(3, 2)
    with pytest.raises(TypeError, match="int64.*float32|float32.*int64"):
        layer(gg.arange(3).reshape(1, 3))
    with pytest.raises(TypeError, match="same dtype"):
        gg.arange(6).reshape(2, 3) @ gg.ones(3, 2)
    assert layer(gg.ones(1, 3)).dtype == gg.float32      # the engine is still usable


def test_integer_mean_and_true_division_in_place_raise_as_pytorch():
    x = gg.arange(4)
    with pytest.raises(TypeError, match="mean"):
        x.mean()
    assert x.mean(dtype=gg.float32).item() == 1.5
    with pytest.raises(RuntimeError, match="can't be cast"):
        x /= 2
    with pytest.raises(RuntimeError, match="can't be cast"):
        x += 1.5
    assert x.tolist() == [0, 1, 2, 3]
    x *= 2
    assert x.tolist() == [0, 2, 4, 6] and x.dtype == gg.int64


@pytest.mark.parametrize("index", [
    (0, slice(None), [0, 2]),
    (0, Ellipsis, [1, 2]),
    ([0, 1], slice(None), [0, 2]),
    (slice(None), [0, 1], [1, 2]),
    (slice(None), [0, 1], slice(None), [1, 2]),
    ([0, 1], None, [1, 2]),
    ([0, 1], 0, [1, 2]),
    (1, [[0], [1]], slice(None), [1, 2, 0]),
    (slice(1, None), -1, [3, 0], None),
    (Ellipsis, [0, 1], 0),
])
def test_advanced_indexing_follows_pytorch(index):
    a = np.arange(3 * 4 * 5 * 6, dtype=np.float32).reshape(3, 4, 5, 6)
    x = gg.tensor(a)
    got = x[tuple(gg.tensor(i) if isinstance(i, list) else i for i in index)]
    # PyTorch's rule: integers select first, then NumPy's rule on what is left
    ints = tuple(i if isinstance(i, int) else slice(None) if isinstance(i, list)
                 else i for i in index)
    rest = tuple(i if isinstance(i, list) else Ellipsis if i is Ellipsis else slice(None)
                 for i in index if not isinstance(i, int))
    expected = a[ints][rest]
    assert got.shape == expected.shape
    np.testing.assert_array_equal(got.numpy(), expected)


def test_advanced_indexing_matches_torch_shapes():
    torch = pytest.importorskip("torch")
    a = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    x, t = gg.tensor(a), torch.tensor(a)
    mask = a[:, 0, 0] > 10
    for gi, ti in [((0, slice(None), [0, 2]), (0, slice(None), [0, 2])),
                   ((gg.tensor(0), slice(None), [0, 2]), (torch.tensor(0), slice(None), [0, 2])),
                   ((gg.tensor(mask), 1), (torch.tensor(mask), 1)),
                   ((gg.tensor(a > 30),), (torch.tensor(a > 30),)),
                   ((1, gg.tensor([[0, 1], [2, 3]]), slice(None, 2)),
                    (1, torch.tensor([[0, 1], [2, 3]]), slice(None, 2)))]:
        np.testing.assert_array_equal(x[gi].numpy(), t[ti].numpy())


# -- dim=, keepdim=, size() -----------------------------------------------------------------------
def test_dim_and_keepdim_with_axis_and_keepdims_as_aliases():
    a = np.arange(24, dtype=np.float64).reshape(2, 3, 4)
    x = gg.tensor(a)
    for name in ("sum", "mean", "logsumexp"):
        fn = getattr(x, name)
        ref = fn(dim=1, keepdim=True).numpy()
        assert ref.shape == (2, 1, 4)
        np.testing.assert_allclose(fn(axis=1, keepdims=True).numpy(), ref)
        np.testing.assert_allclose(getattr(gg, name)(x, 1, True).numpy(), ref)
    assert x.sum(dim=(0, 2)).shape == (3,)
    assert x.max(dim=2, keepdim=True).values.shape == (2, 3, 1)
    assert x.max(axis=2, keepdims=True).indices.shape == (2, 3, 1)
    np.testing.assert_allclose(x.softmax(dim=0).numpy(), x.softmax(axis=0).numpy())
    np.testing.assert_allclose(gg.log_softmax(x, dim=1).numpy(),
                               gg.log_softmax(x, axis=1).numpy())
    with pytest.raises(TypeError, match="both dim"):
        x.sum(dim=0, axis=1)


def test_size_is_a_method():
    x = gg.zeros(2, 3)
    assert x.size() == (2, 3) and isinstance(x.size(), tuple) and x.size().numel() == 6
    assert x.size(1) == 3 and x.size(-2) == 2 and x.numel() == 6
    with pytest.raises(IndexError):
        x.size(2)


# -- .data ----------------------------------------------------------------------------------------
def test_data_is_a_detached_tensor_sharing_storage():
    p = gg.tensor([1.0, 2.0], requires_grad=True)
    (3 * p).sum().backward()
    d = p.data
    assert isinstance(d, gg.Tensor) and not d.requires_grad
    p.data -= 0.5 * p.grad
    assert p.tolist() == [-0.5, 0.5] and p.requires_grad
    p.data = gg.tensor([4.0, 5.0, 6.0])          # replaces the storage, shape and all
    assert p.shape == (3,) and p.requires_grad
    p.grad = None
    (p * p).sum().backward()
    assert p.grad.tolist() == [8.0, 10.0, 12.0]


# -- in-place ops ---------------------------------------------------------------------------------
def test_inplace_methods_modify_in_place_and_return_self():
    x = gg.tensor([1.0, -2.0, 3.0])
    assert x.add_(1.0) is x and x.tolist() == [2.0, -1.0, 4.0]
    x.sub_(gg.ones(3), alpha=2)
    assert x.tolist() == [0.0, -3.0, 2.0]
    x.mul_(2).div_(4)
    assert x.tolist() == [0.0, -1.5, 1.0]
    x.clamp_(-1.0, 0.5)
    assert x.tolist() == [0.0, -1.0, 0.5]
    x.fill_(7)
    assert x.tolist() == [7.0] * 3
    x.copy_(gg.tensor([1, 2, 3]))                 # copy_ casts
    assert x.tolist() == [1.0, 2.0, 3.0] and x.dtype == gg.float32
    x.zero_()
    assert x.tolist() == [0.0] * 3
    with pytest.raises(RuntimeError, match="broadcast shape"):
        x.add_(gg.ones(2, 3))


def test_inplace_ops_bump_the_version_counter():
    x = gg.ones(3)
    seen = [x._ver[0]]
    for op in (lambda: x.add_(1), lambda: x.mul_(2), lambda: x.zero_(), lambda: x.fill_(1),
               lambda: x.copy_(gg.ones(3)), lambda: x.clamp_(0, 1), lambda: x.__setitem__(0, 2)):
        op()
        assert x._ver[0] > seen[-1]
        seen.append(x._ver[0])


def test_setitem_forms_without_grad():
    x = gg.zeros(3, 4)
    x[0] = 1.0
    x[1, 1:3] = gg.tensor([2.0, 3.0])
    x[gg.tensor([2, 2, 0]), gg.tensor([0, 3, 3])] = 5.0
    x[x > 4.0] = -1.0
    x[..., 0] += 10.0
    expected = np.zeros((3, 4))
    expected[0] = 1.0
    expected[1, 1:3] = [2.0, 3.0]
    expected[[2, 2, 0], [0, 3, 3]] = 5.0
    expected[expected > 4.0] = -1.0
    expected[..., 0] += 10.0
    np.testing.assert_array_equal(x.numpy(), expected)
    with pytest.raises(ValueError, match="does not fit|shape"):
        x[0] = gg.ones(3)


def test_inplace_on_a_leaf_that_requires_grad_is_refused_outside_no_grad():
    w = gg.ones(3, requires_grad=True)
    for op in (lambda: w.add_(1), lambda: w.__setitem__(0, 2.0), lambda: w.zero_(),
               lambda: w.__imul__(2)):
        with pytest.raises(RuntimeError, match="a leaf Variable that requires grad is being "
                                               r"used in an in-place operation\."):
            op()
    with pytest.raises(RuntimeError, match="view of a leaf Variable"):
        w[1:].add_(1)
    assert w.tolist() == [1.0, 1.0, 1.0]
    with gg.no_grad():
        w[0] = 5.0
        w[1:].mul_(2)
    assert w.tolist() == [5.0, 2.0, 2.0] and w.is_leaf


def test_setitem_on_a_non_leaf_sends_gradients_to_both_parts():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    v = gg.tensor(10.0, requires_grad=True)
    y = x * 2
    y[1] = v * 3
    assert y.tolist() == [2.0, 30.0, 6.0] and not y.is_leaf
    (y * gg.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert x.grad.tolist() == [2.0, 0.0, 6.0]
    assert v.grad.item() == 6.0


def test_a_buffer_filled_in_place_with_values_that_require_grad():
    w = gg.tensor([1.0, 2.0], requires_grad=True)
    buf = gg.zeros(2, 2)
    buf[0] = w
    buf[1] += w * w
    assert buf.requires_grad
    buf.sum().backward()
    assert w.grad.tolist() == [3.0, 5.0]


def test_overwriting_a_value_saved_for_backward_raises_naming_the_op():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 1.0
    z = y.exp()           # exp saves its output
    z += 1
    with pytest.raises(RuntimeError, match="'exp'.*modified in place"):
        z.sum().backward()
    a = x * 1.0
    b = a * a             # mul saves its inputs
    a[0] = 3.0
    with pytest.raises(RuntimeError, match="'mul'"):
        b.sum().backward()
    v = x * 1.0
    row = v[0:1]
    s = (v + 2).sin()     # sin saves its input, v + 2: untouched by the write below
    row.add_(1.0)
    s.sum().backward()    # nothing that backward needs was overwritten
    c = x * 1.0
    d = c.sin()
    c[1:].mul_(2)         # through a view of c, whose value sin saved
    with pytest.raises(RuntimeError, match="'sin'"):
        d.sum().backward()


def test_inplace_mul_of_a_non_leaf_by_itself():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 1.0
    y *= y
    y.sum().backward()
    assert x.grad.tolist() == [2.0, 4.0, 6.0]


@pytest.mark.parametrize("make_view", [
    lambda t: t[1],
    lambda t: t[:, 1:3],
    lambda t: t.reshape(12),
    lambda t: t.view(3, 4),
    lambda t: t.transpose(0, 1),
    lambda t: t.permute(1, 0),
    lambda t: t.T,
    lambda t: t.detach(),
    lambda t: t.data,
], ids=["int", "slice", "reshape", "view", "transpose", "permute", "T", "detach", "data"])
def test_views_share_storage_with_their_base(make_view):
    base = gg.zeros(3, 4)
    view = make_view(base)
    view += 1.0
    assert base.numpy().sum() == view.numel()
    before = base._ver[0]
    base.fill_(2.0)
    assert base._ver[0] > before
    assert (view.numpy() == 2.0).all()


def test_a_write_through_an_expanded_view_of_a_graph_is_refused():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    e = gg.broadcast_to(x * 1.0, (3, 2))
    with pytest.raises(RuntimeError, match="single memory location"):
        e.add_(1.0)


def test_write_through_a_view_of_a_non_leaf_updates_the_base_graph():
    x = gg.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    w = gg.tensor([5.0, 6.0], requires_grad=True)
    y = x * 1.0
    col = y.T[1]          # y's second column, through two views
    col.mul_(w)
    assert y.tolist() == [[1.0, 10.0], [3.0, 24.0]]
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [[2.0, 2 * 10.0 * 5.0], [6.0, 2 * 24.0 * 6.0]])
    np.testing.assert_allclose(w.grad.numpy(), [2 * 10.0 * 2.0, 2 * 24.0 * 4.0])


def test_reshape_of_a_non_contiguous_tensor_is_a_copy_not_a_view():
    base = gg.zeros(3, 4)
    flat = base.T.reshape(-1)
    flat += 1.0
    assert base.numpy().sum() == 0.0


def test_inplace_ops_under_forward_mode_carry_tangents():
    x = gg.tensor([1.0, 2.0], dtype=gg.float64)

    def f(x):
        y = x * 1.0
        y *= x
        y[0] = 3.0 * x[1]
        return y
    _, t = gg.jvp(f, (x,), (gg.ones_like(x),))
    assert t.tolist() == [3.0, 4.0]


# -- autograd -------------------------------------------------------------------------------------
@pytest.mark.parametrize("create_graph", [False, True])
def test_hooks_on_leaves_and_non_leaves(create_graph):
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    seen = []
    x.register_hook(lambda g: seen.append(("x", g.tolist())))
    y = x * 3
    handle = y.register_hook(lambda g: g * 10)      # a replacement
    y.register_hook(lambda g: seen.append(("y", g.tolist())))
    y.retain_grad()
    (y * y).sum().backward(create_graph=create_graph, retain_graph=True)
    assert seen == [("y", [60.0, 120.0]), ("x", [180.0, 360.0])]
    assert x.grad.tolist() == [180.0, 360.0] and y.grad.tolist() == [60.0, 120.0]
    assert all(isinstance(g, list) for _, g in seen)
    handle.remove()
    x.grad = None
    seen.clear()
    (y * 1).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


def test_hooks_receive_tensors_and_a_bad_hook_is_a_clear_error():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    kinds = []
    x.register_hook(lambda g: kinds.append(type(g)))
    (x * 2).sum().backward()
    assert kinds == [gg.Tensor]
    z = gg.tensor([1.0], requires_grad=True)
    z.register_hook(lambda g: gg.ones(3))
    with pytest.raises(ValueError, match="shape"):
        (z * 2).sum().backward()
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        gg.ones(2).register_hook(lambda g: g)


def test_backward_with_inputs_accumulates_only_into_those():
    a = gg.tensor([1.0, 2.0], requires_grad=True)
    b = gg.tensor([3.0, 4.0], requires_grad=True)
    h = a * b
    out = (h * h).sum()
    out.backward(inputs=[a], retain_graph=True)
    assert a.grad.tolist() == [18.0, 64.0] and b.grad is None
    out.backward(inputs=[h, b])
    assert h.grad.tolist() == [6.0, 16.0] and b.grad.tolist() == [6.0, 32.0]
    assert a.grad.tolist() == [18.0, 64.0]
    with pytest.raises(RuntimeError, match="cannot be empty"):
        (a * 1).sum().backward(inputs=[])


def test_detach_in_place_and_grad_allow_unused_and_inference_mode():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    assert y.detach_() is y and not y.requires_grad and y.is_leaf
    u = gg.tensor([1.0], requires_grad=True)
    gx, gu = gg.autograd.grad((x * x).sum(), [x, u], allow_unused=True)
    assert gx.tolist() == [2.0, 4.0] and gu is None
    with pytest.raises(RuntimeError, match="allow_unused"):
        gg.autograd.grad((x * x).sum(), [x, u])
    with gg.inference_mode():
        assert not (x * 2).requires_grad
    with pytest.raises(RuntimeError, match="Can't detach views in-place"):
        (x * 1)[0].detach_()


# -- edge cases -----------------------------------------------------------------------------------
def test_pow_derivatives_at_zero_follow_pytorch():
    x = gg.tensor([0.0, 1.0, -1.0, 2.5], dtype=gg.float64, requires_grad=True)
    with np.errstate(all="ignore"):
        (0.0 ** x).sum().backward()
        assert x.grad.tolist()[0] == 0.0 and x.grad.tolist()[1] == 0.0
        x.grad = None
        ((-2.0) ** x).sum().backward()            # no math domain error; nan as PyTorch
        assert np.isnan(x.grad.numpy()).all()
        x.grad = None
        (x ** 0).sum().backward()
        assert x.grad.tolist() == [0.0, 0.0, 0.0, 0.0]
        a = gg.tensor([0.0, 0.0, 0.0, 2.0], dtype=gg.float64, requires_grad=True)
        b = gg.tensor([0.0, 1.0, 2.0, 0.0], dtype=gg.float64, requires_grad=True)
        (a ** b).sum().backward()
    assert a.grad.tolist() == [0.0, 1.0, 0.0, 0.0]
    np.testing.assert_allclose(b.grad.numpy(), [0.0, 0.0, 0.0, np.log(2.0)])


def test_gradcheck_on_zero_size_inputs():
    x = gg.zeros(0, 3, dtype=gg.float64, requires_grad=True)
    y = gg.tensor([1.0, 2.0], dtype=gg.float64, requires_grad=True)
    assert gg.gradcheck(lambda x: x * 2, (x,))
    assert gg.gradcheck(lambda x, y: x.sum() + (y * y).sum(), (x, y))


def test_views_recorded_before_a_write_to_their_base_follow_the_new_graph():
    """As in PyTorch, a view taken before an in-place write to its base (directly, or
    through another view) and used after it differentiates through the new base."""
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    v = y[0:2]
    y[0] = 5.0                      # overwrites v's first element
    (v * 3).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 6.0, 0.0])

    xn = np.arange(12.0).reshape(3, 4) / 10 + 0.1
    vn = np.array([1.5, 2.0, 0.5, 3.0])

    def two_writes(lib, x, v):
        y = x * 1.0
        row = y[1]
        row.mul_(v)
        col = y.T[2]
        col *= 2.0                  # through another view: row's element 2 changes too
        return (y * row.sum()).sum()
    x, v = gg.tensor(xn, requires_grad=True), gg.tensor(vn, requires_grad=True)
    two_writes(gg, x, v).backward()

    def reference(xa, va):          # the same function in NumPy, written out of place
        y = xa.copy()
        y[1] = y[1] * va
        y[:, 2] = y[:, 2] * 2.0
        return float((y * y[1].sum()).sum())
    eps = 1e-6
    for arr, grad, other, first in ((xn, x.grad.numpy(), vn, True),
                                    (vn, v.grad.numpy(), xn, False)):
        for k in range(arr.size):
            step = np.zeros(arr.size)
            step[k] = eps
            step = step.reshape(arr.shape)
            plus = reference(arr + step, other) if first else reference(other, arr + step)
            minus = reference(arr - step, other) if first else reference(other, arr - step)
            assert grad.reshape(-1)[k] == pytest.approx((plus - minus) / (2 * eps), rel=1e-6)
