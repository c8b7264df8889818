"""Transforms composed with each other, with closures and with threads: the cases a stress
run found giving wrong numbers without an error. Only the public API is used."""
import gc
import sys
import threading
import weakref

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F


def t64(a, requires_grad=False):
    return gg.tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


# -- reverse over reverse through closed-over tensors ------------------------------------------
def test_grad_of_a_function_whose_inner_grad_closes_over_the_outer_argument():
    # d/dx [x * d/dy (x y)] = d/dx x^2 = 2x
    y0 = t64(2.0)
    outer = gg.grad(lambda x: (x * gg.grad(lambda y: (x * y).sum())(y0)).sum())
    assert outer(t64(3.0)).item() == pytest.approx(6.0)
    assert outer(t64(-1.25)).item() == pytest.approx(-2.5)


def test_grad_of_a_function_whose_inner_vjp_closes_over_the_outer_argument():
    y0 = t64([2.0, -1.0])

    def f(x):
        _, pullback = gg.vjp(lambda y: (x * y * y).sum(), y0)
        (g,) = pullback(t64(1.0))              # 2 x y0
        return (x * g).sum()                   # 2 x^2 sum(y0)
    assert gg.grad(f)(t64(3.0)).item() == pytest.approx(4 * 3.0 * float(np.sum([2.0, -1.0])))


def test_grad_of_a_closed_over_cube_matches_the_third_derivative_by_hand():
    # inner: d/dy (x^2 y^3) = 3 x^2 y^2; outer: d/dx of x * that = 9 x^2 y^2
    y0 = t64(0.7)
    h = gg.grad(lambda x: (x * gg.grad(lambda y: (x * x * y ** 3).sum())(y0)).sum())
    assert h(t64(1.3)).item() == pytest.approx(9 * 1.3 ** 2 * 0.7 ** 2)


def test_reverse_hvp_inside_grad_keeps_the_closed_over_tensor():
    v = t64([1.0, 2.0])
    y0 = t64([0.5, -0.3])

    def f(x):                                  # H of sum(x y^2) in y is 2x I, so Hv = 2 x v
        _, (hv,) = gg.hvp(lambda y: (x * y * y).sum(), (y0,), (v,), mode="rev")
        return (hv * hv).sum()                 # 4 x^2 |v|^2, derivative 8 x |v|^2
    assert gg.grad(f)(t64(0.8)).item() == pytest.approx(8 * 0.8 * 5.0)


def test_grad_of_a_model_with_weights_that_require_grad_records_for_the_weights():
    # torch.func.grad composes with ordinary autograd: the weight's gradient flows through
    w = t64([0.5, -2.0, 1.5], requires_grad=True)
    x = t64([1.0, 2.0, 3.0])
    g = gg.grad(lambda x: (w * x * x).sum())(x)          # 2 w x
    np.testing.assert_allclose(g.numpy(), 2 * w.numpy() * x.numpy())
    assert g.requires_grad
    g.sum().backward()
    np.testing.assert_allclose(w.grad.numpy(), 2 * x.numpy())


def test_grad_without_closed_over_tensors_still_returns_plain_tensors():
    x = t64([1.0, 2.0])
    g = gg.grad(lambda x: (x * x).sum())(x)
    assert not g.requires_grad
    value, grads = gg.value_and_grad(lambda x: (x.sin() * x).sum())(x)
    assert not value.requires_grad and not grads.requires_grad


# -- forward over reverse: tangents shared by several outputs -----------------------------------
def test_hvp_forward_over_reverse_when_a_cotangent_reaches_both_inputs_of_an_add():
    a, b = t64([0.5]), t64([0.5])
    f = lambda a, b: ((a + b) ** 3).sum()     # noqa: E731
    for mode in ("fwd", "rev"):
        _, (ha, hb) = gg.hvp(f, (a, b), (t64([1.0]), t64([0.0])), mode=mode)
        assert ha.item() == pytest.approx(6.0), mode
        assert hb.item() == pytest.approx(6.0), mode


def test_hvp_modes_agree_with_finite_differences_of_the_gradient():
    rng = np.random.default_rng(3)
    a, b = t64(rng.uniform(-1, 1, 4)), t64(rng.uniform(-1, 1, 4))
    ta, tb = t64(rng.uniform(-1, 1, 4)), t64(rng.uniform(-1, 1, 4))

    def f(a, b):
        s = a + b                              # one cotangent sent to both inputs
        return (s.tanh() * s + (a * b).exp()).sum()
    eps = 1e-5

    def gradient(sign):
        return gg.grad(f, argnums=(0, 1))(t64(a.numpy() + sign * eps * ta.numpy()),
                                          t64(b.numpy() + sign * eps * tb.numpy()))
    plus, minus = gradient(1), gradient(-1)
    expected = [(p.numpy() - m.numpy()) / (2 * eps) for p, m in zip(plus, minus)]
    for mode in ("fwd", "rev"):
        _, hv = gg.hvp(f, (a, b), (ta, tb), mode=mode)
        for got, want in zip(hv, expected):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-6, atol=1e-8)


def test_jvp_of_a_function_returning_one_tensor_twice():
    x = t64([1.0, -2.0])

    def f(x):
        y = x.sin()
        return y, y
    (y1, y2), (t1, t2) = gg.jvp(f, (x,), (t64([1.0, 1.0]),))
    np.testing.assert_allclose(t1.numpy(), np.cos(x.numpy()))
    np.testing.assert_allclose(t2.numpy(), np.cos(x.numpy()))
    # the outputs keep no tangent of the finished call: a second jvp starts clean
    _, t3 = gg.jvp(lambda z: z * 2, (y1,), (t64([1.0, 0.0]),))
    np.testing.assert_allclose(t3.numpy(), [2.0, 0.0])


def test_a_finished_jvp_leaves_its_outputs_without_the_tangent():
    # the caller holds the only reference: the output keeps no tangent of a finished level
    x = t64([1.0, -2.0])
    out, tangent = gg.jvp(lambda x: x.sin() * x, (x,), (t64([1.0, 1.0]),))
    np.testing.assert_allclose(tangent.numpy(), np.cos(x.numpy()) * x.numpy()
                               + np.sin(x.numpy()))
    ref = weakref.ref(tangent)
    del tangent
    assert ref() is None
    assert out.tolist() == pytest.approx((np.sin(x.numpy()) * x.numpy()).tolist())


# -- forward over reverse frees its memory without the garbage collector ------------------------
@pytest.fixture
def collector_off():
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _f_reading_outputs(x, seen=None):
    y = x.exp()                                # exp, tanh, sigmoid and sqrt save their output
    if seen is not None:
        seen.append(weakref.ref(y))
    return (y * x.tanh() + x.sigmoid().sqrt()).sum()


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_hvp_leaves_nothing_for_the_collector(collector_off, mode):
    x = gg.randn(64, 64, dtype=gg.float64)
    v = gg.randn(64, 64, dtype=gg.float64)
    gg.hvp(_f_reading_outputs, (x,), (v,), mode=mode)   # warm caches
    base = gg.memory.stats()["current_bytes"]
    seen = []
    for _ in range(3):
        value, (hv,) = gg.hvp(lambda x: _f_reading_outputs(x, seen), (x,), (v,), mode=mode)
        del value, hv
    assert [r() for r in seen] == [None] * len(seen), "intermediates kept alive by a cycle"
    assert gg.memory.stats()["current_bytes"] == base


def test_nested_forward_mode_leaves_nothing_for_the_collector(collector_off):
    x = gg.randn(32, 32, dtype=gg.float64)
    v = gg.randn(32, 32, dtype=gg.float64)
    base = gg.memory.stats()["current_bytes"]
    seen = []
    out = gg.jvp(lambda y: gg.jvp(lambda z: _f_reading_outputs(z, seen), (y,), (v,))[1],
                 (x,), (v,))
    third = gg.grad(lambda y: gg.hvp(lambda z: _f_reading_outputs(z, seen), (y,), (v,))[1][0]
                    .sum())(x)
    fourth = gg.hvp(lambda y: gg.hvp(lambda z: _f_reading_outputs(z, seen), (y,), (v,))[1][0]
                    .sum(), (x,), (v,))
    del out, third, fourth
    assert [r() for r in seen] == [None] * len(seen)
    assert gg.memory.stats()["current_bytes"] == base


# -- modes are per thread ------------------------------------------------------------------------
def test_no_grad_in_one_thread_leaves_other_threads_recording():
    inside, release = threading.Event(), threading.Event()
    seen_in_thread = []

    def worker():
        with gg.no_grad():
            seen_in_thread.append(gg.is_grad_enabled())
            seen_in_thread.append((t64([1.0], requires_grad=True) * 3).requires_grad)
            inside.set()
            release.wait(5)
    thread = threading.Thread(target=worker)
    thread.start()
    try:
        assert inside.wait(5)
        assert gg.is_grad_enabled()
        w = t64([1.0, 2.0], requires_grad=True)
        assert (w * 3).requires_grad
    finally:
        release.set()
        thread.join()
    assert seen_in_thread == [False, False]
    assert gg.is_grad_enabled()


def test_threads_switching_grad_mode_at_once_each_record_as_their_own_mode_says():
    w = t64([1.0, 2.0], requires_grad=True)
    wrong = []

    def worker(k):
        for i in range(300):
            if (i + k) % 2:
                with gg.no_grad():
                    if (w * 2).requires_grad:
                        wrong.append(("recorded under no_grad", k, i))
            elif not (w * 2).requires_grad:
                wrong.append(("not recorded", k, i))
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, wrong[:5]
    assert (w * 2).requires_grad
    with gg.no_grad():
        assert not (w * 2).requires_grad


def test_a_new_thread_starts_with_grad_enabled():
    result = []
    with gg.no_grad():
        thread = threading.Thread(target=lambda: result.append(gg.is_grad_enabled()))
        thread.start()
        thread.join()
        assert not gg.is_grad_enabled()
    assert result == [True]


def _make_model(seed):
    gg.manual_seed(seed)
    model = gg.nn.MLP([6, 16, 3], activation="tanh")
    return model, gg.optim.Adam(model.parameters(), lr=1e-2)


def _train(model, opt, x, y, steps, log):
    for _ in range(steps):
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        for p in model.parameters():
            assert p.grad is not None
        opt.step()
        with gg.no_grad():
            log.append(F.cross_entropy(model(x), y).item())
        _, g = gg.jvp(lambda t: (t * t).sum(), (x,), (gg.ones_like(x),))
        log.append(g.item())


def test_two_threads_training_two_models_give_the_serial_results():
    rng = np.random.default_rng(0)
    data = [(gg.tensor(rng.standard_normal((12, 6)).astype(np.float32)),
             gg.tensor(rng.integers(0, 3, size=12))) for _ in range(2)]
    steps = 40
    serial = []
    for k in range(2):
        model, opt = _make_model(10 + k)
        log = []
        _train(model, opt, *data[k], steps, log)
        serial.append(([p.numpy().copy() for p in model.parameters()], log))

    runs = [_make_model(10 + k) for k in range(2)]
    logs, errors = [[], []], []

    def worker(k):
        try:
            _train(*runs[k], *data[k], steps, logs[k])
        except BaseException as err:   # reported below, with the thread's error
            errors.append(err)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)        # switch threads as often as the interpreter can
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(interval)
    assert not errors, errors
    assert gg.is_grad_enabled()
    for k in range(2):
        params, log = serial[k]
        assert logs[k] == log
        for got, want in zip(runs[k][0].parameters(), params):
            assert np.array_equal(got.numpy(), want)


# -- found by the fuzzer (tests/fuzz.py) ----------------------------------------------------------
def test_hvp_of_a_function_with_a_constant_gradient_is_zero_in_both_modes():
    x, y = t64([1.0, 2.0]), t64([[1.0, 0.9], [0.4, 0.2]])
    w = t64([1.0, 3.0])
    for mode in ("fwd", "rev"):
        _, (h0, h1) = gg.hvp(lambda a, b: (a * w).sum() + gg.max(b), (x, y), (x, y), mode=mode)
        assert h0.tolist() == [0.0, 0.0] and h1.tolist() == [[0.0, 0.0], [0.0, 0.0]], mode


def test_jvp_of_a_pullback_whose_cotangent_depends_on_the_primal():
    # p(x) = d/dt [tanh(t) x] . x at t = x = (1 - tanh(x)^2) x^2
    def p(x):
        return gg.vjp(lambda t: t.tanh() * x, x)[1](x)[0]
    x = t64([0.4, -0.7, 1.1])
    _, tangent = gg.jvp(p, (x,), (gg.ones_like(x),))
    a = x.numpy()
    sech2 = 1 - np.tanh(a) ** 2
    np.testing.assert_allclose(tangent.numpy(), -2 * np.tanh(a) * sech2 * a * a + 2 * a * sech2)


@pytest.mark.parametrize("mode", ["fwd", "rev"])
def test_grad_with_respect_to_the_tangent_of_an_hvp(mode):
    # hvp of sum(sin(t) t) at c along v is h(c) v, h(t) = 2 cos t - t sin t: d/dv sum = h(c)
    c = t64([-0.6, 0.3, 1.2])
    f = lambda t: (t.sin() * t).sum()      # noqa: E731
    g = gg.grad(lambda v: gg.hvp(f, (c,), (v,), mode=mode)[1][0].sum())(t64([0.5, 1.0, -2.0]))
    a = c.numpy()
    np.testing.assert_allclose(g.numpy(), 2 * np.cos(a) - a * np.sin(a))
    assert not g.requires_grad
    # the same with the tangent closed over by an inner gradient
    g = gg.grad(lambda v: gg.jvp(lambda t: gg.grad(lambda s: (s * s * t).sum())(c), (c,),
                                 (v,))[1].sum())(t64([0.5, 1.0, -2.0]))
    np.testing.assert_allclose(g.numpy(), 2 * a)
    assert not g.requires_grad


def test_grad_through_a_pullback_with_respect_to_its_cotangent():
    # p(w) = d/dt [tanh(t) c] at t = c, pulled back along w: (1 - tanh(c)^2) c w
    c = t64([-1.3, 0.4])
    p = lambda w: gg.vjp(lambda t: t.tanh() * c, c)[1](w)[0]    # noqa: E731
    expected = 1 - np.tanh(c.numpy()) ** 2
    jac = gg.jacobian(p, t64([1.5, -0.5]), mode="rev")
    np.testing.assert_allclose(jac.numpy(), np.diag(c.numpy() * expected))
    g = gg.grad(lambda w: p(w).sum())(t64([1.5, -0.5]))
    np.testing.assert_allclose(g.numpy(), c.numpy() * expected)


# -- found by the fuzzer on the PyTorch op set --------------------------------------------------
def test_an_element_picked_by_integers_is_a_view_of_its_base():
    # NumPy returns a copy for such an index: reads and writes through it were lost
    a = gg.tensor([1.0, 2.0, 3.0]).clone()
    first = a[0]
    a.mul_(2)
    assert first.item() == 2.0
    second = a[1]
    second += 10
    assert a.tolist() == [2.0, 14.0, 6.0]
    scalar = gg.tensor(5.0)
    alias = scalar[()]
    alias += 1
    assert scalar.item() == 6.0


def test_an_in_place_write_through_an_element_view_is_recorded():
    x = t64([-1.2, 0.1, -0.3], requires_grad=True)
    out = x.clone()
    row = out[0]
    row += t64(0.9)
    np.testing.assert_allclose(out.detach().numpy(), [-0.3, 0.1, -0.3])
    (out * out).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [-0.6, 0.2, -0.6])


def test_prod_over_everything_keeps_the_dims_when_asked():
    x = t64([[1.0, 2.0, 3.0], [0.5, 1.0, 2.0]])
    assert gg.prod(x, keepdim=True).shape == (1, 1) == gg.sum(x, keepdim=True).shape
    assert gg.prod(x, keepdim=True).item() == pytest.approx(6.0)
    assert gg.prod(x).shape == ()


def test_hstack_and_masked_scatter_take_zero_dimensional_tensors():
    a, b = t64(-0.5), t64(2.0)
    assert gg.hstack([a, b]).tolist() == [-0.5, 2.0]
    assert gg.vstack([a, b]).tolist() == [[-0.5], [2.0]]
    assert gg.masked_scatter(a, gg.tensor(True), b).item() == 2.0
    assert gg.masked_scatter(a, gg.tensor(False), b).item() == -0.5
