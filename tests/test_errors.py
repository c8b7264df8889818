"""Bad input gets a clear error, and the engine stays usable afterwards."""
import numpy as np
import pytest

import gpugrad as gg
import gpugrad.nn.functional as F


def _still_works():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    (x * x).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_shape_mismatch_names_both_shapes_as_tuples():
    a, b = gg.ones(3, 4), gg.ones(5)
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        a + b
    with pytest.raises(ValueError, match=r"\(3, 4\).*\(5,\)"):
        a @ b
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(4, 5\)"):
        F.linear(gg.ones(2, 3), gg.ones(4, 5))
    _still_works()


def test_shape_mismatch_inside_recorded_graph_leaves_engine_usable():
    x = gg.tensor(np.ones((2, 2)), requires_grad=True)
    with pytest.raises(ValueError, match=r"\(2, 2\).*\(3,\)"):
        (x * 2) * gg.ones(3)
    _still_works()


def test_backward_without_any_input_requiring_grad_raises():
    y = (gg.ones(3) * 2).sum()
    with pytest.raises(RuntimeError, match="does not require grad"):
        y.backward()


def test_backward_on_non_scalar_needs_a_gradient():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="scalar"):
        (x * 2).backward()
    _still_works()


def test_backward_gradient_shape_and_dtype_are_checked():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x * 2
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        y.backward(gg.ones(3))
    with pytest.raises(TypeError, match="float64.*float32"):
        y.backward(gg.ones(2, dtype=gg.float64))


def test_integer_tensors_cannot_require_grad():
    with pytest.raises(TypeError, match="int64"):
        gg.tensor([1, 2], requires_grad=True)
    t = gg.arange(3)
    with pytest.raises(TypeError, match="floating"):
        t.requires_grad_()
    _still_works()


def test_unknown_device_string_is_named():
    with pytest.raises(ValueError, match="'tpu:3'"):
        gg.device("tpu:3")
    with pytest.raises(ValueError, match="'gpu0'"):
        gg.zeros(2, device="gpu0")
    _still_works()


def test_grad_assignment_is_checked():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        x.grad = gg.ones(3)
    with pytest.raises(TypeError, match="float64"):
        x.grad = gg.ones(2, dtype=gg.float64)


def test_writing_into_a_saved_array_is_caught_at_backward_with_the_op_name():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()            # exp saves its output
    z = (y + 3).sum()     # add saves nothing: only exp's saved output is at stake
    y.data[0] = 100.0
    with pytest.raises(RuntimeError, match="'exp'.*modified in place"):
        z.backward()
    w = gg.tensor([1.0, 2.0], requires_grad=True)
    p = w * w              # mul saves its inputs
    w.data[...] = 0.5
    with pytest.raises(RuntimeError, match="'mul'"):
        p.sum().backward()
    _still_works()


def test_inplace_ufunc_through_data_bumps_the_version():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x.sin()
    x.data += 1
    with pytest.raises(RuntimeError, match="'sin'"):
        y.sum().backward()


def test_reading_data_is_not_a_write():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    y = x.exp()
    _ = y.data.sum() + x.data[0]
    copy = y.data.numpy()      # .data is a Tensor sharing storage (PyTorch's); numpy() copies
    copy[0] = 5.0
    y.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.exp([1.0, 2.0]), rtol=1e-6)


def test_cross_entropy_label_errors():
    logits = gg.ones(3, 4, requires_grad=True)
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(logits, gg.ones(3))
    with pytest.raises(ValueError, match=r"\(2,\).*\(3, 4\)"):
        F.cross_entropy(logits, gg.tensor([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        F.cross_entropy(logits, gg.tensor([0, 1, 4]))
    # beside ignored rows too: only ignore_index is ignored on the CPU, as in PyTorch
    with pytest.raises(ValueError, match="label -1 is out of range"):
        F.cross_entropy(logits, gg.tensor([-100, -1, 2]))
    with pytest.raises(ValueError, match="label 4 is out of range"):
        F.cross_entropy(logits, gg.tensor([-100, 4, 2]), reduction="none")
    _still_works()


def test_gradcheck_reports_the_worst_element_of_a_wrong_rule():
    from gpugrad._autograd.graph import Op, apply

    class WrongSquare(Op):
        name = "wrong_square"
        save_inputs = True

        def forward(self, dev, p, x, out=None):
            return dev.xp.multiply(x, x, out=out)

        def vjp(self, g, ins, out, p, needs):
            return (g * ins[0] * 3,)       # should be 2x

        def jvp(self, ts, ins, out, p):
            return ts[0] * ins[0] * 2

    x = gg.tensor([0.5, 1.5], dtype=gg.float64, requires_grad=True)
    with pytest.raises(gg.GradcheckError, match="element 1"):
        gg.gradcheck(lambda t: apply(WrongSquare(), (t,)), (x,))


def test_missing_jvp_rule_names_the_op():
    from gpugrad._autograd.graph import Op, apply

    class NoRules(Op):
        name = "no_rules"

        def forward(self, dev, p, x, out=None):
            return dev.xp.add(x, 1, out=out)

    x = gg.tensor([1.0], requires_grad=True)
    with pytest.raises(NotImplementedError, match="no_rules.*VJP"):
        apply(NoRules(), (x,)).sum().backward()
    with pytest.raises(NotImplementedError, match="no_rules.*JVP"):
        gg.jvp(lambda t: apply(NoRules(), (t,)), (x.detach(),), (gg.ones(1),))
