"""Profiler, Chrome trace, calibration, graph pictures and their commands."""
import json
import os
import shutil
import subprocess
import sys

import pytest

import gpugrad as gg
from gpugrad._autograd import graph as _graph

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _step():
    x = gg.randn(32, 16, device="cpu")
    w = gg.randn(8, 16, device="cpu", requires_grad=True)
    loss = gg.nn.functional.cross_entropy(gg.nn.functional.linear(x, w),
                                          gg.tensor([1, 2, 3, 4] * 8, device="cpu"))
    loss.backward()
    return loss


def test_profile_records_forward_and_backward_with_costs():
    with gg.profiler.profile() as prof:
        _step()
    assert _graph.profiler is None
    phases = {(e.name, e.phase) for e in prof.events}
    assert ("matmul", "forward") in phases and ("matmul", "backward") in phases
    assert ("softmax_xent", "forward") in phases and ("softmax_xent_grad", "backward") in phases
    mm = next(e for e in prof.events if e.name == "matmul" and e.phase == "forward")
    assert mm.shapes == ((32, 16), (16, 8))
    assert mm.flops == 2 * 32 * 16 * 8 and mm.bytes == (32 * 16 + 16 * 8 + 32 * 8) * 4
    assert mm.duration > 0 and mm.dtype == "float32" and mm.device == "cpu"
    assert all(e.start >= 0 for e in prof.events)


def test_nothing_is_recorded_outside_a_profile():
    with gg.profiler.profile() as prof:
        pass
    _step()
    assert prof.events == [] and _graph.profiler is None


def test_table_groups_by_op_and_phase():
    with gg.profiler.profile() as prof:
        for _ in range(3):
            _step()
    text = prof.table(sort_by="calls", top=5)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["op", "phase", "calls", "total"]
    assert len(lines) == 2 + 5 + 1
    calls = [int(line.split()[2]) for line in lines[2:7]]
    assert calls == sorted(calls, reverse=True)
    with pytest.raises(ValueError, match="sort_by"):
        prof.table(sort_by="colour")


def test_chrome_trace_has_lanes_and_a_memory_counter(tmp_path):
    with gg.profiler.profile() as prof:
        _step()
    path = tmp_path / "trace.json"
    prof.export_chrome_trace(str(path))
    trace = json.loads(path.read_text())["traceEvents"]
    ops = [e for e in trace if e["ph"] == "X"]
    assert len(ops) == len(prof.events)
    assert {e["tid"] for e in ops} == {1, 2}
    assert all(e["dur"] > 0 and "flops" in e["args"] for e in ops)
    assert any(e["ph"] == "C" and e["name"] == "memory" for e in trace)
    assert {e["args"]["name"] for e in trace if e.get("name") == "thread_name"} == \
        {"forward", "backward"}
    assert os.listdir(tmp_path) == ["trace.json"]


def test_calibrate_measures_and_caches():
    first = gg.profiler.calibrate("cpu")
    assert first["copy_gbps"] > 0.1 and first["gemm_gflops"] > 0.1
    assert gg.profiler.calibrate("cpu") is first


def test_to_dot_forward_and_backward_graphs():
    x = gg.randn(3, device="cpu", requires_grad=True)
    y = (x.exp() * x).sum()
    fwd = gg.viz.to_dot(y)
    bwd = gg.viz.to_dot(y, backward=True)
    assert fwd.startswith("digraph forward") and bwd.startswith("digraph backward")
    for name in ("exp", "mul", "sum", "leaf (3,)"):
        assert name in fwd
    assert "mul.vjp[0]" in bwd and "mul.vjp[1]" in bwd and "AccumulateGrad" in bwd
    # the same edges, reversed: every forward edge a -> b appears as b -> a in backward
    def edges(text):
        return {tuple(line.split("[")[0].split(" -> ")) for line in text.splitlines()
                if " -> " in line and "out" not in line}
    f_edges = {(a.strip(), b.strip()) for a, b in edges(fwd)}
    b_edges = {(b.strip(), a.strip()) for a, b in edges(bwd)}
    assert f_edges == b_edges and len(f_edges) == 4
    with pytest.raises(ValueError, match="no recorded graph"):
        gg.viz.to_dot(x)


def _cli(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu")
    return subprocess.run([sys.executable, "-m", "gpugrad", *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_profile_command_prints_table_and_writes_trace(tmp_path):
    trace = tmp_path / "t.json"
    result = _cli("profile", "--steps", "2", "--hidden", "32", "--trace", str(trace))
    assert result.returncode == 0, result.stderr
    assert "matmul" in result.stdout and "backward" in result.stdout
    assert "adam_update" in result.stdout and "optimizer" in result.stdout
    assert json.loads(trace.read_text())["traceEvents"]


def test_profile_command_roofline(tmp_path):
    pytest.importorskip("matplotlib")
    png = tmp_path / "roof.png"
    result = _cli("profile", "--steps", "1", "--hidden", "32", "--roofline", str(png))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_graph_command(tmp_path):
    result = _cli("graph", "--output", str(tmp_path / "g.svg"), "--backward")
    assert result.returncode == 0, result.stderr
    if shutil.which("dot"):
        assert (tmp_path / "g.svg").read_text().lstrip().startswith(("<?xml", "<svg"))
    else:
        assert "digraph backward" in (tmp_path / "g.dot").read_text()


def test_an_empty_profile_says_nothing_was_recorded():
    with gg.profiler.profile() as prof:
        pass
    text = prof.table()
    assert "nothing recorded" in text and "1000.000" not in text
    assert len(text.splitlines()) == 3


@pytest.mark.parametrize("make_opt, kernel", [
    (lambda ps: gg.optim.Adam(ps, lr=1e-3), "adam_update"),
    (lambda ps: gg.optim.AdamW(ps, lr=1e-3), "adamw_update"),
    (lambda ps: gg.optim.SGD(ps, lr=0.1, momentum=0.9), "sgd_update"),
])
def test_optimizer_updates_are_events_of_their_own_phase(tmp_path, make_opt, kernel):
    model = gg.nn.MLP([16, 8, 4], device="cpu")
    opt = make_opt(model.parameters())
    gg.nn.functional.cross_entropy(model(gg.randn(5, 16, device="cpu")),
                                   gg.tensor([0, 1, 2, 3, 0], device="cpu")).backward()
    with gg.profiler.profile() as prof:
        opt.step()
    params = list(model.parameters())
    assert [e.name for e in prof.events] == [kernel] * len(params)
    assert {e.phase for e in prof.events} == {"optimizer"}
    for e, p in zip(prof.events, params):
        assert e.shapes == (tuple(p.shape),) and e.dtype == "float32"
        assert e.duration > 0 and e.flops > 0 and e.bytes >= 3 * p.numel() * 4
    text = prof.table()
    assert f"{kernel}" in text and "optimizer" in text
    assert f"{len(params)} kernel calls" in text
    prof.export_chrome_trace(str(tmp_path / "t.json"))
    trace = json.loads((tmp_path / "t.json").read_text())["traceEvents"]
    lanes = {e["args"]["name"]: e["tid"] for e in trace if e.get("name") == "thread_name"}
    assert lanes == {"optimizer": 3}
    assert {e["tid"] for e in trace if e["ph"] == "X"} == {3}


def test_optimizer_step_costs_nothing_extra_without_a_profiler(monkeypatch):
    p = gg.randn(3, device="cpu", requires_grad=True)
    (p * p).sum().backward()
    opt = gg.optim.Adam([p])

    def must_not_run(*args):
        raise AssertionError("the profiled path ran with no profile open")
    monkeypatch.setattr(gg.optim.Optimizer, "_profiled_update", must_not_run)
    before = p.numpy()
    opt.step()
    assert not (p.numpy() == before).any()
