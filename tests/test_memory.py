"""Memory release, shown on gg.memory.stats()."""
import numpy as np

import gpugrad as gg
import gpugrad.nn.functional as F

DEPTH, WIDTH, BATCH = 12, 256, 512
ACT = BATCH * WIDTH * 4   # bytes of one float32 activation


def _mlp():
    gg.manual_seed(0)
    weights = [gg.randn(WIDTH, WIDTH, device="cpu", requires_grad=True) for _ in range(DEPTH)]
    biases = [gg.zeros(WIDTH, device="cpu", requires_grad=True) for _ in range(DEPTH)]
    return weights, biases


def _forward(x, labels, weights, biases):
    h = x
    for w, b in zip(weights, biases):
        h = F.relu(F.linear(h, w * 0.05, b))
    return F.cross_entropy(h, labels)


def _bytes(tensors):
    return sum(t.numel() * t.dtype.itemsize for t in tensors)


def test_forward_keeps_at_most_two_activations_per_layer_and_backward_frees_them():
    weights, biases = _mlp()
    params = weights + biases
    x = gg.randn(BATCH, WIDTH, device="cpu")
    labels = gg.tensor(np.arange(BATCH) % WIDTH, device="cpu")
    base = gg.memory.stats("cpu")["current_bytes"]

    loss = _forward(x, labels, weights, biases)
    after_forward = gg.memory.stats("cpu")["current_bytes"] - base
    # each layer keeps its relu output (shared by the next matmul) and the scaled weight
    scaled_weights = DEPTH * WIDTH * WIDTH * 4
    assert after_forward <= 2 * DEPTH * ACT + scaled_weights
    assert after_forward >= DEPTH * ACT          # the activations really are counted

    gg.memory.reset_peak("cpu")
    loss.backward()
    stats = gg.memory.stats("cpu")
    backward_peak = stats["peak_bytes"] - base
    grads = _bytes(params)
    assert backward_peak <= after_forward + grads + 3 * ACT
    # after backward only the parameter gradients remain
    remaining = stats["current_bytes"] - base
    assert remaining == grads
    assert all(p.grad is not None for p in params)


def test_saved_arrays_are_released_right_after_their_vjp():
    x = gg.randn(1000, device="cpu", requires_grad=True)
    y = x.exp()
    product = y * y
    node = product.grad_fn
    assert node.ins is not None
    product.sum().backward()
    assert node.released and node.out is None


def test_relu_saves_its_output_and_add_saves_nothing():
    x = gg.randn(4, 4, device="cpu", requires_grad=True)
    r = gg.relu(x)
    assert r.grad_fn.ins is None and r.grad_fn.out is not None
    s = x + x
    assert s.grad_fn.ins is None and s.grad_fn.out is None


def test_peak_tracks_and_reset_peak_restarts_from_current():
    gg.memory.reset_peak("cpu")
    start = gg.memory.stats("cpu")
    big = gg.zeros(1 << 18, device="cpu")
    mid = gg.memory.stats("cpu")
    assert mid["current_bytes"] - start["current_bytes"] == big.numel() * 4
    del big
    end = gg.memory.stats("cpu")
    assert end["current_bytes"] == start["current_bytes"]
    assert end["peak_bytes"] >= mid["current_bytes"]
    gg.memory.reset_peak("cpu")
    assert gg.memory.stats("cpu")["peak_bytes"] == end["current_bytes"]
