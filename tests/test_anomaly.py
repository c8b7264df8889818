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
