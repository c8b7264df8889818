"""PyTorch's semantics for the op set beyond what the op table checks: named results, dtypes,
empty and 0-d inputs, aliases, the non-differentiable ops, creation, and the errors."""
import math
import operator

import numpy as np
import pytest

import gpugrad as gg


def _t(a, **kw):
    return gg.tensor(np.asarray(a), **kw)


# -- results and gradients of the reductions ----------------------------------------------------
def test_min_over_a_dim_is_a_named_pair_whose_gradient_goes_to_the_index():
    x = gg.tensor([[1.0, 1.0, 2.0], [3.0, 0.5, 0.5]], dtype=gg.float64, requires_grad=True)
    values, indices = x.min(1)
    assert x.min(dim=1).values.tolist() == values.tolist() == np.min(x.numpy(), 1).tolist()
    assert indices.dtype == gg.int64
    assert indices.tolist() == np.argmin(x.numpy(), 1).tolist()
    values.sum().backward()
    picked = np.zeros((2, 3))
    picked[np.arange(2), np.argmin(x.numpy(), 1)] = 1
    np.testing.assert_array_equal(x.grad.numpy(), picked)
    x.grad = None
    gg.amin(x, 1).sum().backward()          # amin shares ties evenly
    ties = (x.numpy() == x.numpy().min(1, keepdims=True))
    np.testing.assert_allclose(x.grad.numpy(), ties / ties.sum(1, keepdims=True))


def test_sort_and_topk_are_named_pairs():
    x = gg.tensor(np.random.default_rng(0).permutation(12).reshape(3, 4).astype(np.float32))
    s = x.sort(dim=1, descending=True)
    np.testing.assert_array_equal(s.values.numpy(), -np.sort(-x.numpy(), 1))
    np.testing.assert_array_equal(s.indices.numpy(), np.argsort(-x.numpy(), 1))
    k = gg.topk(x, 2)
    np.testing.assert_array_equal(k.values.numpy(), s.values.numpy()[:, :2])
    assert k.indices.dtype == gg.int64 and x.argsort().dtype == gg.int64


def test_sort_is_stable_and_puts_nan_where_pytorch_does():
    x = gg.tensor([2.0, math.nan, 1.0, 2.0, 1.0])
    assert gg.argsort(x, stable=True).tolist() == [2, 4, 0, 3, 1]
    assert gg.argsort(x, descending=True, stable=True).tolist() == [1, 0, 3, 2, 4]


def test_reducing_over_an_empty_dim_raises_but_an_empty_result_is_fine():
    e = gg.zeros(0, 3)
    assert gg.amax(e, 1).shape == (0,) and e.amin(dim=1).shape == (0,)
    values, indices = e.min(1)
    assert values.shape == indices.shape == (0,)
    assert gg.argmax(e, 1).shape == (0,)
    for f in (lambda: gg.amax(e, 0), lambda: gg.max(e), lambda: e.min(0), lambda: gg.argmax(e),
              lambda: gg.amin(e)):
        with pytest.raises((ValueError, IndexError), match="non-zero size"):
            f()
    assert gg.prod(e, 0).tolist() == [1.0, 1.0, 1.0]


def test_zero_dim_tensors_reduce_over_dim_0_and_minus_1():
    x = gg.tensor(3.0)
    for f in (gg.amax, gg.amin, gg.cumsum, gg.cumprod, gg.logcumsumexp):
        assert f(x, 0).shape == () and f(x, -1).item() == 3.0
    assert gg.prod(x, 0).item() == 3.0 and gg.argmax(x, 0).item() == 0
    assert x.min(0).values.item() == 3.0 and x.min(0).indices.item() == 0
    assert math.isnan(gg.var(x).item())
    with pytest.raises(IndexError, match="out of range"):
        gg.amax(x, 1)


def test_axis_and_keepdims_are_aliases():
    x = gg.tensor(np.random.default_rng(1).normal(size=(2, 3, 4)))
    for f in (gg.amax, gg.amin, gg.prod, gg.argmax, gg.any, gg.all, gg.var, gg.std, gg.norm):
        a = f(x, dim=1, keepdim=True)
        b = f(x, axis=1, keepdims=True)
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        assert a.shape == (2, 1, 4)
    with pytest.raises(TypeError, match="both dim=1 and its alias axis=2"):
        gg.amax(x, dim=1, axis=2)


def test_var_and_std_follow_pytorch_arguments():
    a = np.random.default_rng(2).normal(size=(3, 5))
    x = gg.tensor(a, dtype=gg.float64)
    np.testing.assert_allclose(x.var().item(), a.var(ddof=1))
    np.testing.assert_allclose(x.var(1, unbiased=False).numpy(), a.var(1))
    np.testing.assert_allclose(x.var(False).item(), a.var())             # legacy var(unbiased)
    np.testing.assert_allclose(x.std(0, correction=2).numpy(), a.std(0, ddof=2))
    v, m = gg.var_mean(x, 1)
    np.testing.assert_allclose(m.numpy(), a.mean(1))
    assert gg.tensor([1.0, 2.0]).var(correction=2).item() == math.inf   # divisor clamped at 0
    with pytest.raises(TypeError, match="floating point"):
        gg.tensor([1, 2]).var()
    with pytest.raises(TypeError, match="correction= or unbiased="):
        x.var(unbiased=True, correction=1)


def test_norm_is_zero_gradient_at_zero_and_takes_pytorch_orders():
    z = gg.zeros(3, dtype=gg.float64, requires_grad=True)
    gg.norm(z).backward()
    assert z.grad.tolist() == [0.0, 0.0, 0.0]
    a = np.random.default_rng(3).normal(size=(2, 3))
    x = gg.tensor(a)
    for p in (1, 2, 3, math.inf, -math.inf, 0, "fro"):
        ref = np.linalg.norm(a.ravel(), 2 if p == "fro" else p)
        np.testing.assert_allclose(x.norm(p).item(), ref, rtol=1e-6)
    np.testing.assert_allclose(x.norm("nuc").item(), np.linalg.norm(a, "nuc"), rtol=1e-6)
    with pytest.raises(ValueError, match="'spectral' is not supported"):
        x.norm("spectral")


def test_products_and_scans_are_exact_with_several_zeros():
    base = np.array([[0.7, 0.0, -1.3, 0.0, 0.9], [1.1, 0.5, 0.0, 2.0, -0.4]])
    mask = gg.tensor((base != 0).astype(np.float64))
    for f in (lambda x: gg.cumprod(x * mask, 1), lambda x: gg.prod(x * mask, 1),
              lambda x: gg.prod(x * mask)):
        assert gg.gradcheck(f, (gg.tensor(base + (base == 0), dtype=gg.float64,
                                          requires_grad=True),))


def test_logcumsumexp_has_no_overflow_or_underflow():
    x = gg.tensor([-1000.0, 0.0, -1000.0, 50.0], requires_grad=True)
    out = gg.logcumsumexp(x, 0)
    np.testing.assert_allclose(out.numpy(), np.logaddexp.accumulate(x.numpy()), rtol=1e-6)
    out.sum().backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_integer_scans_and_products_give_int64():
    for dtype in (np.int32, np.bool_, np.uint8):
        x = _t(np.ones(3, dtype=dtype))
        assert gg.cumsum(x, 0).dtype == gg.int64 and gg.prod(x).dtype == gg.int64
    assert gg.tensor([1, 0], dtype=np.uint8).all().dtype == np.uint8


# -- maths: dtypes, non-differentiable ops ----------------------------------------------------
def test_rounding_keeps_integers_and_float_functions_promote_them():
    i = gg.tensor([3, -2, 5])
    for f in (gg.floor, gg.ceil, gg.trunc, gg.round, gg.sign, gg.square):
        assert f(i).dtype == gg.int64
    assert gg.sign(gg.tensor([True, False])).dtype == gg.bool_
    one = gg.tensor([1])
    for f in (gg.tan, gg.asin, gg.erf, gg.exp2, gg.log2, gg.log1p, gg.rsqrt, gg.atan):
        assert f(one).dtype == gg.float32
    assert gg.atan2(i, i).dtype == gg.float32


def test_piecewise_constant_ops_give_zero_gradients_not_none():
    for f in (gg.floor, gg.ceil, gg.trunc, gg.round, gg.sign):
        x = gg.tensor([1.3, -0.7], requires_grad=True)
        f(x).sum().backward()
        assert x.grad is not None and x.grad.tolist() == [0.0, 0.0]


def test_floor_divide_and_remainder_follow_python_signs_and_floor_divide_has_no_gradient():
    a = [7, -7, 7, -7, 0]
    b = [3, 3, -3, -3, 2]
    ta, tb = gg.tensor(a), gg.tensor(b)
    assert (ta // tb).tolist() == [x // y for x, y in zip(a, b)]
    assert (ta % tb).tolist() == [x % y for x, y in zip(a, b)]
    assert gg.fmod(ta, tb).tolist() == [math.fmod(x, y) for x, y in zip(a, b)]
    assert (ta // 2).dtype == gg.int64 and (7 // tb).tolist() == [7 // y for y in b]
    x = gg.tensor([1.5, -2.5], requires_grad=True)
    with pytest.raises(RuntimeError, match="floor_divide"):
        (x // 2.0).sum().backward()


@pytest.mark.parametrize("name", ["eq", "ne", "lt", "le", "gt", "ge"])
def test_comparison_functions_and_methods_give_bool_tensors(name):
    a = np.random.default_rng(4).integers(0, 3, size=(2, 3)).astype(np.float32)
    b = np.random.default_rng(5).integers(0, 3, size=(3,)).astype(np.float32)
    op = getattr(operator, name)
    for out in (getattr(gg, name)(_t(a), _t(b)), getattr(_t(a), name)(_t(b)),
                getattr(gg, name)(_t(a), 1.0)):
        assert out.dtype == gg.bool_
    np.testing.assert_array_equal(getattr(gg, name)(_t(a), _t(b)).numpy(), op(a, b))


def test_logical_and_bitwise_ops_and_their_operators():
    rng = np.random.default_rng(6)
    a, b = rng.integers(-8, 8, size=5), rng.integers(-8, 8, size=5)
    ta, tb = _t(a), _t(b)
    np.testing.assert_array_equal((ta & tb).numpy(), a & b)
    np.testing.assert_array_equal((ta | tb).numpy(), a | b)
    np.testing.assert_array_equal((ta ^ 3).numpy(), a ^ 3)
    np.testing.assert_array_equal((~ta).numpy(), ~a)
    np.testing.assert_array_equal((ta << 1).numpy(), a << 1)
    p, q = a > 0, b > 0
    np.testing.assert_array_equal((~_t(p)).numpy(), ~p)
    np.testing.assert_array_equal((_t(p) & _t(q)).numpy(), p & q)
    for name, ref in (("logical_and", np.logical_and), ("logical_or", np.logical_or),
                      ("logical_xor", np.logical_xor)):
        np.testing.assert_array_equal(getattr(gg, name)(ta, tb).numpy(), ref(a, b))
    np.testing.assert_array_equal(gg.logical_not(ta).numpy(), np.logical_not(a))
    with pytest.raises(TypeError, match="integer and bool"):
        gg.ones(2) & gg.ones(2)


def test_predicates():
    a = np.array([1.0, math.inf, -math.inf, math.nan, 0.0])
    x = _t(a)
    for name in ("isnan", "isinf", "isfinite", "isposinf", "isneginf"):
        np.testing.assert_array_equal(getattr(gg, name)(x).numpy(), getattr(np, name)(a))
    np.testing.assert_array_equal(gg.isclose(x, x + 1e-9, equal_nan=True).numpy(),
                                  np.isclose(a, a + 1e-9, equal_nan=True))
    assert gg.allclose(x[:1], x[:1] + 1e-9) and not gg.equal(x[:2], x[:1])


# -- movement and selection -------------------------------------------------------------------
def test_views_shapes_and_their_errors():
    x = gg.zeros(2, 1, 3)
    assert x.squeeze().shape == (2, 3) and x.squeeze(0).shape == (2, 1, 3)
    assert x.squeeze((0, 1)).shape == (2, 3) and x.unsqueeze(-1).shape == (2, 1, 3, 1)
    assert x.flatten(1).shape == (2, 3) and gg.tensor(2.0).flatten().shape == (1,)
    assert x.unflatten(2, (3, -1)).shape == (2, 1, 3, 1)
    assert x.expand(4, -1, 5, -1).shape == (4, 2, 5, 3)
    with pytest.raises(ValueError, match="must match the existing size"):
        x.expand(3, 1, 3)
    with pytest.raises(IndexError, match="out of range"):
        x.unsqueeze(4)
    assert gg.movedim(gg.zeros(2, 3, 4), (0, 1), (2, 0)).shape == (3, 4, 2)


def test_split_chunk_unbind_match_pytorch_counts():
    x = gg.arange(5)
    assert [t.tolist() for t in x.split(2)] == [[0, 1], [2, 3], [4]]
    assert [t.tolist() for t in x.split([1, 4])] == [[0], [1, 2, 3, 4]]
    assert [len(t) for t in gg.arange(6).chunk(4)] == [2, 2, 2]      # fewer pieces, as torch
    assert [len(t) for t in gg.tensor_split(gg.arange(7), 3)] == [3, 2, 2]
    assert len(gg.zeros(3, 2).unbind(1)) == 2
    with pytest.raises(ValueError, match="must sum"):
        x.split([2, 2])


def test_gather_scatter_and_their_checks():
    x = gg.tensor([[1.0, 2.0], [3.0, 4.0]])
    idx = gg.tensor([[0, 0], [1, 0]])
    np.testing.assert_array_equal(gg.gather(x, 1, idx).numpy(),
                                  np.take_along_axis(x.numpy(), idx.numpy(), 1))
    out = gg.zeros(2, 3).scatter(1, gg.tensor([[2], [0]]), 7.0)
    expected = np.zeros((2, 3))
    expected[[0, 1], [2, 0]] = 7.0
    np.testing.assert_array_equal(out.numpy(), expected)
    added = gg.zeros(3).scatter_add(0, gg.tensor([0, 0, 2]), gg.ones(3))
    np.testing.assert_array_equal(added.numpy(), np.bincount([0, 0, 2], minlength=3))
    with pytest.raises(IndexError, match="out of bounds"):
        gg.gather(x, 1, gg.tensor([[0, 2], [0, 0]]))
    with pytest.raises(IndexError, match="out of bounds"):
        gg.index_select(x, 0, gg.tensor([-1]))
    with pytest.raises(ValueError, match="same number of dimensions"):
        gg.gather(x, 1, gg.tensor([0, 1]))


def test_masks_triangles_and_diagonals():
    x = gg.tensor(np.arange(6).reshape(2, 3))
    m = gg.tensor([True, False, True])
    filled = x.masked_fill(m, 2.7)
    assert filled.dtype == gg.int64
    np.testing.assert_array_equal(filled.numpy(), np.where(m.numpy(), 2, x.numpy()))
    with pytest.raises(ValueError, match="must broadcast"):
        x.masked_fill(gg.tensor([[True]] * 3), 0)
    np.testing.assert_array_equal(x.masked_select(m).numpy(), x.numpy()[:, m.numpy()].ravel())
    np.testing.assert_array_equal(gg.triu(x, 1).numpy(), np.triu(x.numpy(), 1))
    np.testing.assert_array_equal(gg.diag(gg.tensor([1, 2]), 1).numpy(), np.diag([1, 2], 1))
    np.testing.assert_array_equal(gg.diag_embed(gg.ones(2, 3)).numpy(),
                                  np.stack([np.eye(3)] * 2))
    assert gg.trace(gg.eye(3)).item() == 3.0


def test_pad_modes_and_errors():
    a = np.arange(6.0).reshape(2, 3)
    x = _t(a)
    np.testing.assert_array_equal(gg.ops.pad(x, (1, 1), value=9).numpy(),
                                  np.pad(a, [(0, 0), (1, 1)], constant_values=9))
    np.testing.assert_array_equal(gg.ops.pad(x, (2, 0), mode="reflect").numpy(),
                                  np.pad(a, [(0, 0), (2, 0)], mode="reflect"))
    with pytest.raises(ValueError, match="smaller than the input dimension"):
        gg.ops.pad(x, (3, 0), mode="reflect")
    with pytest.raises(ValueError, match="mode must be"):
        gg.ops.pad(x, (1, 0), mode="wrap")


def test_einsum_forms_and_errors():
    rng = np.random.default_rng(7)
    a, b = rng.normal(size=(2, 3)), rng.normal(size=(3, 4))
    np.testing.assert_allclose(gg.einsum("ij,jk", _t(a), _t(b)).numpy(), a @ b)
    np.testing.assert_allclose(gg.einsum("ij,jk->", [_t(a), _t(b)]).item(), (a @ b).sum())
    np.testing.assert_allclose(gg.tensordot(_t(a), _t(b), 1).numpy(), a @ b)
    with pytest.raises(ValueError, match="subscript 'j' has size"):
        gg.einsum("ij,jk->ik", _t(a), _t(a))


def test_one_hot_and_meshgrid():
    labels = gg.tensor([2, 0, 1])
    out = gg.ops.one_hot(labels)
    assert out.dtype == gg.int64
    np.testing.assert_array_equal(out.numpy(), np.eye(3, dtype=np.int64)[[2, 0, 1]])
    assert gg.ops.one_hot(labels, 5).shape == (3, 5)
    with pytest.raises(ValueError, match="smaller than num_classes"):
        gg.ops.one_hot(labels, 2)
    gi, gj = gg.meshgrid(gg.arange(2), gg.arange(3))
    assert gi.shape == gj.shape == (2, 3)
    np.testing.assert_array_equal(gi.numpy(), np.meshgrid(np.arange(2), np.arange(3),
                                                          indexing="ij")[0])


def test_cat_and_stack_take_dim():
    a, b = gg.zeros(2, 3), gg.ones(2, 3)
    assert gg.cat([a, b], dim=1).shape == (2, 6) and gg.concat([a, b], axis=0).shape == (4, 3)
    assert gg.stack([a, b], dim=2).shape == (2, 3, 2) and gg.stack([a, b]).shape == (2, 2, 3)
    with pytest.raises(TypeError, match="sequence of tensors"):
        gg.cat(a)


def test_clone_copies_and_stays_in_the_graph():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x.clone()
    assert y.requires_grad and not np.shares_memory(y.numpy(), x.numpy())
    (y * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]


# -- creation -----------------------------------------------------------------------------------
def test_creation_functions():
    np.testing.assert_array_equal(gg.eye(2, 3).numpy(), np.eye(2, 3))
    assert gg.eye(3).dtype == gg.float32
    np.testing.assert_allclose(gg.linspace(0, 1, 5).numpy(), np.linspace(0, 1, 5))
    np.testing.assert_allclose(gg.logspace(0, 2, 3, base=2).numpy(), 2.0 ** np.linspace(0, 2, 3))
    assert gg.linspace(0, 10, 4, dtype=gg.int64).tolist() == [int(v) for v in
                                                              np.linspace(0, 10, 4)]
    r = gg.randint(3, 7, (100,))
    assert r.dtype == gg.int64 and 3 <= r.numpy().min() and r.numpy().max() < 7
    assert gg.randint(5, (2, 2)).shape == (2, 2)
    x = gg.zeros(2, 3, dtype=gg.float64)
    for f in (gg.rand_like, gg.randn_like, gg.empty_like):
        assert f(x).shape == (2, 3) and f(x).dtype == gg.float64
    assert sorted(gg.randperm(5).tolist()) == list(range(5))
    assert gg.arange(3, dtype=gg.float64).dtype == gg.float64
    with pytest.raises(TypeError, match="only floating-point"):
        gg.randint(0, 2, (2,), requires_grad=True)


def test_random_creation_uses_the_device_generator_and_leaves_numpy_alone():
    state = np.random.get_state()[1].copy()
    gg.manual_seed(11)
    first = (gg.randint(0, 100, (8,)).tolist(), gg.rand_like(gg.zeros(3)).tolist())
    gg.manual_seed(11)
    again = (gg.randint(0, 100, (8,)).tolist(), gg.rand_like(gg.zeros(3)).tolist())
    assert first == again
    np.testing.assert_array_equal(np.random.get_state()[1], state)


def test_from_numpy_shares_memory_both_ways():
    a = np.zeros(3, dtype=np.float64)
    t = gg.from_numpy(a)
    assert t.dtype == gg.float64 and t.device == "cpu"
    a[0] = 5.0
    assert t[0].item() == 5.0
    t.data[1] = 7.0
    assert a[1] == 7.0
    with pytest.raises(TypeError, match="numpy.ndarray"):
        gg.from_numpy([1, 2])
