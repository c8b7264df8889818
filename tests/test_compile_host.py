"""gg.compile on the host: what a replay does beyond launching the recorded kernels (buffer
alignment, the optimizer's updates, the cross-entropy pair) keeps every bit of eager and
costs no more than the hand-written NumPy step."""
import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F
from gpugrad import _compile


def _mlp_step(sizes, make_opt, seed=0):
    gg.manual_seed(seed)
    model = gg.nn.MLP(sizes)
    opt = make_opt(model.parameters())

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return model, opt, step


def _batches(sizes, batch, n, seed=0, labels=None):
    rng = np.random.default_rng(seed)
    xs = [gg.tensor(rng.standard_normal((batch, sizes[0])).astype(np.float32))
          for _ in range(n)]
    ys = [gg.tensor(rng.integers(0, sizes[-1], batch) if labels is None else labels)
          for _ in range(n)]
    return xs, ys


def test_host_buffers_of_a_plan_start_on_a_cache_line():
    """The arena, the buffers outliving the step and the static inputs all start on an
    ALIGN-byte boundary (NumPy's allocator gives 16 bytes for a large array)."""
    sizes = [300, 256, 256, 10]
    _, _, fn = _mlp_step(sizes, lambda ps: gg.optim.SGD(ps, lr=0.01))
    step = gg.compile(fn)
    xs, ys = _batches(sizes, 64, 1)
    x_strided = gg.tensor(np.asfortranarray(xs[0].numpy()))     # copied into a static buffer
    step(x_strided, ys[0])
    plan = step.plan
    checked = 0
    for index, slot in enumerate(plan.slots):
        if slot.placement in ("arena", "own") and slot.nbytes:
            assert plan.arrays[index].ctypes.data % _compile.ALIGN == 0, (index, slot.kind)
            checked += 1
    for _, t in plan.inputs:
        assert t._data.ctypes.data % _compile.ALIGN == 0
    for arena in plan.arena.values():
        assert arena.ctypes.data % _compile.ALIGN == 0
    assert checked >= 8


@pytest.mark.parametrize("make_opt", [
    lambda ps: gg.optim.SGD(ps, lr=0.05),
    lambda ps: gg.optim.SGD(ps, lr=0.05, momentum=0.9),
    lambda ps: gg.optim.Adam(ps, lr=1e-3),
    lambda ps: gg.optim.AdamW(ps, lr=1e-3, weight_decay=0.1)], ids=["sgd", "momentum", "adam",
                                                                   "adamw"])
def test_a_host_replay_updates_large_parameters_without_allocating(make_opt):
    """The optimizer step of a host replay runs the update kernels' host forms with their
    temporaries in the arena: no block-sized array is allocated per replay (eager's twins
    allocate one per block), and the arena does not grow for it."""
    import tracemalloc

    from gpugrad.kernels import reference
    sizes = [400, 400, 10]          # a 400 x 400 weight: updated in blocks
    assert 400 * 400 > 2 * reference.UPDATE_BLOCK
    model, opt, fn = _mlp_step(sizes, make_opt)
    step = gg.compile(fn)
    xs, ys = _batches(sizes, 16, 4)
    for x, y in zip(xs[:3], ys[:3]):
        step(x, y)
    assert step.plan.arena_bytes <= step.plan.peak_eager_bytes
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        step(xs[3], ys[3])
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < reference.UPDATE_BLOCK * 4 // 4, peak


@pytest.mark.parametrize("lr", [np.float64(0.05), 1])
def test_a_host_replay_passes_the_learning_rate_as_eager_does(lr):
    """A NumPy float64 learning rate makes eager's SGD multiply in float64 (NumPy's
    promotion): the replay's host updates receive it unconverted and give the same bits,
    in blocks (the 400 x 400 weight) and whole."""
    sizes = [400, 400, 10]
    runs = []
    for compiled in (False, True):
        model, opt, fn = _mlp_step(sizes, lambda ps: gg.optim.SGD(ps, lr=lr))
        step = gg.compile(fn) if compiled else fn
        xs, ys = _batches(sizes, 16, 4)
        losses = [step(x, y).numpy().tobytes() for x, y in zip(xs, ys)]
        runs.append((losses, [p.numpy().tobytes() for p in model.parameters()]))
    assert runs[0] == runs[1]
