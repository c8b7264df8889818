"""PyTorch's nansum, nanmean, median, nanmedian, mode, unique, unique_consecutive and
scatter_reduce: values, indices, options and errors by hand and against NumPy (no torch
needed), gradients against central differences, gg.compile's treatment of each, and then
the same against PyTorch over random cases (skipped where torch is not installed)."""
import numpy as np
import pytest
from op_table import _np_scatter_reduce

import gpugrad as gg
from gpugrad.ops import scatter_reduction as sr_module

NAN = float("nan")


def _t(a, **kw):
    return gg.tensor(np.asarray(a, dtype=np.float64), **kw)


def _same(a, b):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# -- nansum, nanmean -----------------------------------------------------------------------------
def test_nansum_counts_nans_as_zero_over_dims():
    a = np.array([[1.0, NAN, 3.0], [NAN, NAN, NAN]])
    x = _t(a)
    assert gg.nansum(x).item() == 4.0
    _same(x.nansum(1), [4.0, 0.0])
    _same(gg.nansum(x, -2, keepdim=True), [[1.0, 0.0, 3.0]])
    _same(gg.nansum(x, dim=(0, 1)), np.nansum(a))
    assert gg.nansum(x, axis=0, keepdims=True).shape == (1, 3)
    assert gg.nansum(gg.zeros(0, 3), 0).tolist() == [0.0, 0.0, 0.0]


def test_nansum_of_integers_and_bools_is_an_int64_sum():
    assert gg.nansum(gg.tensor([1, 2], dtype=gg.int32)).dtype == gg.int64
    s = gg.nansum(gg.tensor([True, True, False]))
    assert s.dtype == gg.int64 and s.item() == 2
    assert gg.nansum(_t([1.5, 2.5]), dtype=gg.int64).item() == 3      # cast, then summed
    assert gg.nansum(gg.tensor([1.0, NAN]), dtype=gg.float64).dtype == gg.float64


def test_nanmean_skips_nans_and_gives_nan_for_an_all_nan_slice():
    a = np.array([[1.0, NAN, 2.0], [NAN, NAN, NAN]])
    with np.errstate(invalid="ignore"):
        out = gg.nanmean(_t(a), 1).numpy()
    assert out[0] == 1.5 and np.isnan(out[1])
    assert _t(a).nanmean().item() == 1.5
    with np.errstate(invalid="ignore"):
        _same(gg.nanmean(_t(a), 0, keepdim=True).shape, (1, 3))
    with np.errstate(invalid="ignore"):
        assert np.isnan(gg.nanmean(gg.zeros(0)).item())


def test_nanmean_refuses_integers_naming_the_dtype_as_pytorch():
    with pytest.raises(TypeError, match="nanmean.*floating point.*int64"):
        gg.nanmean(gg.tensor([1, 2]))
    with pytest.raises(TypeError, match="int64"):          # PyTorch checks before dtype=
        gg.nanmean(gg.tensor([1, 2]), dtype=gg.float64)
    assert gg.nanmean(gg.tensor([1, 2]).double()).item() == 1.5


def test_nan_reduction_gradients_skip_the_nans():
    x = _t([[1.0, NAN, 3.0], [NAN, 5.0, NAN]], requires_grad=True)
    gg.nansum(x).backward()
    _same(x.grad, [[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    x.grad = None
    (gg.nanmean(x, 1) * _t([2.0, 3.0])).sum().backward()
    _same(x.grad, [[1.0, 0.0, 1.0], [0.0, 3.0, 0.0]])
    # an all-NaN slice: NaN at its NaNs, as PyTorch's 1/0 times a 0 mask gives (a 0 there
    # would hide the NaN mean from the gradients); forward mode selects, 0 at the NaNs
    y = _t([[NAN, NAN], [1.0, NAN]], requires_grad=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        gg.nanmean(y, 1).sum().backward()
        tangent = _t([[1.0, 1.0], [2.0, np.inf]])
        jvp = gg.jvp(lambda a: gg.nansum(a, 1), (y.detach(),), (tangent,))[1]
    _same(y.grad, [[NAN, NAN], [1.0, 0.0]])
    _same(jvp, [0.0, 2.0])
    # an infinite cotangent meets the mask as a product: NaN at the NaNs
    z = _t([1.0, NAN], requires_grad=True)
    with np.errstate(invalid="ignore"):
        gg.nansum(z).backward(_t(np.inf))
    _same(z.grad, [np.inf, NAN])


def test_nan_reductions_are_differentiable_on_random_shapes():
    rng = np.random.default_rng(0)
    for shape in [(1, 3), (2, 1, 4), (3,)]:
        a = rng.uniform(-2, 2, size=shape)
        mask = gg.tensor(rng.random(shape) < 0.3)
        assert gg.gradcheck(lambda x, m=mask: gg.nansum(x.masked_fill(m, NAN), -1),
                            [_t(a, requires_grad=True)])
        keep = mask.numpy().copy()
        keep.reshape(-1)[0] = False
        kept = gg.tensor(keep)
        assert gg.gradcheck(lambda x, m=kept: gg.nanmean(x.masked_fill(m, NAN)),
                            [_t(a, requires_grad=True)])


# -- median, nanmedian ---------------------------------------------------------------------------
def test_median_is_the_lower_middle_value_and_nan_propagates():
    assert gg.median(_t([3.0, 1.0, 2.0, 4.0])).item() == 2.0
    assert gg.median(_t([5.0, 1.0, 2.0])).item() == 2.0
    assert np.isnan(gg.median(_t([1.0, NAN, 2.0])).item())
    assert gg.nanmedian(_t([1.0, NAN, 2.0, 5.0])).item() == 2.0
    assert np.isnan(gg.nanmedian(_t([NAN, NAN])).item())
    assert np.isnan(gg.median(gg.zeros(0)).item())
    m = gg.median(gg.tensor([3, 1, 2, 4]))
    assert m.dtype == gg.int64 and m.item() == 2
    with pytest.raises(TypeError, match="median.*bool"):
        gg.median(gg.tensor([True, False]))


def test_median_along_a_dim_against_numpy():
    rng = np.random.default_rng(1)
    for shape, dim in [((4, 5), 1), ((3, 1, 4), 0), ((2, 3, 6), -1), ((5,), 0)]:
        a = rng.standard_normal(shape)
        values, indices = gg.median(_t(a), dim)
        n = a.shape[dim]
        expect = np.take(np.sort(a, axis=dim), (n - 1) // 2, axis=dim)
        _same(values, expect)
        _same(np.take_along_axis(a, np.expand_dims(indices.numpy(), dim), dim).squeeze(dim),
              expect)
        kept = _t(a).median(dim, keepdim=True)
        assert kept.values.shape == kept.indices.shape == np.expand_dims(expect, dim).shape


def test_median_ties_take_the_index_of_a_stable_sort():
    v, i = gg.median(_t([2.0, 2.0, 1.0, 1.0]), 0)       # sorted: 1(2) 1(3) 2(0) 2(1)
    assert (v.item(), i.item()) == (1.0, 3)
    v, i = gg.median(_t([[1.0, 2.0, 2.0, 3.0], [5.0, 5.0, 5.0, 1.0]]), 1)
    _same(v, [2.0, 5.0])
    _same(i, [1, 0])
    r = gg.median(_t([2.0, 1.0, 2.0, 2.0, 3.0]), 0)
    assert type(r).__name__ == "median" and r.indices.item() == 2


def test_median_along_a_dim_with_nans():
    v, i = gg.median(_t([1.0, NAN, 2.0, NAN]), 0)       # NaN, at the first NaN
    assert np.isnan(v.item()) and i.item() == 1
    v, i = gg.nanmedian(_t([1.0, NAN, 2.0, NAN]), 0)
    assert (v.item(), i.item()) == (1.0, 0)
    r = gg.nanmedian(_t([[NAN, NAN], [1.0, NAN]]), 1)
    assert type(r).__name__ == "nanmedian"
    assert np.isnan(r.values[0].item()) and r.values[1].item() == 1.0
    _same(r.indices, [0, 0])


def test_median_edge_shapes_and_errors():
    v, i = gg.median(_t(3.0), -1, keepdim=True)
    assert v.item() == 3.0 and i.item() == 0 and v.shape == ()
    assert gg.median(gg.zeros(0, 3), 1).values.shape == (0,)
    with pytest.raises(IndexError, match="median.*dim 0.*non-zero size"):
        gg.median(gg.zeros(0, 3), 0)
    with pytest.raises(IndexError, match="out of range"):
        gg.median(gg.zeros(2, 3), 2)
    assert gg.median(_t([1.0, 2.0, 3.0]), 0).values.item() == 2.0    # still usable


def test_median_gradients_split_ties_and_follow_nans():
    x = _t([1.0, 2.0, 2.0, 3.0, 2.0], requires_grad=True)
    gg.median(x).backward()
    np.testing.assert_allclose(x.grad.numpy(), [0, 1 / 3, 1 / 3, 0, 1 / 3])
    x = _t([1.0, NAN, 2.0], requires_grad=True)
    gg.median(x).backward()
    _same(x.grad, [0.0, 1.0, 0.0])
    x = _t([NAN, NAN], requires_grad=True)
    gg.nanmedian(x).backward()
    _same(x.grad, [0.5, 0.5])
    x = _t([1.0, 2.0, 2.0, 3.0], requires_grad=True)
    gg.median(x, 0).values.backward()                  # along a dim: the returned index
    _same(x.grad, [0.0, 1.0, 0.0, 0.0])


def test_median_jvp_matches_its_vjp():
    x = _t([4.0, 1.0, 3.0, 2.0, 5.0])
    t = _t([0.1, 0.2, 0.3, 0.4, 0.5])
    _, tangent = gg.jvp(gg.median, (x,), (t,))
    assert tangent.item() == pytest.approx(0.3)
    assert gg.gradcheck(lambda v: gg.median(v) * gg.nanmedian(v, 0).values,
                        [_t([0.3, -1.2, 2.5, 0.9], requires_grad=True)])


# -- mode ----------------------------------------------------------------------------------------
def test_mode_is_the_smallest_most_frequent_value_at_its_last_occurrence():
    for data, value, index in [([1, 2, 2, 3, 3], 2, 2), ([3, 2, 3, 2, 1], 2, 3),
                               ([5, 1, 5, 1, 5, 1], 1, 5), ([4, 3, 2, 1], 1, 3),
                               ([2, 2, 1, 2], 2, 3)]:
        r = gg.mode(_t(data))
        assert type(r).__name__ == "mode" and (r.values.item(), r.indices.item()) == (value, index)


def test_mode_along_dims_keepdim_and_edges():
    r = gg.mode(gg.tensor([[1, 1, 2], [3, 2, 2]]), 0)
    _same(r.values, [1, 1, 2])
    _same(r.indices, [0, 0, 1])
    r = gg.tensor([[1, 1, 2], [3, 2, 2]]).mode(keepdim=True)
    _same(r.values, [[1], [2]])
    _same(r.indices, [[1], [2]])
    assert gg.mode(gg.tensor([True, False, True])).indices.item() == 2
    v, i = gg.mode(_t(3.0))
    assert v.item() == 3.0 and i.item() == 0
    assert gg.mode(gg.zeros(3, 0), 0).values.shape == (0,)
    with pytest.raises(IndexError, match="mode.*non-zero size"):
        gg.mode(gg.zeros(0, 3), 0)
    v, i = gg.mode(_t([NAN, 1.0, NAN]))                 # NaNs count as one value here
    assert np.isnan(v.item()) and i.item() == 2


def test_mode_random_rows_against_numpy_counts():
    rng = np.random.default_rng(2)
    a = rng.integers(0, 4, size=(20, 9)).astype(np.float64)
    v, i = gg.mode(_t(a), 1)
    for row, value, index in zip(a, v.numpy(), i.numpy()):
        values, counts = np.unique(row, return_counts=True)
        assert value == values[np.argmax(counts)]
        assert index == np.flatnonzero(row == value)[-1]


def test_mode_gradient_goes_to_the_returned_index():
    x = _t([[2.0, 1.0, 2.0, 3.0], [0.5, 0.5, 0.7, 0.7]], requires_grad=True)
    gg.mode(x, 1).values.sum().backward()
    _same(x.grad, [[0, 0, 1, 0], [0, 1, 0, 0]])


# -- unique, unique_consecutive -----------------------------------------------------------------
def test_unique_against_numpy():
    rng = np.random.default_rng(3)
    a = rng.integers(-3, 4, size=(4, 5))
    u, inv, cnt = gg.unique(gg.tensor(a), return_inverse=True, return_counts=True)
    nu, ninv, ncnt = np.unique(a, return_inverse=True, return_counts=True)
    _same(u, nu)
    _same(inv, ninv.reshape(a.shape))
    _same(cnt, ncnt)
    assert inv.shape == a.shape and u.dtype == gg.int64 and inv.dtype == cnt.dtype == gg.int64
    _same(gg.tensor(a).unique(sorted=False), nu)        # sorted anyway
    for dim in (0, 1, -1):
        rows = rng.integers(0, 2, size=(6, 3)) if dim == 0 else rng.integers(0, 2, size=(3, 6))
        u, inv, cnt = gg.unique(gg.tensor(rows), dim=dim, return_inverse=True, return_counts=True)
        nu, ninv, ncnt = np.unique(rows, axis=dim, return_inverse=True, return_counts=True)
        _same(u, nu)
        _same(inv, ninv.reshape(-1))
        _same(cnt, ncnt)


def test_unique_consecutive_keeps_runs_in_order():
    u, inv, cnt = gg.unique_consecutive(gg.tensor([1, 1, 2, 2, 3, 1, 1, 2]), return_inverse=True,
                                        return_counts=True)
    _same(u, [1, 2, 3, 1, 2])
    _same(inv, [0, 0, 1, 1, 2, 3, 3, 4])
    _same(cnt, [2, 2, 1, 2, 1])
    u, inv, cnt = gg.tensor([[1, 2], [1, 2], [0, 5], [1, 2]]).unique_consecutive(
        dim=0, return_inverse=True, return_counts=True)
    _same(u, [[1, 2], [0, 5], [1, 2]])
    _same(inv, [0, 0, 1, 2])
    _same(cnt, [2, 1, 1])


def test_unique_edges_nans_and_errors():
    u, inv, cnt = gg.unique(_t([NAN, 1.0, NAN]), return_inverse=True, return_counts=True)
    assert u.numpy()[0] == 1.0 and np.isnan(u.numpy()[1:]).all()      # each NaN distinct
    _same(inv, [1, 0, 2])
    _same(cnt, [1, 1, 1])
    u, inv = gg.unique(_t(3.0), return_inverse=True)
    assert u.shape == (1,) and inv.shape == () and inv.item() == 0
    u, inv, cnt = gg.unique(gg.zeros(0, 3), dim=0, return_inverse=True, return_counts=True)
    assert u.shape == (0, 3) and inv.shape == (0,) and cnt.shape == (0,)
    _same(gg.unique(gg.tensor([True, False, True])), [False, True])
    with pytest.raises(ValueError, match="0 sized dimensions"):
        gg.unique(gg.zeros(3, 0), dim=0)
    with pytest.raises(IndexError, match="0-d"):
        gg.unique(_t(3.0), dim=0)


def test_unique_is_not_differentiable_as_in_pytorch():
    x = _t([3.0, 1.0, 3.0], requires_grad=True)
    u = gg.unique(x)
    assert u.requires_grad
    with pytest.raises(NotImplementedError, match="derivative for 'unique' is not implemented"):
        u.sum().backward()
    with pytest.raises(NotImplementedError, match="unique"):
        gg.jvp(gg.unique, (x.detach(),), (gg.ones_like(x),))
    assert not gg.unique(gg.tensor([1, 1])).requires_grad
    (x * 2).sum().backward()                             # the engine is still usable
    _same(x.grad, [2.0, 2.0, 2.0])


# -- scatter_reduce -----------------------------------------------------------------------------
REDUCES = ["sum", "prod", "mean", "amax", "amin"]


def _sr_case(rng, shape, dim):
    x = rng.standard_normal(shape)
    src_shape = list(shape)
    src_shape[dim] += 2
    src = rng.standard_normal(src_shape)
    index = rng.integers(0, shape[dim], size=tuple(src_shape))
    return x, src, index


@pytest.mark.parametrize("reduce", REDUCES)
@pytest.mark.parametrize("include_self", [True, False])
def test_scatter_reduce_against_its_definition(reduce, include_self):
    rng = np.random.default_rng(4)
    for shape, dim in [((4,), 0), ((3, 4), 1), ((3, 1, 2), 0), ((2, 3, 2), -1)]:
        x, src, index = _sr_case(rng, shape, dim % len(shape))
        out = gg.scatter_reduce(_t(x), dim, gg.tensor(index), _t(src), reduce,
                                include_self=include_self)
        np.testing.assert_allclose(out.numpy(), _np_scatter_reduce(
            x, index, src, dim % len(shape), reduce, include_self), rtol=1e-12)


def test_scatter_reduce_examples_by_hand():
    x = _t([1.0, 2.0, 3.0, 4.0])
    src = _t([5.0, 6.0, 7.0, 8.0, 9.0])
    idx = gg.tensor([0, 1, 0, 1, 2])
    _same(x.scatter_reduce(0, idx, src, "sum"), [13, 16, 12, 4])
    _same(x.scatter_reduce(0, idx, src, "prod", include_self=False), [35, 48, 9, 4])
    np.testing.assert_allclose(x.scatter_reduce(0, idx, src, "mean").numpy(),
                               [13 / 3, 16 / 3, 6, 4])
    _same(x.scatter_reduce(0, idx, src, "amin", include_self=False), [5, 6, 9, 4])
    _same(x.scatter_reduce(0, idx, src, "max"), [7, 8, 9, 4])      # PyTorch's aliases too
    _same(x.scatter_reduce(0, idx, src, "min"), [1, 2, 3, 4])
    # integer means round down, as PyTorch's
    ints = gg.tensor([1, 2, 3, 4]).scatter_reduce(0, idx, gg.tensor([-5, -6, -7, -8, -9]), "mean")
    _same(ints, [-4, -4, -3, 4])
    assert gg.scatter_reduce(_t(2.0), 0, gg.tensor(0), _t(3.0), "prod").item() == 6.0
    _same(x.scatter_reduce(0, gg.tensor([], dtype=gg.int64), src, "sum"), x)


def test_scatter_reduce_errors_name_the_problem():
    x = _t([1.0, 2.0, 3.0, 4.0])
    src = _t([5.0, 6.0, 7.0, 8.0, 9.0])
    idx = gg.tensor([0, 1, 0, 1, 2])
    with pytest.raises(ValueError, match="sum, prod, mean, amax or amin, got 'add'"):
        x.scatter_reduce(0, idx, src, "add")
    with pytest.raises(TypeError, match="dtype"):
        x.scatter_reduce(0, idx, src.float(), "sum")
    with pytest.raises(TypeError, match="integer"):
        x.scatter_reduce(0, idx.float(), src, "sum")
    with pytest.raises(IndexError, match="index 9 is out of bounds"):
        x.scatter_reduce(0, gg.tensor([0, 9]), src, "sum")
    with pytest.raises(ValueError, match=r"does not fit src of shape \(3,\)"):
        x.scatter_reduce(0, idx, src[:3], "sum")
    with pytest.raises(ValueError, match="same number of dimensions"):
        x.scatter_reduce(0, gg.tensor([[0, 1]]), src, "sum")
    assert x.scatter_reduce(0, idx, src, "sum").sum().item() == 45.0     # still usable


def test_scatter_reduce_in_place():
    x = _t([1.0, 2.0, 3.0, 4.0])
    y = x.scatter_reduce_(0, gg.tensor([0, 0, 3]), _t([5.0, -1.0, 2.0]), "amax")
    assert y is x
    _same(x, [5.0, 2.0, 3.0, 4.0])
    w = _t([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf"):
        w.scatter_reduce_(0, gg.tensor([0]), _t([3.0]), "sum")
    h = w * 1.0
    h.scatter_reduce_(0, gg.tensor([0, 0]), _t([3.0, 4.0]), "prod")
    h.sum().backward()
    _same(w.grad, [12.0, 1.0])


def test_scatter_reduce_gradients_by_hand():
    def grads(x, s, idx, reduce, include_self):
        x, s = _t(x, requires_grad=True), _t(s, requires_grad=True)
        out = gg.scatter_reduce(x, 0, gg.tensor(idx), s, reduce, include_self=include_self)
        out.sum().backward()
        return x.grad.numpy(), s.grad.numpy()
    # amax ties share, x only where it takes part (PyTorch also counts an excluded x that
    # happens to equal the result: 1/3 each there, summing to 2/3)
    gx, gs = grads([5.0, 1.0], [5.0, 3.0, 5.0], [0, 0, 0], "amax", True)
    np.testing.assert_allclose(gx, [1 / 3, 1])
    np.testing.assert_allclose(gs, [1 / 3, 0, 1 / 3])
    gx, gs = grads([5.0, 1.0], [5.0, 3.0, 5.0], [0, 0, 0], "amax", False)
    np.testing.assert_allclose(gx, [0, 1])
    np.testing.assert_allclose(gs, [0.5, 0, 0.5])
    # prod with zeros: the product of the others, exactly
    gx, gs = grads([0.0, 2.0], [0.0, 3.0, 2.0], [0, 0, 1], "prod", True)
    _same(gx, [0.0, 2.0])
    _same(gs, [0.0, 0.0, 2.0])
    gx, gs = grads([0.0, 2.0], [0.0, 3.0, 2.0], [0, 0, 1], "prod", False)
    _same(gx, [0.0, 0.0])
    _same(gs, [3.0, 0.0, 1.0])
    gx, gs = grads([4.0, 2.0], [0.0, 0.0, 2.0], [0, 0, 1], "prod", True)
    _same(gx, [0.0, 2.0])
    _same(gs, [0.0, 0.0, 2.0])
    gx, gs = grads([4.0, 2.0], [1.0, 2.0, 2.0], [0, 0, 1], "mean", True)
    np.testing.assert_allclose(gx, [1 / 3, 1 / 2])
    np.testing.assert_allclose(gs, [1 / 3, 1 / 3, 1 / 2])


@pytest.mark.parametrize("reduce", REDUCES)
def test_scatter_reduce_gradients_against_differences(reduce):
    rng = np.random.default_rng(5)
    for shape, dim in [((3,), 0), ((2, 3), 1), ((3, 1, 2), 0)]:
        x, src, index = _sr_case(rng, shape, dim)
        if reduce in ("amax", "amin"):                    # no ties: distinct magnitudes
            n = x.size + src.size
            vals = (0.2 + 0.17 * rng.permutation(n)) * rng.choice([-1, 1], size=n)
            x, src = vals[:x.size].reshape(x.shape), vals[x.size:].reshape(src.shape)
        idx = gg.tensor(index)
        for include_self in (True, False):
            def fn(a, b, dim=dim, idx=idx, include_self=include_self):
                return gg.scatter_reduce(a, dim, idx, b, reduce, include_self=include_self)
            assert gg.gradcheck(fn, [_t(x, requires_grad=True), _t(src, requires_grad=True)])


def test_scatter_reduce_in_rounds_equals_ufunc_at():
    """The path for array modules without ufunc.at (CuPy's multiply), on the CPU."""
    rng = np.random.default_rng(6)
    for how in ("add", "multiply", "maximum", "minimum"):
        target = rng.standard_normal((3, 4))
        index = (rng.integers(0, 3, size=(5, 4)), np.arange(4)[None, :])
        values = rng.standard_normal((5, 4))
        expected = target.copy()
        getattr(np, how).at(expected, index, values)
        sr_module._reduce_in_rounds(np, getattr(np, how), target, index, values)
        np.testing.assert_allclose(target, expected, rtol=1e-15)


# -- gg.compile ----------------------------------------------------------------------------------
def _compiled_and_eager(body, inputs):
    """Eager and compiled runs of one SGD step per batch from the same weights: losses
    and weights after each step."""
    results = []
    for compiled in (False, True):
        w = gg.tensor(np.linspace(0.5, 1.5, 4), requires_grad=True)
        opt = gg.optim.SGD([w], lr=0.1)

        def step(*args, w=w, opt=opt):
            opt.zero_grad()
            loss = body(w, *args)
            loss.backward()
            opt.step()
            return loss
        fn = gg.compile(step) if compiled else step
        results.append([(fn(*args).numpy().copy(), w.numpy().copy()) for args in inputs])
    return results


def test_scatter_reduce_and_median_replay_with_eagers_bits_on_new_data():
    rng = np.random.default_rng(8)
    inputs = [(gg.tensor(rng.standard_normal((3, 4))), gg.tensor(rng.integers(0, 4, (3, 5))),
               gg.tensor(rng.standard_normal((3, 5)))) for _ in range(4)]

    def body(w, x, idx, s):
        y = x * w
        total = gg.median(y) + gg.nansum(y) * 0.5 + gg.nanmean(y)
        for reduce in REDUCES:
            for include_self in (True, False):
                total = total + gg.scatter_reduce(y, 1, idx, s * 0.5, reduce,
                                                  include_self=include_self).sum()
        return total
    eager, compiled = _compiled_and_eager(body, inputs)
    for (le, we), (lc, wc) in zip(eager, compiled):
        _same(le, lc)
        _same(we, wc)
    assert len({float(loss) for loss, _ in eager}) == len(eager)   # the data did change


@pytest.mark.parametrize("name, body", [
    ("median(dim)", lambda w, x: gg.median(x * w, 1).values.sum()),
    ("nanmedian(dim)", lambda w, x: gg.nanmedian(x * w, 0)[0].sum()),
    ("mode", lambda w, x: gg.mode(x * w).values.sum()),
    ("unique", lambda w, x: (x * w).sum() * gg.unique(x).sum()),
])
def test_positions_from_the_data_are_refused_while_recording(name, body):
    x = gg.tensor(np.random.default_rng(9).standard_normal((3, 4)))
    w = gg.ones(4, requires_grad=True)

    def step(x):
        w.grad = None
        loss = body(w, x)
        loss.backward()
        return loss
    step(x)                                               # eager: fine
    with pytest.raises(RuntimeError, match=r"gg\.compile") as err:
        gg.compile(step)(x)
    assert name.split("(")[0] in str(err.value)
    assert np.isfinite(step(x).item())                   # usable afterwards


# -- against PyTorch -----------------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


def test_nan_reductions_match_torch_with_gradients():
    torch = _torch()
    rng = np.random.default_rng(10)
    for _ in range(20):
        shape = tuple(int(s) for s in rng.integers(1, 4, size=int(rng.integers(1, 4))))
        a = rng.standard_normal(shape)
        a[rng.random(shape) < 0.3] = np.nan
        dim = int(rng.integers(-len(shape), len(shape)))
        keep = bool(rng.random() < 0.5)
        u = rng.uniform(0.5, 1.5, size=np.sum(a, axis=dim, keepdims=keep).shape)
        for name in ("nansum", "nanmean"):
            x = _t(a, requires_grad=True)
            with np.errstate(invalid="ignore", divide="ignore"):
                out = getattr(gg, name)(x, dim, keepdim=keep)
                (out * _t(u)).sum().backward()
            xt = torch.tensor(a, requires_grad=True)
            ot = getattr(torch, name)(xt, dim, keepdim=keep)
            (ot * torch.tensor(u)).sum().backward()
            np.testing.assert_allclose(out.numpy(), ot.detach().numpy(), rtol=1e-12)
            # NaN where PyTorch's is: the all-NaN slices of nanmean
            np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-12)


def test_median_and_mode_match_torch_values_indices_and_gradients():
    torch = _torch()
    rng = np.random.default_rng(11)
    for trial in range(60):
        shape = tuple(int(s) for s in rng.integers(1, 7, size=int(rng.integers(1, 4))))
        a = rng.integers(0, 4, size=shape).astype(np.float64)     # many ties
        if trial % 3 == 0:
            a[rng.random(shape) < 0.25] = np.nan
        dim = int(rng.integers(-len(shape), len(shape)))
        names = ("median", "nanmedian") if trial % 3 == 0 else ("median", "nanmedian", "mode")
        for name in names:
            x = _t(a, requires_grad=True)
            v, i = getattr(gg, name)(x, dim)
            xt = torch.tensor(a, requires_grad=True)
            vt, it = getattr(torch, name)(xt, dim)
            np.testing.assert_array_equal(v.numpy(), vt.detach().numpy())
            if name != "mode" or a.shape[dim] <= 16:
                np.testing.assert_array_equal(i.numpy(), it.numpy(), err_msg=name)
            v.sum().backward()
            vt.sum().backward()
            np.testing.assert_array_equal(x.grad.numpy(), xt.grad.numpy())
        for name in ("median", "nanmedian"):          # over everything
            x = _t(a, requires_grad=True)
            xt = torch.tensor(a, requires_grad=True)
            out, ot = getattr(gg, name)(x), getattr(torch, name)(xt)
            np.testing.assert_array_equal(out.numpy(), ot.detach().numpy())
            out.backward()
            ot.backward()
            np.testing.assert_allclose(x.grad.numpy(), xt.grad.numpy(), rtol=1e-15)


def test_unique_matches_torch():
    torch = _torch()
    rng = np.random.default_rng(12)
    for _ in range(20):
        a = rng.integers(0, 3, size=(int(rng.integers(1, 6)), int(rng.integers(1, 4))))
        for dim in (None, 0, 1):
            for fn in ("unique", "unique_consecutive"):
                ours = getattr(gg, fn)(gg.tensor(a), return_inverse=True, return_counts=True,
                                       dim=dim)
                theirs = getattr(torch, fn)(torch.tensor(a), return_inverse=True,
                                            return_counts=True, dim=dim)
                for o, t in zip(ours, theirs):
                    np.testing.assert_array_equal(o.numpy(), t.numpy(), err_msg=f"{fn} {dim}")


def _reached(shape, dim, index):
    """Where index sends a value, in a tensor of ``shape``."""
    reached = np.zeros(shape, dtype=bool)
    for pos in np.ndindex(*index.shape):
        target = list(pos)
        target[dim] = index[pos]
        if all(t < n for t, n in zip(target, shape)):
            reached[tuple(target)] = True
    return reached


def test_scatter_reduce_matches_torch_values_and_gradients():
    torch = _torch()
    rng = np.random.default_rng(13)
    for trial in range(40):
        shape = tuple(int(s) for s in rng.integers(1, 4, size=int(rng.integers(1, 4))))
        dim = int(rng.integers(0, len(shape)))
        x, src, index = _sr_case(rng, shape, dim)
        if trial % 4 == 0:                      # ties and zeros
            x, src = np.round(x), np.round(src)
        u = rng.uniform(0.5, 1.5, size=shape)
        for reduce in REDUCES:
            for include_self in (True, False):
                a, s = _t(x, requires_grad=True), _t(src, requires_grad=True)
                out = gg.scatter_reduce(a, dim, gg.tensor(index), s, reduce,
                                        include_self=include_self)
                (out * _t(u)).sum().backward()
                at = torch.tensor(x, requires_grad=True)
                st = torch.tensor(src, requires_grad=True)
                ot = at.scatter_reduce(dim, torch.tensor(index), st, reduce,
                                       include_self=include_self)
                (ot * torch.tensor(u)).sum().backward()
                what = f"{reduce} include_self={include_self}"
                np.testing.assert_allclose(out.numpy(), ot.detach().numpy(), rtol=1e-12,
                                           err_msg=what)
                if reduce in ("amax", "amin") and not include_self:
                    reached = _reached(shape, dim, index)
                    if np.any(reached & (x == out.numpy())):
                        continue    # PyTorch counts an excluded x equal to the result
                np.testing.assert_allclose(a.grad.numpy(), at.grad.numpy(), rtol=1e-12,
                                           atol=1e-15, err_msg=what)
                np.testing.assert_allclose(s.grad.numpy(), st.grad.numpy(), rtol=1e-12,
                                           atol=1e-15, err_msg=what)
