"""gg.compile: a training step recorded once and replayed from a static memory plan gives
bit for bit what the eager step gives, step after step, and keeps the contract's promises
(fresh results, flat memory, live learning rates and state, a bounded cache, dropout with
a new mask per replay, host reads refused while recording)."""
import gc
import warnings

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F
from gpugrad import _compile

SIZES = [12, 24, 24, 5]
BATCH = 8


def _data(n_batches, seed=0, batch=BATCH, device="cpu"):
    rng = np.random.default_rng(seed)
    xs = [gg.tensor(rng.standard_normal((batch, SIZES[0])).astype(np.float32), device=device)
          for _ in range(n_batches)]
    ys = [gg.tensor(rng.integers(0, SIZES[-1], batch), device=device) for _ in range(n_batches)]
    return xs, ys


def _setup(make_opt, dropout=0.0, schedule=None, device="cpu"):
    """A model, its optimizer (and schedule) and an eager step function, all from seed 0."""
    gg.manual_seed(0)
    model = gg.nn.MLP(SIZES, dropout=dropout, device=device)
    opt = make_opt(model.parameters())
    sched = schedule(opt) if schedule else None

    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return model, opt, sched, step


def _run(step, sched, xs, ys, seed=7):
    gg.manual_seed(seed)          # the same dropout stream for both runs
    losses = []
    for x, y in zip(xs, ys):
        losses.append(step(x, y))
        if sched is not None:
            sched.step()
    return [loss.numpy() for loss in losses]


def _same_state(a, b):
    for (name, pa), pb in zip(a[0].named_parameters(), b[0].parameters()):
        assert np.array_equal(pa.numpy(), pb.numpy()), name
        assert np.array_equal(pa.grad.numpy(), pb.grad.numpy()), name
    _same_tree(a[1].state_dict(), b[1].state_dict(), "optimizer")


def _same_tree(va, vb, where):
    """Equal optimizer states (PyTorch's layout: state by parameter index, param_groups),
    tensors bit for bit."""
    if isinstance(va, gg.Tensor):
        assert np.array_equal(va.numpy(), vb.numpy()), where
    elif isinstance(va, dict):
        assert set(va) == set(vb), where
        for k in va:
            _same_tree(va[k], vb[k], f"{where}.{k}")
    elif isinstance(va, (list, tuple)):
        assert len(va) == len(vb), where
        for i, (x, y) in enumerate(zip(va, vb)):
            _same_tree(x, y, f"{where}[{i}]")
    else:
        assert va == vb, where


OPTIMIZERS = {
    "sgd": lambda ps: gg.optim.SGD(ps, lr=0.1),
    "sgd_momentum": lambda ps: gg.optim.SGD(ps, lr=0.05, momentum=0.9),
    "sgd_nesterov_wd": lambda ps: gg.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True,
                                               weight_decay=1e-2),
    "sgd_dampening": lambda ps: gg.optim.SGD(ps, lr=0.05, momentum=0.8, dampening=0.3),
    "adam": lambda ps: gg.optim.Adam(ps, lr=1e-2),
    "adam_wd": lambda ps: gg.optim.Adam(ps, lr=1e-2, weight_decay=1e-2),
    "adamw": lambda ps: gg.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
}


@pytest.mark.parametrize("dropout", [0.0, 0.25])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_replays_are_bit_identical_to_eager_steps(name, dropout):
    xs, ys = _data(6)
    eager = _setup(OPTIMIZERS[name], dropout)
    compiled = _setup(OPTIMIZERS[name], dropout)
    step = gg.compile(compiled[3])
    expected = _run(eager[3], None, xs, ys)
    got = _run(step, None, xs, ys)
    assert step.plan is not None and step.plan.replays == len(xs) - 1
    for e, g in zip(expected, got):
        assert e.tobytes() == g.tobytes()
    _same_state(eager, compiled)


@pytest.mark.parametrize("name", ["sgd_momentum", "adamw"])
@pytest.mark.parametrize("schedule", [
    lambda opt: gg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    lambda opt: gg.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=5)])
def test_a_schedule_changing_the_learning_rate_is_read_at_every_replay(name, schedule):
    xs, ys = _data(6)
    eager = _setup(OPTIMIZERS[name], schedule=schedule)
    compiled = _setup(OPTIMIZERS[name], schedule=schedule)
    step = gg.compile(compiled[3])
    expected = _run(eager[3], eager[2], xs, ys)
    got = _run(step, compiled[2], xs, ys)
    assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]
    _same_state(eager, compiled)


def test_a_learning_rate_of_zero_set_between_replays_freezes_the_parameters():
    """The learning rate is read at replay, not frozen into the recording."""
    model, opt, _, fn = _setup(OPTIMIZERS["sgd"])
    step = gg.compile(fn)
    xs, ys = _data(3)
    step(xs[0], ys[0])
    step(xs[1], ys[1])
    for group in opt.param_groups:
        group["lr"] = 0.0
    before = [p.numpy() for p in model.parameters()]
    step(xs[2], ys[2])
    assert all(np.array_equal(b, p.numpy()) for b, p in zip(before, model.parameters()))


def test_eager_calls_and_load_state_dict_between_replays_are_seen():
    xs, ys = _data(8)
    eager = _setup(OPTIMIZERS["adam"])
    compiled = _setup(OPTIMIZERS["adam"])
    step = gg.compile(compiled[3])
    saved = None
    for i, (x, y) in enumerate(zip(xs, ys)):
        eager[3](x, y)
        if i in (3, 4):
            compiled[3](x, y)          # the plain function, eagerly, between replays
        else:
            step(x, y)
        if i == 5:
            # both sides go back to a checkpoint taken after step 2 (new state arrays)
            eager[0].load_state_dict(saved[0])
            eager[1].load_state_dict(saved[1])
            compiled[0].load_state_dict(saved[0])
            compiled[1].load_state_dict(saved[1])
        if i == 2:
            saved = ({k: gg.tensor(v.numpy()) for k, v in eager[0].state_dict().items()},
                     eager[1].state_dict())
            saved = (saved[0], {**saved[1], "state": {
                index: {k: (gg.tensor(v.numpy()) if isinstance(v, gg.Tensor) else v)
                        for k, v in s.items()} for index, s in saved[1]["state"].items()}})
    _same_state(eager, compiled)


def test_results_are_fresh_and_memory_stays_flat_over_replays():
    model, opt, _, fn = _setup(OPTIMIZERS["sgd_momentum"])
    step = gg.compile(fn)
    xs, ys = _data(2, batch=64)
    first = step(xs[0], ys[0])
    second = step(xs[1], ys[1])
    kept = second.numpy().copy()
    third = step(xs[0], ys[0])
    assert second.numpy().tobytes() == kept.tobytes()      # not overwritten by the replay
    assert third._data is not second._data and not third.requires_grad
    assert first.numpy() != third.numpy()                   # same batch, trained parameters
    gc.collect()     # garbage other tests left must not be freed inside the measurement
    mem = gg.memory.stats("cpu")["current_bytes"]
    for _ in range(20):
        step(xs[1], ys[1])
    assert gg.memory.stats("cpu")["current_bytes"] == mem


def test_the_plan_places_intermediates_in_one_arena_by_liveness():
    gg.manual_seed(0)
    model = gg.nn.MLP([784, 512, 512, 10])
    opt = gg.optim.SGD(model.parameters(), lr=0.01)

    @gg.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    x = gg.randn(128, 784)
    y = gg.tensor(np.arange(128) % 10)
    step(x, y)
    plan = step.plan
    assert 0 < plan.lower_bound_bytes <= plan.arena_bytes <= plan.peak_eager_bytes
    assert plan.arena_bytes <= 1.2 * plan.lower_bound_bytes
    text = str(plan)
    for needle in ("linear", "matmul", "softmax_xent", "arena", "lower bound",
                   f"{plan.kernels} kernel launches"):
        assert needle in text
    # buffers alive at the same time never share bytes, but for a relu_grad writing over
    # the gradient it reads (where that gradient dies), as the NumPy floor does in place
    arena = [s for s in plan.slots if s.placement == "arena"]
    index = {id(s): i for i, s in enumerate(plan.slots)}
    assert plan.in_place == 2 and "2 launch(es) writing over their input" in text

    def root(s):
        i = index[id(s)]
        while i in plan.shared:
            i = plan.shared[i]
        return i
    for a in arena:
        for b in arena:
            if a is not b and not (a.last < b.first or b.last < a.first) and root(a) != root(b):
                assert a.offset + a.nbytes <= b.offset or b.offset + b.nbytes <= a.offset
    for out, src in plan.shared.items():
        launch = plan.entries[plan.slots[out].producer]
        assert launch.op.name == "relu_grad" and launch.ins[0] == src
        at = plan.slots[out].producer
        assert not any(src in e.ins for e in plan.entries[at + 1:]
                       if isinstance(e, _compile._Launch))      # nothing reads it later
        assert np.shares_memory(plan.arrays[out], plan.arrays[src])
    # and the arena really is shared: fewer bytes than the buffers it holds
    assert plan.arena_bytes < sum(s.nbytes for s in arena)


def test_the_placement_packs_disjoint_lifetimes_and_separates_overlapping_ones():
    def slot(first, last, nbytes):
        s = _compile._Slot.__new__(_compile._Slot)
        s.first, s.last, s.nbytes, s.offset = first, last, nbytes, None
        return s
    a, b, c = slot(0, 1, 1000), slot(2, 3, 1000), slot(1, 2, 64)
    size = _compile._place([a, b, c])
    assert a.offset == b.offset                  # a dies before b is born
    assert c.offset >= 1024                      # c lives with both
    assert size == _compile._lower_bound([a, b, c], 4) + 24 == 1088


def test_a_new_signature_records_anew_and_the_cache_is_bounded():
    model, opt, _, fn = _setup(OPTIMIZERS["sgd"])
    step = gg.compile(fn, max_plans=2)
    for batch in (4, 8):
        xs, ys = _data(2, batch=batch)
        step(xs[0], ys[0])
        step(xs[1], ys[1])
    assert len(step.plans) == 2
    xs, ys = _data(2, batch=3)
    with pytest.warns(RuntimeWarning, match="max_plans=2"):
        loss = step(xs[0], ys[0])
    assert step.plan is None and loss.requires_grad        # ran eagerly
    with warnings.catch_warnings():
        warnings.simplefilter("error")                        # warned once only
        step(xs[1], ys[1])
    assert len(step.plans) == 2
    xs, ys = _data(1, batch=4)
    replays = step.plans[next(iter(step.plans))].replays
    step(xs[0], ys[0])                                        # a known signature replays
    assert step.plan is step.plans[next(iter(step.plans))]
    assert step.plan.replays == replays + 1


def test_python_side_effects_run_only_while_recording():
    model, opt, _, fn = _setup(OPTIMIZERS["sgd"])
    calls = []

    def traced(x, y):
        calls.append(1)
        return fn(x, y)
    step = gg.compile(traced)
    xs, ys = _data(4)
    for x, y in zip(xs, ys):
        step(x, y)
    assert len(calls) == 1


def test_dropout_draws_a_new_mask_at_every_replay():
    gg.manual_seed(3)
    p = 0.3
    w = gg.ones(4000, requires_grad=True)
    opt = gg.optim.SGD([w], lr=0.0)

    @gg.compile
    def step(x):
        opt.zero_grad()
        out = F.dropout(x * w, p)
        out.sum().backward()
        opt.step()
        return out
    x = gg.ones(4000)
    masks = [step(x).numpy() != 0 for _ in range(4)]
    for m in masks:
        assert abs(m.mean() - (1 - p)) < 0.03
    for a, b in zip(masks, masks[1:]):
        assert (a != b).mean() > 0.2
    # the gradient uses the replay's own mask
    assert np.array_equal(w.grad.numpy() != 0, masks[-1])


@pytest.mark.parametrize("read", [
    lambda t: t.item(), lambda t: t.tolist(), lambda t: t.numpy(), lambda t: float(t),
    lambda t: bool(t), lambda t: np.asarray(t)])
def test_a_host_read_while_recording_raises_and_leaves_the_engine_usable(read):
    model, opt, _, fn = _setup(OPTIMIZERS["sgd"])

    def reads(x, y):
        loss = fn(x, y)
        read(loss)
        return loss
    step = gg.compile(reads)
    xs, ys = _data(1)
    with pytest.raises(RuntimeError, match="gg.compile"):
        step(xs[0], ys[0])
    assert not step.plans
    assert read(fn(xs[0], ys[0])) is not None              # eager reads work again
    assert np.isfinite(gg.compile(fn)(xs[0], ys[0]).item())


@pytest.mark.parametrize("body,match", [
    (lambda x: (x > 0).sum(), "comparison"),
    (lambda x: (x * gg.randn(*x.shape)).sum(), "random draw"),
    (lambda x: (x * gg.remainder(gg.ones(3, SIZES[0]), x)).sum(),
     "derivative computed outside the kernels"),
])
def test_what_a_replay_could_not_redo_is_refused_while_recording(body, match):
    w = gg.ones(SIZES[0], requires_grad=True)
    opt = gg.optim.SGD([w], lr=0.1)

    def fn(x):
        opt.zero_grad()
        loss = body(x * w)
        loss.backward()
        opt.step()
        return loss
    with pytest.raises(RuntimeError, match=match):
        gg.compile(fn)(gg.randn(3, SIZES[0]))
    assert (w * 2).sum().item() == 2 * SIZES[0]


def test_gradients_carried_in_from_before_the_step_are_refused():
    model, opt, _, _ = _setup(OPTIMIZERS["sgd"])

    def no_zero_grad(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    xs, ys = _data(2)
    no_zero_grad(xs[0], ys[0])          # leaves gradients behind
    with pytest.raises(RuntimeError, match="zero_grad"):
        gg.compile(no_zero_grad)(xs[1], ys[1])


def test_gradients_a_step_does_not_reset_are_refused_not_overwritten():
    """Eager adds into the .grad of a tensor the step reaches but does not reset, call
    after call; a replay used to overwrite it (a wrong gradient without an error)."""
    def make(zero):
        gg.manual_seed(0)
        model = gg.nn.MLP([4, 3, 2])
        params = list(model.parameters())
        opt = gg.optim.SGD(params[:2], lr=0.1)       # the last layer is not optimized

        def step(x, y):
            zero(model, opt)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        return step
    x, y = gg.ones(5, 4), gg.tensor([0, 1, 0, 1, 1])
    with pytest.raises(RuntimeError, match=r"gg\.compile.*zero_grad"):
        gg.compile(make(lambda model, opt: opt.zero_grad()))(x, y)

    def no_reset(model, opt):
        pass
    with pytest.raises(RuntimeError, match=r"gg\.compile.*t\.grad = None"):
        gg.compile(make(no_reset))(x, y)
    w = gg.ones(4, requires_grad=True)               # a plain leaf, no optimizer
    with pytest.raises(RuntimeError, match=r"gg\.compile.*requires_grad"):
        gg.compile(lambda x: (x * w).sum().backward())(x)


def test_gradients_reset_by_hand_replay_as_eager():
    """``p.grad = None`` inside the step, before backward, is a reset as zero_grad's is (for
    the parameters no optimizer holds too): replays give eager's losses, parameters and
    gradients bit for bit, call after call."""
    xs, ys = _data(4)
    runs = []
    for compiled in (False, True):
        gg.manual_seed(0)
        model = gg.nn.MLP(SIZES)
        params = list(model.parameters())
        opt = gg.optim.SGD(params[:2], lr=0.1, momentum=0.9)    # the rest trained by nobody

        def step(x, y, model=model, opt=opt):
            for p in model.parameters():
                p.grad = None
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        fn = gg.compile(step) if compiled else step
        losses = [fn(x, y).numpy().tobytes() for x, y in zip(xs, ys)]
        runs.append((losses, [(p.numpy().tobytes(), p.grad.numpy().tobytes())
                              for p in params]))
        if compiled:
            assert fn.plan.replays == 3
    assert runs[0] == runs[1]


def test_a_reset_by_hand_after_backward_is_refused():
    model, opt, _, _ = _setup(OPTIMIZERS["sgd"])

    def trailing(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        for p in model.parameters():
            p.grad = None
        return loss
    xs, ys = _data(1)
    with pytest.raises(RuntimeError, match="before backward"):
        gg.compile(trailing)(xs[0], ys[0])


def test_a_zero_grad_after_backward_is_refused():
    model, opt, _, _ = _setup(OPTIMIZERS["sgd"])

    def trailing(x, y):
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        return loss
    xs, ys = _data(1)
    with pytest.raises(RuntimeError, match="before backward"):
        gg.compile(trailing)(xs[0], ys[0])


@pytest.mark.parametrize("set_to_none", [True, False])
@pytest.mark.parametrize("grads_before", [False, True])
def test_module_zero_grad_and_in_place_zeroing_replay_as_eager(set_to_none, grads_before):
    """model.zero_grad() resets parameters the optimizer does not hold; zero_grad with
    set_to_none=False zeroes in place, with gradients there before the recording call or
    not; the replay gives eager's gradients and parameters bit for bit."""
    xs, ys = _data(4)
    states = []
    for compiled in (False, True):
        gg.manual_seed(0)
        model = gg.nn.MLP(SIZES)
        params = list(model.parameters())
        opt = gg.optim.SGD(params[:4], lr=0.1, momentum=0.9)

        def step(x, y, model=model, opt=opt):
            model.zero_grad(set_to_none=set_to_none)
            loss = F.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss
        if grads_before:
            F.cross_entropy(model(xs[0]), ys[0]).backward()
        fn = gg.compile(step) if compiled else step
        losses = [fn(x, y).numpy() for x, y in zip(xs, ys)]
        states.append((losses, [(p.numpy(), p.grad.numpy()) for p in params]))
    (la, pa), (lb, pb) = states
    for a, b in zip(la, lb):
        assert np.array_equal(a, b)
    for (wa, ga), (wb, gb) in zip(pa, pb):
        assert np.array_equal(wa, wb) and np.array_equal(ga, gb)


def test_inputs_that_require_grad_and_unhashable_arguments_are_refused():
    step = gg.compile(lambda x, *rest: x.sum())
    with pytest.raises(ValueError, match="requires grad"):
        step(gg.ones(3, requires_grad=True))
    with pytest.raises(TypeError, match="hashable"):
        step(gg.ones(3), [1, 2])
    with pytest.raises(TypeError, match="callable"):
        gg.compile(3)
    with pytest.raises(ValueError, match="max_plans"):
        gg.compile(lambda: None, max_plans=0)


def test_a_step_with_two_losses_and_a_tuple_result():
    """Gradients from two backward passes add up inside the step; tuples come back."""
    xs, ys = _data(4)
    results = []
    for compiled in (False, True):
        model, opt, _, _ = _setup(OPTIMIZERS["sgd_momentum"])

        def fn(x, y, model=model, opt=opt):
            opt.zero_grad()
            out = model(x)
            a = F.cross_entropy(out, y)
            b = F.mse_loss(out, gg.zeros(*out.shape))
            a.backward(retain_graph=True)
            b.backward()
            opt.step()
            return a, b, None
        step = gg.compile(fn) if compiled else fn
        gg.manual_seed(1)
        results.append([tuple(r.numpy() if r is not None else None for r in step(x, y))
                        for x, y in zip(xs, ys)])
        results.append([p.numpy() for p in model.parameters()])
    assert str(results[0]) == str(results[2])
    assert all(np.array_equal(a, b) for a, b in zip(results[1], results[3]))


def test_a_replaced_parameter_array_is_read_where_it_lives():
    model, opt, _, fn = _setup(OPTIMIZERS["sgd"])
    step = gg.compile(fn)
    xs, ys = _data(3)
    step(xs[0], ys[0])
    step(xs[1], ys[1])
    w = model[0].weight
    w.data = np.zeros(tuple(w.shape), np.float32)       # a new array behind the parameter
    eager = _setup(OPTIMIZERS["sgd"])
    for p, q in zip(eager[0].parameters(), model.parameters()):
        p.data[...] = q.numpy()
    expected = eager[3](xs[2], ys[2]).numpy()
    assert step(xs[2], ys[2]).numpy().tobytes() == expected.tobytes()
    # and the update wrote into the new array, as eager's did
    for p, q in zip(eager[0].parameters(), model.parameters()):
        assert p.numpy().tobytes() == q.numpy().tobytes()
    assert not np.array_equal(w.numpy(), np.zeros(tuple(w.shape), np.float32))


def test_a_second_device_instance():
    xs, ys = _data(4, device="cpu:1")
    eager = _setup(OPTIMIZERS["adam"], device="cpu:1")
    compiled = _setup(OPTIMIZERS["adam"], device="cpu:1")
    step = gg.compile(compiled[3])
    assert [e.tobytes() for e in _run(eager[3], None, xs, ys)] == \
        [g.tobytes() for g in _run(step, None, xs, ys)]
    assert next(compiled[0].parameters()).device == "cpu:1"


def test_a_profile_shows_a_replay_as_its_kernels():
    model, opt, _, fn = _setup(OPTIMIZERS["sgd"])
    step = gg.compile(fn)
    xs, ys = _data(2)
    step(xs[0], ys[0])
    with gg.profiler.profile() as prof:
        step(xs[1], ys[1])
    names = [e.name for e in prof.events]
    assert names.count("linear") == 3 and "sgd_update" in names
    assert {e.phase for e in prof.events} == {"forward", "backward", "optimizer"}


def _piecewise_setup():
    """An MLP step whose backward needs derivative arrays of their own (abs, clamp,
    maximum, minimum, amax and max, floor's zero) and a batched matmul."""
    gg.manual_seed(0)
    model = gg.nn.MLP(SIZES)
    w3 = gg.nn.Parameter(gg.randn(2, 5, 3))
    opt = gg.optim.Adam(list(model.parameters()) + [w3], lr=1e-2)

    def step(x, y):
        opt.zero_grad()
        out = model(x)
        a = out.clamp(-0.5, 0.5)
        b = gg.maximum(out, a * 0.5) + gg.minimum(out, 0.1)
        loss = ((a - b).abs().mean() + out.amax(dim=1).sum() * 0.1 + out.max() * 0.01
                + gg.floor(out).sum() + (out.reshape(2, 4, 5) @ w3).abs().sum() * 0.01)
        loss.backward()
        opt.step()
        return loss
    return model, opt, None, step


def test_backward_rules_with_derivative_arrays_compile_bit_identical_to_eager():
    """abs (an L1 loss), clamp, maximum/minimum, amax/max and floor differentiate through
    ops of their own (sign, masks, weights, zeros), which a replay recomputes."""
    _replays_as_eager(_piecewise_setup, _data(5),
                      ("sign_of", "inside_mask", "pick_weight", "peak_share", "zeros_of"))


def _replays_as_eager(setup, data, derivative_ops):
    """A step of ``setup()`` compiled and eager, over the batches of ``data``: replays give
    eager's losses and state bit for bit, and the plan names each of ``derivative_ops``."""
    xs, ys = data
    eager, compiled = setup(), setup()
    step = gg.compile(compiled[3])
    with np.errstate(invalid="ignore", divide="ignore"):      # 0 * log 0, masked out
        expected = _run(eager[3], None, xs, ys)
        got = _run(step, None, xs, ys)
    assert step.plan.replays == len(xs) - 1
    assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]
    _same_state(eager, compiled)
    names = str(step.plan)
    for op in derivative_ops:
        assert op in names, op


def _masked_rules_setup(label_smoothing):
    gg.manual_seed(0)
    model = gg.nn.MLP(SIZES)
    opt = gg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    weight = gg.tensor(np.linspace(0.5, 2.0, SIZES[-1]).astype(np.float32))

    def step(x, y):
        opt.zero_grad()
        out = model(x)
        base = F.softplus(out * 8.0, threshold=4.0) + 0.5          # linear where large
        zeros = F.relu(out)                                         # exact zeros
        powered = (base ** (out * 0.1) + 0.0 ** (out.abs() * 0.1)   # pow's flat masks
                   + (zeros + 2.0) ** (out * 0.1))
        h = (powered + gg.cumprod(zeros, dim=1) * 0.1
             + gg.prod(out * 0.1 + 1.0, dim=1, keepdim=True) + out.clamp(min=-0.2))
        diag = gg.einsum("ii->i", h[:SIZES[-1]]).sum() * 0.01
        loss = F.cross_entropy(h, y, weight=weight, label_smoothing=label_smoothing,
                               ignore_index=3) + diag
        loss.backward()
        opt.step()
        return loss
    return model, opt, None, step


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1])
def test_pow_softplus_cumprod_prod_and_weighted_cross_entropy_compile_as_eager(
        label_smoothing):
    """Rules whose masks were host arrays (refused while recording) run ops of their own,
    and the class weights and one-hot of a weighted cross-entropy are computed by an op
    from the labels at every replay (they were frozen into the recording: a replay with
    new labels reused the recorded ones)."""
    _replays_as_eager(lambda: _masked_rules_setup(label_smoothing), _data(5, batch=12),
                      ("above_mask", "zero_mask", "zero_scan", "label_weights", "inside_mask"))


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weighted_cross_entropy_reads_labels_and_weights_of_every_replay(reduction, smoothing):
    """nll_loss's class one-hot was computed on the host from the recording's labels, and
    with label smoothing the smoothing term's class weights were copied on the host: both
    frozen into the plan, so replays with new labels or weights changed in place between
    calls gave the recording's loss, silently."""
    results = []
    xs, ys = _data(4)
    for compiled in (False, True):
        gg.manual_seed(0)
        model = gg.nn.MLP(SIZES)
        opt = gg.optim.SGD(model.parameters(), lr=0.1)
        weight = gg.tensor(np.linspace(0.5, 2.0, SIZES[-1]).astype(np.float32))

        def step(x, y, model=model, opt=opt, weight=weight):
            opt.zero_grad()
            loss = F.cross_entropy(model(x), y, weight=weight, reduction=reduction,
                                   label_smoothing=smoothing)
            loss.backward()
            opt.step()
            return loss
        fn = gg.compile(step) if compiled else step
        losses = []
        for i, (x, y) in enumerate(zip(xs, ys)):
            losses.append(fn(x, y).numpy())
            with gg.no_grad():
                weight.mul_(1.5 if i % 2 else 0.5)
        results.append((losses, [p.numpy() for p in model.parameters()]))
    (la, pa), (lb, pb) = results
    assert [a.tobytes() for a in la] == [b.tobytes() for b in lb]
    for a, b in zip(pa, pb):
        assert np.array_equal(a, b)


def test_host_replays_read_inputs_where_the_caller_holds_them():
    """On the host a replay reads a contiguous input in place (no copy into the static
    buffer): the same tensor changed in place between calls, new tensors, a strided one
    (copied), a view of it taken in the step, and back; every loss and parameter is
    eager's, bit for bit."""
    rng = np.random.default_rng(5)
    base = rng.standard_normal((BATCH, 2 * SIZES[0])).astype(np.float32)
    labels = gg.tensor(np.arange(BATCH) % SIZES[-1])
    results = []
    for compiled in (False, True):
        gg.manual_seed(0)
        model = gg.nn.MLP(SIZES)
        opt = gg.optim.SGD(model.parameters(), lr=0.1)

        def step(x, y, model=model, opt=opt):
            opt.zero_grad()
            loss = F.cross_entropy(model(x.reshape(BATCH, SIZES[0])), y)
            loss.backward()
            opt.step()
            return loss, x.reshape(-1)[:3] * 1
        fn = gg.compile(step) if compiled else step
        same = gg.tensor(base[:, :SIZES[0]].copy())
        strided = gg.tensor(base)[:, ::2]
        losses = []
        for call in range(8):
            if call in (1, 2, 6):
                x = same
                same.data[...] = same.data * 0.5 + 0.25      # changed in place
            elif call in (3, 5):
                x = strided
            else:
                x = gg.tensor(base[:, SIZES[0]:] * (call + 1))
            losses.append([t.numpy().tobytes() for t in fn(x, labels)])
        results.append((losses, [p.numpy() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    for a, b in zip(results[0][1], results[1][1]):
        assert np.array_equal(a, b)


def test_embedding_padding_reads_the_indices_of_every_replay():
    """embedding's padding mask was computed on the host from the recording's indices and
    frozen into the plan; max_norm renormalizes on the host and is refused."""
    rng = np.random.default_rng(0)
    batches = [gg.tensor(rng.integers(0, 6, (4, 3))) for _ in range(4)]
    results = []
    for compiled in (False, True):
        gg.manual_seed(0)
        table = gg.nn.Parameter(gg.randn(6, 5))
        opt = gg.optim.SGD([table], lr=0.5)

        def step(idx, table=table, opt=opt):
            opt.zero_grad()
            loss = (F.embedding(idx, table, padding_idx=2) ** 2).sum()
            loss.backward()
            opt.step()
            return loss
        fn = gg.compile(step) if compiled else step
        results.append(([fn(i).numpy().tobytes() for i in batches], table.numpy()))
    assert results[0][0] == results[1][0]
    assert np.array_equal(results[0][1], results[1][1])
    table = gg.nn.Parameter(gg.randn(6, 5))
    with pytest.raises(RuntimeError, match="max_norm.*gg.compile"):
        gg.compile(lambda idx: F.embedding(idx, table, max_norm=1.0).sum())(batches[0])


@pytest.mark.parametrize("dtype", [np.float32, np.float16])
def test_derivative_ops_write_into_out_as_they_return(dtype):
    """The derivative ops give the same bits into a planned buffer (a replay) as fresh."""
    from gpugrad.ops import _derivative as D
    dev = gg.device("cpu")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 6)).astype(dtype)
    x[0, :3] = 0.0
    x[1, 2] = np.nan
    x[2, 1] = x[2, 4] = x[2].max()
    b = np.round(rng.standard_normal((1, 6)), 1).astype(dtype)
    labels = np.array([0, 3, 5, 2])
    cases = [
        (D.PickWeight, (x, b), D.PickWeight.Params(True, np.dtype(dtype))),
        (D.PickWeight, (x, b), D.PickWeight.Params(False, np.dtype(dtype))),
        (D.InsideMask, (x,), D.InsideMask.Params(-0.5, 0.5)),
        (D.InsideMask, (x,), D.InsideMask.Params(-0.5, None)),
        (D.InsideMask, (x,), D.InsideMask.Params(None, 0.5)),
        (D.InsideMask, (x,), D.InsideMask.Params(None, None)),
        (D.PeakShare, (x, np.nanmax(x, axis=1)), D.PeakShare.Params((1,), (4, 1))),
        (D.ZeroMask, (x,), D.ZeroMask.Params("zero")),
        (D.ZeroMask, (x,), D.ZeroMask.Params("nonnegative")),
        (D.ZeroMask, (b, x), D.ZeroMask.Params("flat")),
        (D.AboveMask, (x,), D.AboveMask.Params(2.0, 0.5)),
        (D.AboveMask, (x,), D.AboveMask.Params(1.0, 0.5)),
        (D.LabelWeights, (labels, np.linspace(1, 2, 6)),
         D.LabelWeights.Params(6, 1, 3, np.dtype(dtype), False, None)),
        (D.LabelWeights, (labels,), D.LabelWeights.Params(None, None, None, np.dtype(dtype),
                                                          True, 5)),
    ] + [(D.ZeroScan, (x,), D.ZeroScan.Params(1, which))
         for which in ("zero", "before", "first", "before_or_first")]
    for op, arrays, p in cases:
        fresh = dev.run(op, p, arrays)
        out = np.full_like(fresh, 7)
        assert dev.run(op, p, arrays, out=out) is out, op.name
        assert out.dtype == fresh.dtype and out.tobytes() == fresh.tobytes(), (op.name, p)


def test_a_captured_batched_gemm_runs_one_gemm_per_matrix():
    from gpugrad import _cuda
    from gpugrad.kernels import cublas

    class Blas:
        def gemm(self, a, b, out):
            args = cublas.gemm_arguments(a.shape, a.strides, b.shape, b.strides, out.shape,
                                         out.strides, a.itemsize)
            out[...] = cublas.emulate_gemm(args, a, b)
            return out
    stub = type("Stub", (), {"_blas": Blas()})()
    rng = np.random.default_rng(0)
    a = rng.standard_normal((3, 4, 5)).astype(np.float32)
    b = np.ascontiguousarray(rng.standard_normal((3, 6, 5)).astype(np.float32)).transpose(0, 2, 1)
    out = np.empty((3, 4, 6), np.float32)
    assert _cuda.CUDADevice._captured_matmul(stub, a, b, out) is out
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)
    with pytest.raises(NotImplementedError, match="batched 3-D"):
        _cuda.CUDADevice._captured_matmul(stub, a, b[:2], np.empty((2, 4, 6), np.float32))


# -- the capture path, on a stand-in device ---------------------------------------------------
class _GraphDevice(_compile._device.CPUDevice):
    """A CPU device that captures like a GPU: ``capture(run)`` runs nothing and returns a
    launcher. Dropout and the optimizer updates run the CUDA C of random.cu and optim.cu
    through the CPU shim (eagerly and in the graph alike, as on a GPU), and every kernel
    launch is logged with whether it ran inside a graph launch, so that a test sees what
    ran outside the graph: host scalars would be frozen into a real graph."""

    is_host = False
    __slots__ = ("captures", "launches", "inside", "log", "refuse")
    SHIM_KERNELS = ("dropout", "dropout_state", "philox_advance", "sgd_update", "adam_update",
                    "sgd_update_dev", "adam_update_dev", "fused_update_ok")

    def __init__(self, table):
        super().__init__(7)
        kernels = type("Kernels", (), {})()
        for name in dir(_compile._device.reference):
            if not name.startswith("_"):
                setattr(kernels, name, getattr(_compile._device.reference, name))
        for name in self.SHIM_KERNELS:
            setattr(kernels, name, self._logged(name, getattr(table, name)))
        self.kernels = kernels
        self.reset()

    def reset(self):
        self.captures = self.launches = 0
        self.inside = self.refuse = False
        self.log = []

    def _logged(self, name, fn):
        def call(*args, **kwargs):
            self.log.append((name, self.inside))
            return fn(*args, **kwargs)
        return call

    def capture(self, run):
        if self.refuse:
            raise RuntimeError("operation not permitted when stream is capturing")
        self.captures += 1

        def launch():
            self.launches += 1
            self.inside = True
            try:
                run()
            finally:
                self.inside = False
        return launch


@pytest.fixture(scope="module")
def graph_device():
    from gpugrad.kernels import shim
    if not shim.available():
        pytest.skip("no g++ for the CPU shim")
    dev = _GraphDevice(shim.kernel_table(max_blocks=4))
    _compile._device._devices[("graph", 7)] = dev      # so that gg.manual_seed reaches it
    yield dev
    del _compile._device._devices[("graph", 7)]


def test_a_captured_step_launches_one_graph_and_draws_dropout_from_device_state(graph_device):
    dev = graph_device
    dev.reset()
    xs, ys = _data(6)
    xs = [x.to(dev) for x in xs]
    ys = [y.to(dev) for y in ys]
    eager = _setup(OPTIMIZERS["sgd_momentum"], dropout=0.3, device=dev)
    compiled = _setup(OPTIMIZERS["sgd_momentum"], dropout=0.3, device=dev)
    step = gg.compile(compiled[3])
    gg.manual_seed(9)
    expected = [eager[3](x, y).numpy() for x, y in zip(xs, ys)]
    gg.manual_seed(9)
    got = []
    for i, (x, y) in enumerate(zip(xs, ys)):
        if i == 3:
            got.append(compiled[3](x, y).numpy())      # an eager step moves the stream
        else:
            got.append(step(x, y).numpy())
    assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]
    _same_state(eager, compiled)
    plan = step.plan
    assert plan.graphs == 1 and dev.captures == 1       # the whole step: one graph
    assert dev.launches == len(xs) - 2                   # one launch per replay
    stream = plan._dropout_streams[dev]
    assert int(stream.state[1]) == dev.generator.philox.offset   # advanced on the device


CAPTURED_OPTIMIZERS = dict(OPTIMIZERS, **{
    "adam_amsgrad": lambda ps: gg.optim.Adam(ps, lr=1e-2, amsgrad=True),
    "adamw_amsgrad_maximize": lambda ps: gg.optim.AdamW(ps, lr=1e-2, weight_decay=0.1,
                                                        amsgrad=True, maximize=True),
    "sgd_maximize": lambda ps: gg.optim.SGD(ps, lr=0.05, momentum=0.9, maximize=True),
    "two_groups": lambda ps: (lambda ps: gg.optim.Adam([{"params": ps[:2], "lr": 3e-3},
                                                        {"params": ps[2:]}], lr=1e-2))(
                                                            list(ps))})


def _on(dev, xs, ys):
    return [x.to(dev) for x in xs], [y.to(dev) for y in ys]


@pytest.mark.parametrize("name", list(CAPTURED_OPTIMIZERS))
def test_a_captured_step_holds_the_optimizer_updates_in_its_one_graph(graph_device, name):
    """Forward, backward and the optimizer's updates are one graph launch per replay; the
    updates inside it read their scalars from the device (the eager update kernels never
    run in a replay), and the result is bit for bit the eager one, a schedule changing the
    learning rate between replays included."""
    dev = graph_device
    dev.reset()
    xs, ys = _on(dev, *_data(6))
    schedule = lambda opt: gg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)  # noqa: E731
    eager = _setup(CAPTURED_OPTIMIZERS[name], schedule=schedule, device=dev)
    compiled = _setup(CAPTURED_OPTIMIZERS[name], schedule=schedule, device=dev)
    step = gg.compile(compiled[3])
    expected = _run(eager[3], eager[2], xs, ys)
    gg.manual_seed(7)
    got = [step(xs[0], ys[0]).numpy()]        # recorded: an eager step
    compiled[2].step()
    dev.log.clear()
    for x, y in zip(xs[1:], ys[1:]):
        got.append(step(x, y).numpy())
        compiled[2].step()
    assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]
    _same_state(eager, compiled)
    plan = step.plan
    assert plan.graphs == 1 and dev.captures == 1 and dev.launches == len(xs) - 1
    assert plan.calls == [plan._replay_whole]             # no host work between launches
    replayed = dev.log
    update = "adam_update_dev" if "adam" in name or name == "two_groups" else "sgd_update_dev"
    assert (update, True) in replayed
    assert all(inside for _, inside in replayed if _ != "fused_update_ok")
    assert not any(n in ("sgd_update", "adam_update") for n, _ in replayed)
    assert "1 CUDA graph launch, the optimizer updates inside" in str(plan)


def test_a_state_buffer_replaced_between_replays_is_captured_anew(graph_device):
    """load_state_dict gives the optimizer new state arrays: the graph read the old ones,
    so the next replay captures again, reading the new ones."""
    dev = graph_device
    dev.reset()
    xs, ys = _on(dev, *_data(5))
    runs = [_setup(OPTIMIZERS["adam_wd"], device=dev) for _ in range(2)]
    step = gg.compile(runs[1][3])
    results = []
    for which, fn in ((0, runs[0][3]), (1, step)):
        model, opt = runs[which][:2]
        out = []
        for i, (x, y) in enumerate(zip(xs, ys)):
            if i == 3:
                state = opt.state_dict()
                for entry in state["state"].values():
                    entry["exp_avg"] = entry["exp_avg"] * 0.5
                opt.load_state_dict(state)
            out.append(fn(x, y).numpy().tobytes())
        results.append(out)
    assert results[0] == results[1]
    _same_state(runs[0], runs[1])
    assert dev.captures == 2 and dev.launches == len(xs) - 1


def test_a_step_that_cannot_be_captured_replays_launch_by_launch(graph_device):
    dev = graph_device
    dev.reset()
    dev.refuse = True
    xs, ys = _on(dev, *_data(4))
    eager = _setup(OPTIMIZERS["sgd_nesterov_wd"], device=dev)
    compiled = _setup(OPTIMIZERS["sgd_nesterov_wd"], device=dev)
    step = gg.compile(compiled[3])
    expected = _run(eager[3], None, xs, ys)
    with pytest.warns(RuntimeWarning, match="could not be captured"):
        got = _run(step, None, xs, ys)
    dev.refuse = False
    assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]
    _same_state(eager, compiled)
    assert step.plan.graphs == 0 and dev.launches == 0


@pytest.mark.parametrize("m,k,n", [(5, 3, 4), (1, 7, 2), (6, 1, 3), (4, 4, 1), (128, 64, 10)])
def test_the_cublas_call_of_a_captured_gemm_computes_a_at_b_in_every_layout(m, k, n):
    """The arguments given to cublasGemmEx, run through a column-major emulation of it:
    row-major operands and transposed views (a Linear layer's w.T) alike."""
    from gpugrad.kernels import cublas
    rng = np.random.default_rng(m * k * n)
    a = rng.standard_normal((m, k)).astype(np.float32)
    b = rng.standard_normal((k, n)).astype(np.float32)
    for left in (a, np.ascontiguousarray(a.T).T):
        for right in (b, np.ascontiguousarray(b.T).T):
            out = np.empty((m, n), np.float32)
            args = cublas.gemm_arguments(left.shape, left.strides, right.shape, right.strides,
                                         out.shape, out.strides, 4)
            np.testing.assert_allclose(cublas.emulate_gemm(args, left, right), a @ b,
                                       rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="do not match"):
        cublas.gemm_arguments((2, 3), (12, 4), (2, 3), (12, 4), (2, 3), (12, 4), 4)


def test_the_cublas_library_loads_and_its_entry_points_resolve():
    from gpugrad.kernels import cublas
    if not cublas.library_candidates():
        pytest.skip("no libcublas here (CuPy's CUDA libraries or nvidia-cublas)")
    lib = cublas.load()
    for name in cublas.SYMBOLS:
        assert getattr(lib, name).restype is not None, name


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["sgd_momentum", "sgd_nesterov_wd", "adam", "adamw",
                                  "adam_amsgrad", "adamw_amsgrad_maximize"])
def test_on_a_gpu_a_replay_is_one_graph_launch_and_bit_identical_to_eager(name):
    """The real capture: forward, backward and the optimizer updates in one CUDA graph
    (the updates reading lr and bias terms from the device), bit for bit the eager step,
    with a schedule changing the learning rate between replays."""
    if not gg.cuda_available():
        pytest.skip("needs a CUDA device")
    xs, ys = _data(6, device="cuda")
    schedule = lambda opt: gg.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.5)  # noqa: E731
    eager = _setup(CAPTURED_OPTIMIZERS[name], dropout=0.2, schedule=schedule, device="cuda")
    compiled = _setup(CAPTURED_OPTIMIZERS[name], dropout=0.2, schedule=schedule,
                      device="cuda")
    step = gg.compile(compiled[3])
    expected = _run(eager[3], eager[2], xs, ys)
    got = _run(step, compiled[2], xs, ys)
    assert step.plan.graphs == 1 and step.plan.calls == [step.plan._replay_whole]
    assert [e.tobytes() for e in expected] == [g.tobytes() for g in got]
    _same_state(eager, compiled)


@pytest.mark.gpu
def test_on_a_gpu_memory_stays_flat_over_a_thousand_replays():
    if not gg.cuda_available():
        pytest.skip("needs a CUDA device")
    xs, ys = _data(2, device="cuda")
    compiled = _setup(OPTIMIZERS["adamw"], dropout=0.2, device="cuda")
    step = gg.compile(compiled[3])
    for i in range(3):
        step(xs[i % 2], ys[i % 2])
    dev = gg.device("cuda")
    dev.synchronize()
    mem = gg.memory.stats(dev)["current_bytes"]
    for i in range(1000):
        loss = step(xs[i % 2], ys[i % 2])
    dev.synchronize()
    assert np.isfinite(loss.numpy())
    assert step.plan.graphs == 1
    assert gg.memory.stats(dev)["current_bytes"] <= mem + 4096


def _step_with(extra):
    rng = np.random.default_rng(0)
    w = gg.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    opt = gg.optim.SGD([w], lr=0.1)

    def step(x):
        opt.zero_grad()
        y = x @ w
        loss = extra(y, w)
        loss.backward()
        if extra is _clip:
            gg.nn.utils.clip_grad_norm_([w], 0.5)
        opt.step()
        return loss
    return step


def _clip(y, w):
    return (y * y).sum()


@pytest.mark.parametrize("name, extra", [
    ("max(dim)", lambda y, w: y.max(1).values.sum()),
    ("min(dim)", lambda y, w: y.min(1)[0].sum()),
    ("clip_grad_norm_", _clip),
    ("index_put", lambda y, w: gg.ops.index_put(y, (gg.tensor([0, 1]),),
                                                gg.tensor([1.0, 2.0, 3.0])).sum()),
    ("computed outside the kernels", lambda y, w: (y * y.argmax(1, keepdim=True)).sum()),
    ("masked_select", lambda y, w: gg.masked_select(
        y, gg.tensor([[True, False, True], [False, True, True]])).sum()),
    ("nonzero", lambda y, w: (y.sum() * y.nonzero().shape[0])),
    ("softmax_cross_entropy", lambda y, w: gg.ops.softmax_cross_entropy(
        y, gg.tensor([0, 2]), reduction="none").sum()),
])
def test_host_computations_from_the_data_are_refused_while_recording(name, extra):
    """Each was computed on the host from the recording's data and reused by every replay
    (max(dim) picked the recorded positions, clip_grad_norm_ was not replayed at all): a
    wrong number, silently. Recording now refuses them; eager runs them as before."""
    x = gg.tensor(np.random.default_rng(1).standard_normal((2, 4)).astype(np.float32))
    _step_with(extra)(x)                                   # eager: fine
    with pytest.raises(RuntimeError, match=r"gg\.compile") as err:
        gg.compile(_step_with(extra))(x)
    assert name.split("(")[0] in str(err.value)
