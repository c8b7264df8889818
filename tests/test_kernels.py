"""Every CUDA kernel, through its launcher in kernels/cuda.py, against its NumPy twin.

Two backends run the same tests: the CPU shim (the CUDA C compiled with g++ and run
over fibers on NumPy arrays; needs g++) and a real GPU through CuPy (marked gpu).
Random inputs (never zeros), outputs poisoned with NaN first, sizes that are not
multiples of the block size, float32, float16 and bfloat16.
"""
import numpy as np
import pytest

import gpugrad as gg
from gpugrad.kernels import reference, shim
from gpugrad.ops import ACTIVATIONS

SIZES = [1, 37, 1000, 100_003]
DTYPES = [np.float32, np.float16, gg.bfloat16]
SUFFIXES = ("f32", "f16", "bf16")


def _tol(dtype):
    if dtype == np.float32:
        return dict(rtol=1e-5, atol=1e-6)
    if dtype == np.float16:
        return dict(rtol=2e-2, atol=2e-3)
    return dict(rtol=4e-2, atol=2e-2)       # bfloat16: 8 significant bits


def _sum_rtol(dtype):
    """A sum rounded once to the storage type: half a unit in the last place."""
    return {np.dtype(np.float32): 1e-5, np.dtype(np.float16): 3e-3}.get(np.dtype(dtype), 8e-3)


@pytest.fixture(scope="module", params=[
    pytest.param("shim", marks=pytest.mark.skipif(not shim.available(), reason="no g++")),
    pytest.param("cuda", marks=pytest.mark.gpu)])
def backend(request):
    if request.param == "shim":
        table = shim.kernel_table(max_blocks=4)
        return table, np
    dev = gg.device("cuda")
    return dev.kernels, dev.xp


def _rand(cp, rng, shape, dtype, low=-3.0, high=3.0):
    a = rng.uniform(low, high, size=shape)
    a = np.where(np.abs(a) < 1e-3, 0.5, a).astype(dtype)
    return a, cp.asarray(a)


def _poisoned(cp, shape, dtype):
    return cp.full(shape, np.nan, dtype=dtype)


def _host(cp, a):
    return a if cp is np else cp.asnumpy(a)


def _param_of(act):
    """A row's parameter, away from its default (so that a kernel ignoring it fails)."""
    row = ACTIVATIONS.get(act)
    return () if row is None or row.param is None else (0.37,)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("act", list(ACTIVATIONS))
def test_activation_kernels_match_twins(backend, act, n, dtype):
    k, cp = backend
    rng = np.random.default_rng(n)
    x, xd = _rand(cp, rng, (n,), dtype)
    g, gd = _rand(cp, rng, (n,), dtype)
    params = _param_of(act)
    out = _poisoned(cp, (n,), dtype)
    k.activation_fwd(act, xd, *params, out=out)
    expected = reference.activation_fwd(act, x.astype(np.float32), *params).astype(dtype)
    np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected, **_tol(dtype))
    saved = x if ACTIVATIONS[act].saves == "input" else expected
    out = _poisoned(cp, (n,), dtype)
    k.activation_bwd(act, gd, cp.asarray(saved), *params, out=out)
    expected = reference.activation_bwd(act, g.astype(np.float32), saved.astype(np.float32),
                                        *params)
    np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(3, 5), (129, 64), (1000, 10), (7, 1001)])
@pytest.mark.parametrize("act", ["none", *ACTIVATIONS])
def test_bias_act_kernel_matches_twin(backend, act, shape, dtype):
    k, cp = backend
    rng = np.random.default_rng(shape[0])
    x, xd = _rand(cp, rng, shape, dtype)
    b, bd = _rand(cp, rng, shape[1:], dtype)
    out = _poisoned(cp, shape, dtype)
    k.bias_act_fwd(xd, bd, act, *_param_of(act), out=out)
    expected = reference.bias_act_fwd(x.astype(np.float32), b.astype(np.float32), act,
                                      *_param_of(act))
    np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 3), (5, 37), (1000, 10), (3000, 257), (70, 1536)])
def test_bias_grad_kernel_matches_twin(backend, shape, dtype):
    k, cp = backend
    g, gd = _rand(cp, np.random.default_rng(1), shape, dtype, 0.5, 1.5)
    out = _poisoned(cp, shape[1:], dtype)
    k.bias_grad(gd, out=out)
    expected = g.astype(np.float64).sum(axis=0)
    np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected,
                               rtol=_sum_rtol(dtype))


ROW_SHAPES = [(1, 1), (3, 10), (33, 31), (17, 100), (9, 513), (5, 1024), (4, 1025), (3, 5000)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_family_kernels_match_twins(backend, shape, dtype):
    k, cp = backend
    rng = np.random.default_rng(shape[1])
    x, xd = _rand(cp, rng, shape, dtype)
    g, gd = _rand(cp, rng, shape, dtype)
    x32, g32 = x.astype(np.float32), g.astype(np.float32)
    for name, args, ref_args in (
            ("softmax_fwd", (xd,), (x32,)),
            ("log_softmax_fwd", (xd,), (x32,)),
            ("softmax_bwd", (gd, cp.asarray(reference.softmax_fwd(x32).astype(dtype))),
             (g32, reference.softmax_fwd(x32).astype(dtype).astype(np.float32))),
            ("log_softmax_bwd", (gd, cp.asarray(reference.log_softmax_fwd(x32).astype(dtype))),
             (g32, reference.log_softmax_fwd(x32).astype(dtype).astype(np.float32)))):
        out = _poisoned(cp, shape, dtype)
        getattr(k, name)(*args, out=out)
        expected = getattr(reference, name)(*ref_args)
        np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected,
                                   err_msg=name, **_tol(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_cross_entropy_kernels_match_twins(backend, shape, dtype):
    k, cp = backend
    rng = np.random.default_rng(shape[0])
    z, zd = _rand(cp, rng, shape, dtype)
    labels = rng.integers(0, shape[1], size=shape[0])
    _check_xent_kernels(k, cp, z, zd, labels, dtype)


def _check_xent_kernels(k, cp, z, zd, labels, dtype):
    ld = cp.asarray(labels)
    g = np.asarray(0.7, dtype=dtype)
    for mean in (True, False):
        loss = _poisoned(cp, (), dtype)
        k.softmax_xent_fwd(zd, ld, mean, out=loss)
        expected = reference.softmax_xent_fwd(z.astype(np.float64), labels, mean)
        np.testing.assert_allclose(float(loss), float(expected), err_msg=f"mean={mean}",
                                   **_tol(dtype))
        out = _poisoned(cp, z.shape, dtype)
        k.softmax_xent_bwd(zd, ld, cp.asarray(g), mean, out=out)
        expected = reference.softmax_xent_bwd(z.astype(np.float64), labels,
                                              g.astype(np.float64), mean)
        np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected,
                                   err_msg=f"mean={mean}", **_tol(dtype))


def _xent_float64(z, labels, g, mean):
    """Loss and gradient of the ignore_index cross-entropy, row by row in float64."""
    rows, classes = z.shape
    kept = [i for i in range(rows) if 0 <= labels[i] < classes]
    loss, grad = 0.0, np.zeros((rows, classes))
    for i in kept:
        e = np.exp(z[i] - z[i].max())
        loss -= np.log(e[labels[i]] / e.sum())
        grad[i] = e / e.sum()
        grad[i, labels[i]] -= 1
    if mean:
        loss = loss / len(kept) if kept else np.nan
        grad /= max(len(kept), 1)
    return loss, grad * g


@pytest.mark.parametrize("mean", [True, False])
@pytest.mark.parametrize("labels", [[2, -100, 0, 3, -100], [4, -1, 1, 5, 0],
                                    [-100] * 5, [0, 1, 2, 3, 0]])
def test_softmax_cross_entropy_twins_ignore_labels_out_of_range(labels, mean):
    z = np.random.default_rng(3).normal(size=(5, 4)) * 2
    labels = np.array(labels)
    loss, grad = _xent_float64(z, labels, 0.7, mean)
    np.testing.assert_allclose(reference.softmax_xent_fwd(z.copy(), labels, mean), loss,
                               rtol=1e-12)
    np.testing.assert_allclose(
        reference.softmax_xent_bwd(z, labels, np.asarray(0.7), mean), grad, rtol=1e-12,
        atol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_softmax_cross_entropy_kernels_ignore_labels_out_of_range(backend, shape, dtype):
    """Rows labelled -100 (PyTorch's ignore_index) or C count 0 and get a zero gradient; a
    mean divides by the other rows. The warp and the block (over 1024 columns) variants."""
    k, cp = backend
    rng = np.random.default_rng(shape[0] + 7)
    z, zd = _rand(cp, rng, shape, dtype)
    labels = rng.integers(0, shape[1], size=shape[0])
    labels[::2] = -100
    labels[1::3] = shape[1]
    _check_xent_kernels(k, cp, z, zd, labels, dtype)
    # every row ignored: the mean is nan (as PyTorch's), the sum 0, the gradient 0
    _check_xent_kernels(k, cp, z, zd, np.full(shape[0], -100), dtype)


SGD_CASES = [  # momentum, nesterov, weight decay, maximize
    (0.0, False, 0.0, False), (0.9, False, 0.01, False), (0.9, True, 0.0, False),
    (0.9, False, 0.01, True), (0.0, False, 0.0, True)]
ADAM_CASES = [  # decoupled, amsgrad, maximize
    (False, False, False), (True, False, False), (False, True, False), (True, True, True),
    (False, False, True)]


def _adam_operands(cp, rng, n, dtype):
    p, g, m = (_rand(cp, rng, (n,), dtype) for _ in range(3))
    v = _rand(cp, rng, (n,), dtype, 0.1, 1.0)
    vmax = _rand(cp, rng, (n,), dtype, 0.1, 1.0)      # some above v, some below
    return p, g, m, v, vmax


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 1000, 100_003])
def test_optimizer_kernels_match_twins(backend, n, dtype):
    k, cp = backend
    rng = np.random.default_rng(n)
    tol = _tol(dtype)
    for momentum, nesterov, wd, maximize in SGD_CASES:
        p, pd = _rand(cp, rng, (n,), dtype)
        g, gd = _rand(cp, rng, (n,), dtype)
        buf, bufd = _rand(cp, rng, (n,), dtype)
        p64, buf64 = p.astype(np.float64), buf.astype(np.float64)
        k.sgd_update(pd, gd, bufd if momentum else None, 0.1, momentum, 0.0, wd, nesterov,
                     False, maximize)
        reference.sgd_update(p64, g.astype(np.float64), buf64 if momentum else None, 0.1,
                             momentum, 0.0, wd, nesterov, False, maximize)
        np.testing.assert_allclose(_host(cp, pd).astype(np.float64), p64, **tol)
    for decoupled, amsgrad, maximize in ADAM_CASES:
        (p, pd), (g, gd), (m, md), (v, vd), (vm, vmd) = _adam_operands(cp, rng, n, dtype)
        p64, m64, v64, vm64 = (a.astype(np.float64) for a in (p, m, v, vm))
        k.adam_update(pd, gd, md, vd, 1e-2, 0.9, 0.999, 1e-8, 0.01, 3, decoupled,
                      vmd if amsgrad else None, maximize)
        reference.adam_update(p64, g.astype(np.float64), m64, v64, 1e-2, 0.9, 0.999, 1e-8,
                              0.01, 3, decoupled, vm64 if amsgrad else None, maximize)
        for dev_arr, host in ((pd, p64), (md, m64), (vd, v64), (vmd, vm64)):
            np.testing.assert_allclose(_host(cp, dev_arr).astype(np.float64), host, **tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", [1, 37, 100_003])
def test_device_scalar_update_kernels_equal_the_argument_forms_bit_for_bit(backend, n, dtype):
    """The ``*_dev`` kernels gg.compile captures read their scalars from a float64 buffer
    on the device: they give bit for bit what the eager kernels give with the scalars as
    arguments, match the twins, and read the buffer when they run (a changed buffer,
    a changed update)."""
    k, cp = backend
    rng = np.random.default_rng(n + 1)
    tol = _tol(dtype)
    for momentum, nesterov, wd, maximize in SGD_CASES:
        for first in (True, False):
            (p, pa), (g, ga), (buf, bufa) = (_rand(cp, rng, (n,), dtype) for _ in range(3))
            pb, bufb = cp.array(pa), cp.array(bufa)
            p64, buf64 = p.astype(np.float64), buf.astype(np.float64)
            scalars = (0.1 / 3, momentum, 0.25 if not nesterov else 0.0, wd)
            k.sgd_update(pa, ga, bufa if momentum else None, *scalars, nesterov, first,
                         maximize)
            k.sgd_update_dev(pb, ga, bufb if momentum else None,
                             cp.asarray(np.array(scalars)), nesterov, first, maximize)
            assert _host(cp, pa).tobytes() == _host(cp, pb).tobytes()
            assert _host(cp, bufa).tobytes() == _host(cp, bufb).tobytes()
            reference.sgd_update_dev(p64, g.astype(np.float64), buf64 if momentum else None,
                                     np.array(scalars), nesterov, first, maximize)
            np.testing.assert_allclose(_host(cp, pb).astype(np.float64), p64, **tol)
    for decoupled, amsgrad, maximize in ADAM_CASES:
        for step in (1, 7):
            operands = _adam_operands(cp, rng, n, dtype)
            (p, pa), (g, ga), (m, ma), (v, va), (vm, vma) = operands
            pb, mb, vb, vmb = (cp.array(a) for a in (pa, ma, va, vma))
            p64, m64, v64, vm64 = (a.astype(np.float64) for a in (p, m, v, vm))
            k.adam_update(pa, ga, ma, va, 3e-3, 0.9, 0.99, 1e-6, 0.05, step, decoupled,
                          vma if amsgrad else None, maximize)
            scalars = np.array(reference.adam_scalars(3e-3, 0.9, 0.99, 1e-6, 0.05, step))
            k.adam_update_dev(pb, ga, mb, vb, vmb if amsgrad else None, cp.asarray(scalars),
                              decoupled, maximize)
            for a, b in ((pa, pb), (ma, mb), (va, vb), (vma, vmb)):
                assert _host(cp, a).tobytes() == _host(cp, b).tobytes()
            reference.adam_update_dev(p64, g.astype(np.float64), m64, v64,
                                      vm64 if amsgrad else None, scalars, decoupled, maximize)
            for dev_arr, host in ((pb, p64), (mb, m64), (vb, v64), (vmb, vm64)):
                np.testing.assert_allclose(_host(cp, dev_arr).astype(np.float64), host, **tol)
    # the buffer is read when the kernel runs: a learning rate of 0 there leaves p alone
    (p, pd), (g, gd) = (_rand(cp, rng, (n,), dtype) for _ in range(2))
    feed = cp.asarray(np.array([0.5, 0.0, 0.0, 0.0]))
    feed[0] = 0.0
    k.sgd_update_dev(pd, gd, None, feed, False, True, False)
    assert _host(cp, pd).tobytes() == p.tobytes()
    with pytest.raises(ValueError, match="4 contiguous float64"):
        k.sgd_update_dev(pd, gd, None, cp.asarray(np.zeros(4, np.float32)), False, True)


@pytest.mark.skipif(not shim.available(), reason="no g++ to expand the kernel macros")
def test_every_cuda_kernel_has_a_launcher_and_every_activation_its_kernels():
    """Enumerated from the .cu files themselves: elementwise.cu holds exactly the kernels of
    the activation table's rows (and the bias-only form); the launchers of kernels/cuda.py
    name every kernel of the other files."""
    import os

    from gpugrad.kernels import cuda
    launcher_text = open(cuda.__file__).read()
    expected = {f"bias_none_fwd_{s}" for s in SUFFIXES}
    for act in ACTIVATIONS:
        for s in SUFFIXES:
            expected |= {f"{act}_fwd_{s}", f"{act}_bwd_{s}", f"bias_{act}_fwd_{s}"}
        assert hasattr(reference, f"{act}_fwd") and hasattr(reference, f"{act}_bwd"), act
    for source in cuda.SOURCES:
        names = set(shim.kernel_names(os.path.join(shim.KERNEL_DIR, f"{source}.cu")))
        if source == "elementwise":
            assert names == expected
            continue
        for name in names:
            stem = name.rsplit("_", 1)[0]          # the launcher adds the dtype suffix
            assert stem.split("_w")[0].split("_block")[0] in launcher_text, name


def _numpy_gemm_ex(args, a, b, out):
    """cublasGemmEx's semantics on NumPy memory (its first operand is b): column-major
    operands read through their leading dimensions, products accumulated in float32, C
    rounded once."""
    transa, transb, m, n, k, lda, ldb, ldc = args

    def column_major(arr, rows, cols, ld):
        return np.lib.stride_tricks.as_strided(arr, shape=(rows, cols),
                                               strides=(arr.itemsize, ld * arr.itemsize))
    first = column_major(b, k, m, lda).T if transa else column_major(b, m, k, lda)
    second = column_major(a, n, k, ldb).T if transb else column_major(a, k, n, ldb)
    column_major(out, m, n, ldc)[...] = (first.astype(np.float32)
                                         @ second.astype(np.float32)).astype(out.dtype)


def _gemm_operands(xp, dtype, layout):
    rng = np.random.default_rng(3)
    a = rng.uniform(-2, 2, (67, 129) if layout[0] == "n" else (129, 67)).astype(dtype)
    b = rng.uniform(-2, 2, (129, 45) if layout[1] == "n" else (45, 129)).astype(dtype)
    a, b = (a if layout[0] == "n" else a.T), (b if layout[1] == "n" else b.T)
    return a, b, xp.asarray(a.T).T if layout[0] == "t" else xp.asarray(a), \
        xp.asarray(b.T).T if layout[1] == "t" else xp.asarray(b)


@pytest.mark.parametrize("dtype", [np.float16, gg.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
def test_low_precision_gemm_layouts_reach_gemm_ex_as_cublas_reads_them(dtype, layout):
    """The launcher's row-major to column-major mapping (which operand goes first, which
    is transposed, the leading dimensions), checked against a NumPy GemmEx."""
    from gpugrad.kernels.cuda import CudaKernels
    kernels = CudaKernels(np, load=None, max_blocks=1, gemm_ex=_numpy_gemm_ex)
    a, b, ad, bd = _gemm_operands(np, dtype, layout)
    assert ad.flags.f_contiguous == (layout[0] == "t")
    got = kernels.matmul(ad, bd)
    expected = reference.lowp_matmul(a, b)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got.view(np.uint16), expected.view(np.uint16))


@pytest.mark.gpu
@pytest.mark.parametrize("dtype", [np.float16, gg.bfloat16], ids=["fp16", "bf16"])
@pytest.mark.parametrize("layout", ["nn", "nt", "tn", "tt"])
def test_low_precision_gemm_matches_twin(backend, dtype, layout):
    k, cp = backend
    if cp is np:
        pytest.skip("the GEMM runs through cuBLAS only on a GPU")
    a, b, ad, bd = _gemm_operands(cp, dtype, layout)
    got = _host(cp, k.lowp_matmul(ad, bd)).astype(np.float64)
    expected = reference.lowp_matmul(a, b).astype(np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)


def test_philox_twin_gives_the_known_answers_of_random123():
    """Philox4x32-10's published test vectors (Random123, kat_vectors)."""
    zero = reference.philox4x32_10(np.array([0], dtype=np.uint64), 0, 0)[0]
    ones = reference.philox4x32_10(np.array([2**64 - 1], dtype=np.uint64), 2**64 - 1,
                                   2**64 - 1)[0]
    assert [int(w) for w in zero] == [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]
    assert [int(w) for w in ones] == [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("n", SIZES)
def test_dropout_kernels_match_twin_bit_for_bit(backend, n, dtype):
    k, cp = backend
    rng = np.random.default_rng(n)
    x, xd = _rand(cp, rng, (n,), dtype)
    seed, offset, p = 2**63 + 12345, 2**40 + 7, 0.3
    expected = reference.dropout(x, seed, offset, p, 1 / (1 - p))
    out = _poisoned(cp, (n,), dtype)
    k.dropout(xd, seed, offset, p, 1 / (1 - p), out=out)
    assert np.array_equal(_host(cp, out), expected)
    # a dropped negative is -0, as PyTorch's product with the mask gives
    assert np.array_equal(np.signbit(_host(cp, out).astype(np.float32)),
                          np.signbit(x.astype(np.float32)))
    # the captured form: seed and base offset read from device memory, plus a delta
    state = cp.asarray(np.array([np.uint64(seed).view(np.int64), offset - 3], np.int64))
    out = _poisoned(cp, (n,), dtype)
    k.dropout_state(xd, state, 3, p, 1 / (1 - p), out)
    assert np.array_equal(_host(cp, out), expected)
    k.philox_advance(state, 5)
    assert int(_host(cp, state)[1]) == offset + 2
    if n >= 1000:
        kept = (_host(cp, out) != 0).mean()
        assert abs(kept - (1 - p)) < 4 * np.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("affine", ["wb", "w", "none"])
def test_layer_norm_kernels_match_twins(backend, shape, dtype, affine):
    k, cp = backend
    rng = np.random.default_rng(shape[1])
    x, xd = _rand(cp, rng, shape, dtype)
    x = x + np.asarray(rng.uniform(-2, 2, size=(shape[0], 1)), dtype=dtype)  # rows off centre
    xd = cp.asarray(x)
    g, gd = _rand(cp, rng, shape, dtype)
    w, wd = _rand(cp, rng, shape[1:], dtype, 0.5, 1.5)
    b, bd = _rand(cp, rng, shape[1:], dtype)
    w, wd = (w, wd) if affine != "none" else (None, None)
    b, bd = (b, bd) if affine == "wb" else (None, None)
    f32 = [None if a is None else a.astype(np.float32) for a in (x, g, w, b)]
    eps = 1e-5
    tol = dict(rtol=2e-5, atol=2e-5) if dtype == np.float32 else _tol(dtype)
    out = _poisoned(cp, shape, dtype)
    k.layer_norm_fwd(xd, wd, bd, eps, out=out)
    expected = reference.layer_norm_fwd(f32[0], f32[2], f32[3], eps)
    np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected, **tol)
    out = _poisoned(cp, shape, dtype)
    k.layer_norm_bwd(gd, xd, wd, eps, out=out)
    expected = reference.layer_norm_bwd(f32[1], f32[0], f32[2], eps)
    np.testing.assert_allclose(_host(cp, out).astype(np.float64), expected, **tol)


def test_layer_norm_twins_match_float64_formulas():
    """The twins against the textbook formulas (and the backward against a central
    difference of the forward), so that kernels and twins cannot agree on a wrong value."""
    rng = np.random.default_rng(0)
    x, g = rng.standard_normal((4, 7)), rng.standard_normal((4, 7))
    w, b = rng.uniform(0.5, 1.5, 7), rng.standard_normal(7)
    mean = x.mean(-1, keepdims=True)
    var = x.var(-1, keepdims=True)
    np.testing.assert_allclose(reference.layer_norm_fwd(x, w, b, 1e-5),
                               (x - mean) / np.sqrt(var + 1e-5) * w + b, rtol=1e-12)
    eps, numeric = 1e-6, np.zeros_like(x)
    for idx in np.ndindex(*x.shape):
        d = np.zeros_like(x)
        d[idx] = eps
        numeric[idx] = np.sum(g * (reference.layer_norm_fwd(x + d, w, b, 1e-5)
                                   - reference.layer_norm_fwd(x - d, w, b, 1e-5))) / (2 * eps)
    np.testing.assert_allclose(reference.layer_norm_bwd(g, x, w, 1e-5), numeric, rtol=1e-6,
                               atol=1e-8)


def _xent_by_rows(z, y, g, mean):
    """The cross-entropy twins' arithmetic with NumPy's own row maximum."""
    valid = (y >= 0) & (y < z.shape[1])
    safe = np.where(valid, y, 0)
    shifted = z - z.max(axis=-1, keepdims=True)
    picked = shifted[np.arange(len(z)), safe]
    lse = np.log(np.exp(shifted).sum(axis=-1))
    total = np.where(valid, lse - picked, 0).sum()
    count = valid.sum()
    loss = np.asarray((total / count if count else np.nan) if mean else total, z.dtype)
    p = np.exp(z - z.max(axis=-1, keepdims=True))
    p /= p.sum(axis=-1, keepdims=True)
    p[np.arange(len(z)), safe] -= 1
    p *= g / np.maximum(count, 1).astype(p.dtype) if mean else g
    p[~valid] = 0
    return loss, p


def test_cross_entropy_twins_with_a_column_maximum_keep_the_bits():
    """The host twins take the row maximum of few-class logits over a transposed copy; the
    loss and gradient bits are those of the row-wise maximum, with signed zeros, NaN, inf
    and ignored rows."""
    rng = np.random.default_rng(1)
    with np.errstate(all="ignore"):
        for trial in range(300):
            n, c = int(rng.integers(1, 160)), int(rng.integers(1, 40))
            dtype = (np.float32, np.float64)[trial % 2]
            z = (rng.standard_normal((n, c)) * rng.choice([1.0, 40.0])).astype(dtype)
            kind = trial % 5
            if kind == 1:
                z[rng.integers(0, n), rng.integers(0, c)] = np.nan
            elif kind == 2:
                z[rng.integers(0, n)] = rng.choice([0.0, -0.0], c)
            elif kind == 3:
                z[rng.integers(0, n), rng.integers(0, c)] = rng.choice([np.inf, -np.inf])
            y = rng.integers(0, c, n)
            if trial % 3 == 0:
                y[rng.integers(0, n)] = -100
            g = np.asarray(rng.standard_normal(), dtype)
            for mean in (True, False):
                loss, grad = _xent_by_rows(z, y, g, mean)
                assert reference.softmax_xent_fwd(z, y, mean).tobytes() == loss.tobytes()
                assert reference.softmax_xent_bwd(z, y, g, mean).tobytes() == grad.tobytes()
