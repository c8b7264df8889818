"""Tensor attributes, creation, dtypes, devices."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import gpugrad as gg

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_python_floats_become_float32_and_arrays_keep_dtype():
    assert gg.tensor([1.0, 2.0]).dtype == gg.float32
    assert gg.tensor(2.5).dtype == gg.float32
    assert gg.tensor([1, 2]).dtype == gg.int64
    assert gg.tensor(np.zeros(2, np.float64)).dtype == gg.float64
    assert gg.tensor(np.zeros(2, np.float16)).dtype == gg.float16
    assert gg.tensor([True, False]).dtype == gg.bool_
    assert gg.tensor([1, 2], dtype=gg.float64).dtype == gg.float64


def test_pytorch_promotion_rules():
    f32 = gg.ones(2)
    f64 = gg.ones(2, dtype=gg.float64)
    i64 = gg.arange(2)
    assert (f32 + f64).dtype == gg.float64
    assert (f32 * 2.0).dtype == gg.float32        # Python scalars are weak
    assert (i64 + 1).dtype == gg.int64
    assert (i64 * f32).dtype == gg.float32        # NumPy would give float64
    assert (i64 * gg.ones(2, dtype=gg.float16)).dtype == gg.float16


def test_attributes_and_conversions():
    t = gg.tensor([[1.0, 2.0], [3.0, 4.0]])
    assert t.shape == (2, 2) and t.ndim == 2 and t.device == "cpu"
    assert t.is_leaf and not t.requires_grad and t.grad is None
    assert isinstance(t.data, gg.Tensor) and not t.data.requires_grad
    assert t.numpy().tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert t[1, 0].item() == 3.0
    assert t.to(gg.float64).dtype == gg.float64
    assert t.cpu().device == gg.device("cpu")
    assert t.T.tolist() == [[1.0, 3.0], [2.0, 4.0]]
    assert "tensor(" in repr(t)
    assert float(t.sum()) == 10.0


def test_data_is_writable_and_shared():
    t = gg.zeros(3)
    t.data[1] = 7.0
    assert t.tolist() == [0.0, 7.0, 0.0]
    t.data = np.ones(3, np.float32)
    assert t.tolist() == [1.0, 1.0, 1.0]


def test_creation_functions():
    assert gg.zeros(2, 3).tolist() == [[0.0] * 3] * 2
    assert gg.ones((2,)).dtype == gg.float32
    assert gg.full((2,), 3.5).tolist() == [3.5, 3.5]
    assert gg.arange(4).tolist() == [0, 1, 2, 3] and gg.arange(4).dtype == gg.int64
    x = gg.randn(3, 4, requires_grad=True)
    assert x.requires_grad and x.shape == (3, 4) and x.dtype == gg.float32
    assert gg.zeros_like(x).shape == (3, 4) and not gg.zeros_like(x).requires_grad
    assert gg.ones_like(x, dtype=gg.float64).dtype == gg.float64
    r = gg.rand(1000)
    assert 0 <= r.numpy().min() and r.numpy().max() < 1


def test_manual_seed_makes_random_numbers_repeatable():
    gg.manual_seed(123)
    a = gg.randn(5).numpy()
    gg.manual_seed(123)
    b = gg.randn(5).numpy()
    gg.manual_seed(124)
    c = gg.randn(5).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_device_objects_and_strings():
    cpu = gg.device("cpu")
    assert cpu == "cpu" and str(cpu) == "cpu" and gg.device(cpu) is cpu
    assert gg.default_device() in ("cpu", "cuda:0")


def test_comparisons_give_bool_tensors_without_grad():
    x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    m = x > 1.5
    assert m.dtype == gg.bool_ and not m.requires_grad
    assert m.tolist() == [False, True, True]
    assert (x == x).tolist() == [True] * 3


def test_numpy_scalar_on_the_left_defers_to_tensor():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = np.float64(2.0) * x
    assert isinstance(y, gg.Tensor) and y.requires_grad


def _run(code, env_extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT
    env.update(env_extra)
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                          capture_output=True, text=True, timeout=120)


def test_gpugrad_device_cpu_never_imports_cupy():
    result = _run("""
        import sys, gpugrad as gg
        x = gg.randn(3, requires_grad=True)
        (x * x).sum().backward()
        print(gg.cuda_available(), gg.default_device(), 'cupy' in sys.modules)
    """, {"GPUGRAD_DEVICE": "cpu"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "cpu", "False"]


def test_cupy_without_a_driver_is_detected_quietly(tmp_path):
    fake = tmp_path / "cupy"
    (fake / "cuda").mkdir(parents=True)
    (fake / "__init__.py").write_text("from . import cuda\n")
    (fake / "cuda" / "__init__.py").write_text(textwrap.dedent("""
        class CUDARuntimeError(RuntimeError):
            pass
        class runtime:
            @staticmethod
            def getDeviceCount():
                raise CUDARuntimeError('cudaErrorNoDevice: no CUDA-capable device is detected')
    """))
    result = _run("""
        import gpugrad as gg
        print(gg.cuda_available(), gg.default_device())
    """, {"PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "GPUGRAD_DEVICE": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "cpu"]
    assert result.stderr == ""


def test_asking_for_cuda_without_it_is_a_clear_error():
    if gg.cuda_available():
        pytest.skip("a GPU is present")
    with pytest.raises(RuntimeError, match="CUDA is not available"):
        gg.zeros(2, device="cuda")
    assert gg.zeros(2).tolist() == [0.0, 0.0]
