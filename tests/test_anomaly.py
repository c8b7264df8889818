"""gg.autograd.detect_anomaly: the op, the phase and the user's line of the first NaN."""
import numpy as np
import pytest

import gpugrad as gg
from gpugrad._autograd import graph
from gpugrad._autograd.mode import state
from gpugrad.autograd import detect_anomaly

HERE = __file__
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")   # NaNs on purpose


def _line_of(marker):
    with open(HERE) as fh:
        for i, line in enumerate(fh, 1):
            if marker in line and "_line_of" not in line:
                return i
    raise AssertionError(marker)


@pytest.fixture(params=["immediate", "queued"])
def mode(request, monkeypatch):
    # "queued" runs the GPU's way on the CPU: flags queued, read at the end of each pass
    monkeypatch.setattr(detect_anomaly, "_defer_on_cpu", request.param == "queued")
    return request.param


def test_a_forward_nan_names_the_op_and_the_users_line(mode):
    x = gg.tensor([-1.0, 4.0], requires_grad=True)
    with pytest.raises(FloatingPointError) as info:
        with detect_anomaly():
            y = gg.exp(x)
            z = gg.sqrt(-y)   # marker: forward-nan
            w = z * 2.0       # NaN flows on, but only the first op is named
            w.sum().backward()
    msg = str(info.value)
    assert "op 'sqrt'" in msg and "forward" in msg
    assert f"test_anomaly.py:{_line_of('marker: forward-nan')}" in msg


def test_a_backward_nan_names_the_forward_op_whose_rule_made_it(mode):
    x = gg.tensor([0.0, 2.0], requires_grad=True)
    with detect_anomaly():
        gg.log(x * x)         # forward: -inf, not a NaN: allowed
    with pytest.raises(FloatingPointError) as info:
        with detect_anomaly():
            y = gg.log(x)     # marker: log-backward
            y.sum().backward()  # log's rule computes g / x = 1 / 0 = inf
    msg = str(info.value)
    assert "backward of op 'log'" in msg and "inf" in msg and "div" not in msg
    assert f"test_anomaly.py:{_line_of('marker: log-backward')}" in msg


def test_a_nan_made_by_a_rule_is_charged_to_that_rule_not_to_later_ones(mode):
    x = gg.tensor([0.0, 1.0], requires_grad=True)
    with pytest.raises(FloatingPointError) as info:
        with detect_anomaly():
            s = gg.sqrt(x)          # rule: g / (2 sqrt x) -> inf at 0
            (s * 0.0).sum().backward()   # the cotangent reaching sqrt is 0: 0 / 0 = nan
    assert "backward of op 'sqrt'" in str(info.value) and "nan" in str(info.value)


def test_without_the_context_nothing_is_checked_and_nothing_is_installed():
    runner = graph.profiler
    x = gg.tensor([0.0, 1.0], requires_grad=True)
    y = gg.log(x)
    y.sum().backward()                      # inf gradient, silently, as PyTorch
    assert np.isinf(x.grad.numpy()[0])
    with detect_anomaly():
        assert gg.autograd.is_anomaly_enabled()
    assert graph.profiler is runner and graph.on_record is None and graph.anomaly is None
    assert not gg.autograd.is_anomaly_enabled()


def test_clean_computations_pass_and_the_engine_stays_usable_after_an_error(mode):
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    with detect_anomaly():
        (gg.log(x) * gg.sqrt(x)).sum().backward()
    assert np.all(np.isfinite(x.grad.numpy()))
    with pytest.raises(FloatingPointError):
        with detect_anomaly():
            gg.log(x - 5.0)
    assert graph.anomaly is None and not state.in_backward and gg.is_grad_enabled()
    x.grad = None
    gg.log(x).sum().backward()
    assert np.allclose(x.grad.numpy(), [1.0, 0.5])


def test_the_profiler_still_sees_ops_under_detect_anomaly():
    x = gg.tensor([1.0, 2.0], requires_grad=True)
    with gg.profiler.profile() as prof:
        with detect_anomaly():
            gg.exp(x).sum().backward()
    assert any(e.name == "exp" for e in prof.events)


def test_a_recorded_backward_is_checked_too(mode):
    x = gg.tensor([0.0, 2.0], requires_grad=True)
    with pytest.raises(FloatingPointError, match="backward of op 'log'"):
        with detect_anomaly():
            (g,) = gg.autograd.grad(gg.log(x).sum(), x, create_graph=True)


def test_the_context_is_per_thread():
    """Another thread's NaNs pass unchecked, as PyTorch's anomaly mode is thread-local."""
    import threading
    results = {}

    def other():
        y = gg.sqrt(gg.tensor([-1.0]))       # NaN, but this thread has no context open
        results["other"] = (bool(np.isnan(y.numpy()[0])), gg.autograd.is_anomaly_enabled())

    with detect_anomaly():
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
        assert gg.autograd.is_anomaly_enabled()
    assert results["other"] == (True, False)


def test_the_optimizer_and_the_profiler_api_work_inside():
    model = gg.nn.Linear(3, 2)
    opt = gg.optim.SGD(model.parameters(), lr=0.1)
    before = model.weight.numpy().copy()
    with detect_anomaly():
        assert gg.profiler.active() is None          # the checker is not a profile
        model(gg.ones(4, 3)).sum().backward()
        opt.step()
        with gg.profiler.profile() as prof:
            assert gg.profiler.active() is prof
    assert not np.array_equal(before, model.weight.numpy())
