"""The device layer: devices as classes behind one interface, a second device instance,
accounting by construction, generators that never touch the user's stream."""
import numpy as np
import pytest

import gpugrad as gg
from gpugrad import _device


def test_ops_run_on_a_device_with_a_nonzero_index():
    """The bug a second device used to hit: every op through the one dispatch path."""
    x = gg.tensor([0.5, -1.0, 2.0], device="cpu:1", requires_grad=True)
    y = (gg.relu(x) + 1).exp() * x.tanh()
    y.sum().backward()
    assert y.device == "cpu:1" and x.grad.device == "cpu:1"
    assert x.grad.device is not gg.device("cpu")
    xn = x.numpy()
    e = np.exp(np.maximum(xn, 0) + 1)
    expected = e * (xn > 0) * np.tanh(xn) + e * (1 - np.tanh(xn) ** 2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_devices_are_classes_with_one_interface():
    cpu, cpu1 = gg.device("cpu"), gg.device("cpu:1")
    assert isinstance(cpu, _device.Device) and type(cpu) is type(cpu1)
    assert cpu is not cpu1 and cpu != cpu1 and cpu1 == "cpu:1"
    assert str(cpu) == "cpu" and str(cpu1) == "cpu:1"
    assert cpu.memory is not cpu1.memory


def test_masks_built_by_rules_are_counted():
    """Arrays made by a rule's own arithmetic (the gradient of a max, through its tie
    mask) are adopted by the device, so memory.stats sees them."""
    x = gg.randn(64, 64, device="cpu:1", requires_grad=True)
    gg.memory.reset_peak("cpu:1")
    before = gg.memory.stats("cpu:1")["current_bytes"]
    x.max(1).values.sum().backward()
    grad_bytes = x.grad.numpy().nbytes
    stats = gg.memory.stats("cpu:1")
    assert stats["current_bytes"] - before == grad_bytes
    assert stats["peak_bytes"] - before >= grad_bytes


def test_krylov_leaves_the_users_random_stream_alone():
    gg.manual_seed(7)
    expected = gg.randn(5).numpy()
    gg.manual_seed(7)
    a = gg.tensor(np.diag([1.0, 2.0, 3.0, 4.0]), dtype=gg.float32)
    gg.krylov.lanczos(lambda v: a @ v, 4, 2)
    gg.krylov.hutchinson_trace(lambda v: a @ v, 4, samples=3)
    np.testing.assert_array_equal(gg.randn(5).numpy(), expected)


def test_an_unknown_device_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown device 'tpu'"):
        gg.device("tpu")
    if not gg.cuda_available():
        with pytest.raises(RuntimeError, match="CUDA is not available"):
            gg.device("cuda:1")
