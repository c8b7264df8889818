"""Engine-level checks on a GPU (skipped without one)."""
import numpy as np
import pytest

import gpugrad as gg

pytestmark = pytest.mark.gpu


def test_training_step_on_gpu_matches_cpu():
    gg.manual_seed(0)
    cpu_model = gg.nn.MLP([20, 16, 5], device="cpu")
    gpu_model = gg.nn.MLP([20, 16, 5], device="cuda")
    gpu_model.load_state_dict(cpu_model.state_dict())
    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 20)).astype(np.float32)
    y = rng.integers(0, 5, size=8)
    for model, dev in ((cpu_model, "cpu"), (gpu_model, "cuda")):
        opt = gg.optim.Adam(model.parameters(), lr=1e-2)
        for _ in range(3):
            loss = gg.nn.functional.cross_entropy(model(gg.tensor(x, device=dev)),
                                                  gg.tensor(y, device=dev))
            opt.zero_grad()
            loss.backward()
            opt.step()
    for a, b in zip(cpu_model.parameters(), gpu_model.parameters()):
        assert b.device == "cuda:0"
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4, atol=1e-5)


def test_gpu_memory_stats_follow_allocations():
    gg.memory.reset_peak("cuda")
    before = gg.memory.stats("cuda")["current_bytes"]
    t = gg.zeros(1 << 20, device="cuda")
    during = gg.memory.stats("cuda")
    assert during["current_bytes"] - before >= t.numel() * 4
    del t
    after = gg.memory.stats("cuda")
    assert after["current_bytes"] <= during["current_bytes"] - (1 << 22)
    assert after["peak_bytes"] >= during["current_bytes"]


def test_mixing_devices_names_both():
    a = gg.ones(3, device="cpu")
    b = gg.ones(3, device="cuda")
    with pytest.raises(ValueError, match="cpu.*cuda:0|cuda:0.*cpu"):
        a + b
