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


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(128, 10), (7, 1000), (64, 3), (1, 1)])
@pytest.mark.parametrize("ignored", [False, True])
@pytest.mark.parametrize("mean", [True, False])
def test_the_paired_cross_entropy_twins_give_the_unpaired_bits(dtype, shape, ignored, mean):
    """The forward leaving its exponentials and row sums for the backward (gg.compile's
    host replay of the pair) gives the loss and the gradient of the two twins run apart,
    bit for bit: short rows, rows long enough for NumPy's pairwise sums, ignored labels."""
    from gpugrad.kernels import reference as R
    rng = np.random.default_rng(sum(shape))
    logits = (rng.standard_normal(shape) * 4).astype(dtype)
    labels = rng.integers(0, shape[1], shape[0])
    if ignored:
        labels[::3] = -100
    g = np.asarray(0.7, dtype)
    loss = R.softmax_xent_fwd(logits, labels, mean, out=np.empty((), dtype))
    grad = R.softmax_xent_bwd(logits, labels, g, mean, out=np.empty(shape, dtype))
    exps = np.full(shape, np.nan, dtype)          # dirty buffers: written before read
    sums = np.full((shape[0], 1), np.nan, dtype)
    paired_loss = R.softmax_xent_fwd(logits, labels, mean, out=np.empty((), dtype),
                                     exps=exps, sums=sums)
    paired_grad = R.softmax_xent_bwd_kept(sums, labels, g, mean, exps)
    assert paired_grad is exps
    assert paired_loss.tobytes() == loss.tobytes()
    assert paired_grad.tobytes() == grad.tobytes()


def test_a_host_replay_runs_the_cross_entropy_pair_once(monkeypatch):
    """The backward of a replay reuses the forward's exponentials (the backward twin that
    computes them again is not called) and the step stays bit for bit eager's, with
    ignored labels and labels that change between calls."""
    from gpugrad.kernels import reference as R
    sizes = [20, 32, 6]
    rng = np.random.default_rng(3)
    xs = [gg.tensor(rng.standard_normal((24, 20)).astype(np.float32)) for _ in range(4)]
    ys = []
    for _ in range(4):
        labels = rng.integers(0, 6, 24)
        labels[::5] = -100
        ys.append(gg.tensor(labels))
    runs, unpaired, bwd = [], [], R.softmax_xent_bwd

    def counted(*args, **kwargs):
        unpaired.append(1)
        return bwd(*args, **kwargs)
    for compiled in (False, True):
        model, opt, fn = _mlp_step(sizes, lambda ps: gg.optim.SGD(ps, lr=0.1, momentum=0.9))
        step = gg.compile(fn) if compiled else fn
        losses = [step(xs[0], ys[0]).numpy().tobytes()]
        if compiled:
            plan = step.plan
            assert len(plan._xent_pairs) == 1
            (i, (j, sums)), = plan._xent_pairs.items()
            out = plan.slots[plan.entries[j].out]
            assert out.first == i and sums.first == i and sums.last == j
            monkeypatch.setattr(R, "softmax_xent_bwd", counted)
        losses += [step(x, y).numpy().tobytes() for x, y in zip(xs[1:], ys[1:])]
        runs.append((losses, [p.numpy().tobytes() for p in model.parameters()],
                     [p.grad.numpy().tobytes() for p in model.parameters()]))
    assert not unpaired
    assert runs[0] == runs[1]
