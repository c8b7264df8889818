"""DLPack: zero-copy exchange with NumPy (always) and PyTorch (where installed)."""
import numpy as np
import pytest

import gpugrad as gg


def test_numpy_reads_a_tensor_without_a_copy():
    t = gg.tensor([1.0, 2.0, 3.0], device="cpu")
    a = np.from_dlpack(t)
    assert a.dtype == np.float32 and a.tolist() == [1.0, 2.0, 3.0]
    a[1] = 20.0                             # a write through NumPy is seen by the tensor
    assert t.tolist() == [1.0, 20.0, 3.0]
    assert t.__dlpack_device__() == (1, 0)


def test_from_dlpack_shares_numpy_memory():
    a = np.arange(6, dtype=np.float64).reshape(2, 3)
    t = gg.from_dlpack(a)
    assert t.dtype == np.float64 and t.shape == (2, 3) and str(t.device) == "cpu"
    a[0, 0] = -1.0
    assert t.numpy()[0, 0] == -1.0
    t.data[1, 2] = 50.0
    assert a[1, 2] == 50.0


def test_a_tensor_that_requires_grad_exports_its_detached_data():
    x = gg.tensor([1.0, 2.0], requires_grad=True, device="cpu")
    y = x * 3.0
    a = np.from_dlpack(y)
    assert a.tolist() == [3.0, 6.0]
    assert y.requires_grad


def test_the_copy_and_device_keywords():
    t = gg.tensor([1.0, 2.0], device="cpu")
    a = np.from_dlpack(t, copy=True) if np.lib.NumpyVersion(np.__version__) >= "2.1.0" \
        else np.array(t)
    a[0] = 9.0
    assert t.tolist() == [1.0, 2.0]         # a copy: the tensor is untouched
    capsule = t.__dlpack__(copy=True)
    assert type(capsule).__name__ == "PyCapsule"
    with pytest.raises(BufferError, match="DLPack device"):
        t.__dlpack__(dl_device=(2, 0))
    with pytest.raises(TypeError, match="no __dlpack__"):
        gg.from_dlpack([1, 2, 3])


def test_round_trip_with_torch_shares_memory_both_ways():
    torch = pytest.importorskip("torch")
    src = torch.arange(4, dtype=torch.float32)
    t = gg.from_dlpack(src)
    src[0] = 100.0
    assert t.tolist()[0] == 100.0
    back = torch.from_dlpack(t)
    back[3] = -5.0
    assert t.tolist()[3] == -5.0 and back.dtype == torch.float32


@pytest.mark.gpu
@pytest.mark.skipif(not gg.cuda_available(), reason="needs a CUDA device")
def test_cuda_tensors_round_trip_through_torch_without_a_copy():
    torch = pytest.importorskip("torch")
    t = gg.tensor([1.0, 2.0, 3.0], device="cuda")
    assert t.__dlpack_device__() == (2, 0)
    view = torch.from_dlpack(t)
    view[0] = 42.0
    torch.cuda.synchronize()
    assert t.tolist()[0] == 42.0
    back = gg.from_dlpack(view)
    assert str(back.device) == "cuda:0" and back.tolist() == t.tolist()
