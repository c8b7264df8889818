"""gg.compile on the host: what a replay does beyond launching the recorded kernels (buffer
alignment, the optimizer's updates, the cross-entropy pair) keeps every bit of eager and
costs no more than the hand-written NumPy step."""
import numpy as np

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
