"""The host BLAS axpy: one rounding where it runs, and a refusal (y untouched) for every
pair of arrays it cannot take."""
import numpy as np
import pytest

from gpugrad.kernels import host_blas

pytestmark = pytest.mark.skipif(not host_blas.available(np.float32),
                                reason="this NumPy's BLAS has no axpy that rounds once")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("n", [1, 7, 8, 31, 33, 1000, 100_003])
def test_axpy_rounds_once_for_every_size(dtype, n):
    """Against the product in float64 (exact for float32 operands) added and rounded; in
    float64, against the same where the product of the random operands is exact."""
    rng = np.random.default_rng(n)
    if dtype == np.float32:
        x = rng.standard_normal(n).astype(dtype)
        y = rng.standard_normal(n).astype(dtype)
        alpha = -0.0137
        expected = (y.astype(np.float64) + np.float64(np.float32(alpha)) * x).astype(dtype)
    else:
        # 26-bit operands: their products are exact in float64, so one rounding is the sum's
        x = np.round(rng.standard_normal(n) * 2 ** 20) / 2 ** 20
        y = rng.standard_normal(n)
        alpha = 0.75
        expected = y + alpha * x
    assert host_blas.axpy(alpha, x, y)
    assert y.tobytes() == expected.tobytes()


def test_axpy_refuses_what_it_cannot_take_and_leaves_y_alone():
    x = np.arange(12, dtype=np.float32)
    cases = [
        (x[::2], np.ones(6, np.float32)),                     # strided x
        (np.ones(6, np.float32), np.ones(12, np.float32)[::2]),  # strided y
        (x, np.ones(12, np.float64)),                          # mixed dtypes
        (x, np.ones(11, np.float32)),                          # mixed shapes
        (x.reshape(3, 4), np.ones(12, np.float32)),           # same size, other shape
        (x.astype(np.float16), np.ones(12, np.float16)),       # no half-precision axpy
        (x[1:], x[:-1]),                                        # overlapping
        (x.tolist(), np.ones(12, np.float32)),                 # not an array
    ]
    for a, y in cases:
        before = y.copy()
        assert not host_blas.axpy(2.0, a, y)
        assert y.tobytes() == before.tobytes()
    frozen = np.ones(12, np.float32)
    frozen.flags.writeable = False
    assert not host_blas.axpy(2.0, x, frozen)


def test_axpy_reads_a_read_only_x():
    x = np.arange(5, dtype=np.float32)
    x.flags.writeable = False
    y = np.ones(5, np.float32)
    assert host_blas.axpy(2.0, x, y)
    assert y.tolist() == [1.0, 3.0, 5.0, 7.0, 9.0]


def test_a_bound_update_is_axpy_on_the_arrays_it_was_given():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(1001).astype(np.float32)
    y = rng.standard_normal(1001).astype(np.float32)
    expected = y.copy()
    update = host_blas.bound(x, y)
    for alpha in (-0.01, 0.3):
        assert host_blas.axpy(alpha, x, expected)
        update(alpha)
        assert y.tobytes() == expected.tobytes()
    assert host_blas.bound(x[::2], y[:501]) is None
    assert host_blas.bound(x, y.astype(np.float64)) is None
    assert host_blas.bound(x[1:], x[:-1]) is None
    assert host_blas.bound(x[:0], y[:0]) is None
