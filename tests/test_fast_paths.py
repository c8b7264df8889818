"""The short cuts of the hot paths give what the long way gives: Python numbers beside float
tensors (cached 0-d arrays), saved inputs read as arrays by a backward recording nothing,
the cross-entropy twins' all-labels-valid case, the CPU device's direct NumPy forms."""
import math

import numpy as np
import pytest

import gpugrad as gg
from gpugrad import _methods
from gpugrad.kernels import reference

FLOATS = [np.float16, np.float32, np.float64]
NUMBERS = [0.5, -3.25, 1e-3, 7, -2, 1e30, 3.4e38, 1e300, 70000.0, 2 ** 40]


def _bits(a):
    a = np.asarray(a)
    return a.view(np.dtype(f"u{a.dtype.itemsize}"))


@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("number", NUMBERS)
@pytest.mark.parametrize("name", ["add", "sub", "mul", "truediv"])
def test_a_python_number_gives_numpys_bits_both_sides(dtype, number, name):
    x = np.array([0.1, -2.5, 3.0, 0.0, -0.0, np.inf], dtype)
    t = gg.tensor(x)
    ufunc = {"add": np.add, "sub": np.subtract, "mul": np.multiply,
             "truediv": np.true_divide}[name]
    with np.errstate(all="ignore"):
        for got, want in ((getattr(t, f"__{name}__")(number), ufunc(x, number)),
                          (getattr(t, f"__r{name}__")(number), ufunc(number, x))):
            assert got.dtype == dtype
            np.testing.assert_array_equal(_bits(got.numpy()), _bits(want))


@pytest.mark.parametrize("number", [0.0, -0.0, math.nan, math.inf, -math.inf])
def test_zero_nan_and_inf_stay_python_numbers(number):
    x = np.array([1.0, -1.0, 0.0], np.float32)
    assert not isinstance(_methods._scalar_array(number, x.dtype), np.ndarray)
    with np.errstate(all="ignore"):
        got = (gg.tensor(x) * number).numpy()
        np.testing.assert_array_equal(_bits(got), _bits(x * number))


def test_the_sign_of_a_zero_is_kept():
    x = gg.tensor([1.0, -1.0], dtype=gg.float32)
    assert np.signbit((x * -0.0).numpy()).tolist() == [True, False]
    assert np.signbit((x * 0.0).numpy()).tolist() == [False, True]


def test_a_number_that_overflows_the_dtype_is_not_cached_and_gives_inf():
    assert not isinstance(_methods._scalar_array(1e6, np.dtype(np.float16)), np.ndarray)
    with np.errstate(over="ignore"):
        got = (gg.tensor([1.0], dtype=gg.float16) * 1e6).numpy()
    assert got.dtype == np.float16 and np.isinf(got[0])


def test_the_cache_stays_bounded_and_read_only():
    for i in range(3 * _methods._SCALAR_ARRAYS_MAX):
        gg.tensor([1.0]) * (1.5 + i)
    assert len(_methods._scalar_arrays) <= _methods._SCALAR_ARRAYS_MAX
    arr = _methods._scalar_array(2.5, np.dtype(np.float32))
    with pytest.raises(ValueError):
        arr[...] = 1.0


def test_gradients_through_numbers_match_central_differences():
    def f(x):
        return (((x * 0.5 + 2) / 3.0 - 1.25) * (2.0 - x)).sum()
    x = gg.tensor(np.random.default_rng(0).standard_normal((3, 1, 4)), dtype=gg.float64,
                  requires_grad=True)
    assert gg.gradcheck(f, (x,))
    # and the second derivative, through a recorded backward
    (g,) = gg.autograd.grad(f(x), x, create_graph=True)
    h = gg.autograd.grad(g.sum(), x)[0].numpy()
    np.testing.assert_allclose(h, np.full(x.shape, -2 * 0.5 / 3.0), rtol=1e-12)


def test_a_power_keeps_its_python_exponent():
    x = gg.tensor([0.0, 2.0], dtype=gg.float64, requires_grad=True)
    (x ** 0).sum().backward()
    assert x.grad.numpy().tolist() == [0.0, 0.0]     # d/dx x**0 = 0, also at 0


def test_backward_reads_the_saved_arrays_and_still_sees_in_place_writes():
    a = gg.tensor([1.0, 2.0], requires_grad=True)
    b = a * 1.0
    c = b * b
    b.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        c.sum().backward()
    a = gg.tensor([1.0, 2.0], requires_grad=True)
    b = a * 3.0
    (b * b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), 18 * a.numpy())


@pytest.mark.parametrize("labels", [[0, 3, 1, 2], [0, -100, 1, 2], [-100] * 4])
@pytest.mark.parametrize("mean", [True, False])
def test_cross_entropy_twins_with_and_without_ignored_rows(labels, mean):
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((4, 5)).astype(np.float32)
    lab = np.array(labels)
    keep = lab >= 0
    z = logits - logits.max(-1, keepdims=True)
    lse = np.log(np.exp(z).sum(-1))
    per_row = np.where(keep, lse - z[np.arange(4), np.where(keep, lab, 0)], 0)
    count = keep.sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        want = per_row.sum() / count if mean else per_row.sum()
    got = reference.softmax_xent_fwd(logits, lab, mean)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    g = np.array(2.0, np.float32)
    p = np.exp(z) / np.exp(z).sum(-1, keepdims=True)
    p[np.arange(4), np.where(keep, lab, 0)] -= 1
    p *= keep[:, None] * (2.0 / max(count, 1) if mean else 2.0)
    np.testing.assert_allclose(reference.softmax_xent_bwd(logits, lab, g, mean), p, rtol=1e-5,
                               atol=1e-7)


def test_labels_in_range_reads_negatives_as_out_of_range():
    for dtype in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint64):
        lab = np.array([0, 4, 5, 9], dtype)
        assert reference.labels_in_range(lab, 5).tolist() == [True, True, False, False]
    assert reference.labels_in_range(np.array([-1, -100, 2]), 5).tolist() == [False, False,
                                                                              True]


def test_cpu_device_forms_equal_the_twins():
    dev = gg.device("cpu")
    x = np.linspace(-3, 3, 12, dtype=np.float32).reshape(3, 4)
    for name, args in (("tanh_fwd", (x,)), ("matmul", (x, x.T)),
                       ("matmul", (x.astype(np.float16), x.T.astype(np.float16)))):
        form, twin = dev.function(name), getattr(reference, name)
        assert form is not twin
        np.testing.assert_array_equal(form(*args), twin(*args))
        out = np.empty_like(twin(*args))
        assert form(*args, out=out) is out


def test_a_saved_input_tensor_is_not_kept_alive_and_higher_order_still_flows():
    import gc
    import weakref
    x = gg.tensor([0.5, -1.5, 2.0], dtype=gg.float64, requires_grad=True)
    y = x * 3.0
    z = (y * y * y).sum()           # saves y twice
    ref = weakref.ref(y)
    del y
    gc.collect()
    assert ref() is None            # the node keeps y's array and version, not the object
    (g,) = gg.autograd.grad(z, x, create_graph=True)
    np.testing.assert_allclose(g.numpy(), 81 * x.numpy() ** 2)
    (h,) = gg.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), 162 * x.numpy())


def test_a_saved_input_written_in_place_after_its_object_was_dropped_still_raises():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    alias = y[:]                    # a view shares y's version counter
    z = (y * y).sum()
    del y
    alias.add_(1.0)
    with pytest.raises(RuntimeError, match="modified in place"):
        z.backward()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(0, 4), (1, 5), (3, 1), (128, 10), (37, 513)])
def test_the_host_bias_gradient_is_the_column_sum(shape, dtype):
    """bias_grad runs as a GEMV with ones on the host: the column sums, to the rounding of
    a float sum of that many rows (checked against float64 sums), into ``out`` when given,
    and NaN and infinities carried as a sum carries them."""
    rng = np.random.default_rng(shape[0])
    g = rng.standard_normal(shape).astype(dtype)
    exact = g.astype(np.float64).sum(axis=0)
    eps = np.finfo(dtype).eps
    bound = eps * max(shape[0], 1) * np.abs(g).astype(np.float64).sum(axis=0) + 1e-300
    got = reference.bias_grad(g)
    assert got.dtype == dtype and got.shape == shape[1:]
    assert np.all(np.abs(got - exact) <= bound)
    out = np.full(shape[1:], np.nan, dtype)
    assert reference.bias_grad(g, out=out) is out and out.tobytes() == got.tobytes()
    if shape[0] >= 3:
        g[1, 0], g[2, -1] = np.nan, np.inf
        special = reference.bias_grad(g)
        assert np.isnan(special[0]) and (shape[1] == 1 or special[-1] == np.inf)
