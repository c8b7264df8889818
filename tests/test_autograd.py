"""The backward scheduler: order, fan-in, retention, higher order, modes."""
import gc

import numpy as np
import pytest

import gpugrad as gg


def test_mul_of_a_tensor_with_itself_gives_two_x():
    x = gg.tensor([1.5, -2.0, 3.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * x.numpy())


def test_contributions_from_several_paths_are_summed():
    x = gg.tensor([0.5, 1.0], dtype=gg.float64, requires_grad=True)
    a = x.exp()
    y = (a * x + a.sin() + a).sum()
    y.backward()
    xv = x.numpy()
    expected = np.exp(xv) * xv + np.exp(xv) + np.cos(np.exp(xv)) * np.exp(xv) + np.exp(xv)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-12)


def test_deep_chain_of_100k_nodes_runs_without_recursion():
    x = gg.tensor([1.0], dtype=gg.float64, requires_grad=True)
    y = x
    for _ in range(100_000):
        y = y * 1.0
    y.sum().backward()
    assert x.grad.item() == 1.0


def test_leaf_gradients_accumulate_across_backward_calls():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    (x * 3).sum().backward()
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [3 + 2, 3 + 4])


def test_second_backward_through_freed_graph_names_retain_graph():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()


def test_retain_graph_allows_a_second_backward():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = (x.exp() * x).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), 2 * first, rtol=1e-6)


def test_create_graph_gives_differentiable_gradients():
    x = gg.tensor([0.3, 0.7], dtype=gg.float64, requires_grad=True)
    y = (x ** 3).sum()
    (g,) = gg.autograd.grad(y, x, create_graph=True)
    assert g.requires_grad
    (h,) = gg.autograd.grad(g.sum(), x)
    np.testing.assert_allclose(h.numpy(), 6 * x.numpy())


def test_third_order_through_tanh():
    x = gg.tensor([0.4], dtype=gg.float64, requires_grad=True)
    y = x.tanh()
    (d1,) = gg.autograd.grad(y.sum(), x, create_graph=True)
    (d2,) = gg.autograd.grad(d1.sum(), x, create_graph=True)
    (d3,) = gg.autograd.grad(d2.sum(), x)
    t = np.tanh(0.4)
    np.testing.assert_allclose(d3.item(), -2 * (1 - t * t) * (1 - 3 * t * t), rtol=1e-10)


def test_grad_does_not_touch_dot_grad_and_handles_non_leaf_inputs():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 2
    y = (h * h).sum()
    gh, gx = gg.autograd.grad(y, [h, x])
    np.testing.assert_allclose(gh.numpy(), 2 * h.numpy())
    np.testing.assert_allclose(gx.numpy(), 8 * x.numpy())
    assert x.grad is None


def test_grad_of_unused_input_raises_unless_allowed():
    x = gg.tensor([1.0], requires_grad=True)
    z = gg.tensor([2.0], requires_grad=True)
    y = (x * 2).sum()
    with pytest.raises(RuntimeError, match="allow_unused"):
        gg.autograd.grad(y, [x, z], retain_graph=True)
    gx, gz = gg.autograd.grad(y, [x, z], allow_unused=True)
    assert gz is None and gx.item() == 2.0


def test_retain_grad_keeps_a_non_leaf_gradient_and_others_are_dropped():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    m = h * 2
    (m * m).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 8 * h.numpy())
    with pytest.warns(UserWarning, match="retain_grad"):
        assert m.grad is None


def test_no_grad_records_nothing_and_enable_grad_turns_it_back_on():
    x = gg.tensor([1.0], requires_grad=True)
    with gg.no_grad():
        y = x * 2
        with gg.enable_grad():
            z = x * 2
    assert not y.requires_grad and y.is_leaf
    assert z.requires_grad and not z.is_leaf

    @gg.no_grad()
    def f(t):
        return t * 3
    assert not f(x).requires_grad


def test_detach_cuts_the_graph_and_shares_data():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    d = (x * 2).detach()
    assert d.is_leaf and not d.requires_grad
    y = (d * x).sum()
    y.backward()
    np.testing.assert_allclose(x.grad.numpy(), d.numpy())


def test_broadcast_gradients_are_summed_back_to_input_shape():
    a = gg.tensor(np.ones((3, 1, 4)), requires_grad=True)
    b = gg.tensor(np.ones((2, 1)), requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == (3, 1, 4) and b.grad.shape == (2, 1)
    np.testing.assert_allclose(b.grad.numpy(), np.full((2, 1), 12.0))


def test_mixed_dtype_gradient_is_cast_back_to_the_input_dtype():
    a = gg.tensor([1.0, 2.0], requires_grad=True)            # float32
    b = gg.tensor(np.array([3.0, 4.0]), requires_grad=True)  # float64
    (a * b).sum().backward()
    assert a.grad.dtype == gg.float32 and b.grad.dtype == gg.float64


def test_graph_has_no_reference_cycles():
    gc.collect()
    gc.disable()
    try:
        import weakref
        x = gg.tensor(np.ones(300), requires_grad=True)
        h = (x.exp() * x).tanh()
        y = gg.softmax(h, -1).sum()
        node_ref = weakref.ref(y.grad_fn)
        (g,) = gg.autograd.grad(y, x, create_graph=True)
        g_node = weakref.ref(g.grad_fn)
        del y, h, g
        assert node_ref() is None and g_node() is None
    finally:
        gc.enable()


def test_forward_mode_jvp_of_a_composite():
    x = gg.tensor([0.2, 0.9], dtype=gg.float64)
    v = gg.tensor([1.0, -2.0], dtype=gg.float64)
    out, t = gg.jvp(lambda x: (x.sin() * x).sum(), (x,), (v,))
    xv = x.numpy()
    expected = np.sum((np.cos(xv) * xv + np.sin(xv)) * v.numpy())
    assert t.item() == pytest.approx(expected, rel=1e-12)


def test_nested_jvp_has_no_perturbation_confusion():
    # d/dx [ x * d/dy (x + y) ] = d/dx [x * 1] = 1, not 2
    x = gg.tensor(1.0, dtype=gg.float64)
    one = gg.tensor(1.0, dtype=gg.float64)

    def outer(x):
        _, inner = gg.jvp(lambda y: x + y, (one,), (one,))
        return x * inner
    _, t = gg.jvp(outer, (x,), (one,))
    assert t.item() == 1.0


def test_nested_jvp_gives_second_derivative():
    x = gg.tensor(0.7, dtype=gg.float64)
    one = gg.tensor(1.0, dtype=gg.float64)

    def first(x):
        return gg.jvp(lambda z: z.exp() * z, (x,), (one,))[1]
    _, second = gg.jvp(first, (x,), (one,))
    assert second.item() == pytest.approx(np.exp(0.7) * (0.7 + 2), rel=1e-12)


def test_forward_over_reverse_matches_reverse_over_reverse():
    x = gg.tensor([0.3, -0.4, 0.8], dtype=gg.float64, requires_grad=True)
    v = gg.tensor([1.0, 0.5, -1.0], dtype=gg.float64)

    def f(x):
        return (gg.softmax(x * x, -1) * x.tanh()).sum()

    def grad_f(x):
        return gg.autograd.grad(f(x), x, create_graph=True)[0]
    _, hv_fwd = gg.jvp(grad_f, (x,), (v,))
    g = grad_f(x)
    (hv_rev,) = gg.autograd.grad(g, x, v)
    np.testing.assert_allclose(hv_fwd.numpy(), hv_rev.numpy(), rtol=1e-10, atol=1e-12)
