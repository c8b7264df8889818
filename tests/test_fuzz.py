"""The differential fuzzer (tests/fuzz.py) from a fixed seed, and the fuzzer itself: its
table covers every op, and a failure comes back shrunk and runnable."""
import os
import subprocess
import sys

import numpy as np

import gpugrad as gg

from . import fuzz

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CI_PROGRAMS = 300


def test_fixed_seed_programs_agree_with_differences_and_each_other():
    checked, failures = fuzz.run(CI_PROGRAMS, seed=2024, use_torch=True, report=lambda _: None)
    assert checked == CI_PROGRAMS
    assert not failures, "\n\n".join(text for _, text in failures)


def test_every_op_is_reached_by_the_fuzzer_or_excused():
    ops = set(gg.ops.__all__)
    missing = ops - fuzz.covered_ops() - set(fuzz.NOT_FUZZED)
    assert not missing, f"ops the fuzzer never draws: {sorted(missing)}"
    stale = (set(fuzz.REACHED_INDIRECTLY) | set(fuzz.NOT_FUZZED)) - ops
    assert not stale, f"table entries for ops that no longer exist: {sorted(stale)}"


def test_programs_cover_every_row_and_stay_in_range():
    drawn = set()
    for index in range(600):       # enough for every row to come up (the last at 424 of 197 rows)
        prog = fuzz.generate(7, index)
        assert fuzz.MIN_STEPS <= len(prog.steps) <= fuzz.MAX_STEPS
        assert fuzz.valid(prog)
        drawn.update(s.op for s in prog.steps)
    assert drawn == {row.name for row in fuzz.FUZZ_OPS}


def _broken_program():
    """Five steps, one of which has a wrong NumPy reference (sin for cos)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(2, 3))
    steps = [
        fuzz.Step("tanh", "v0", ("x0",), "gg.tanh({0})", "np.tanh({0})", "torch.tanh({0})",
                  (2, 3)),
        fuzz.Step("mul", "v1", ("v0", "x0"), "{0} * {1}", "{0} * {1}", "{0} * {1}", (2, 3)),
        fuzz.Step("cos", "v2", ("v1",), "gg.cos({0})", "np.sin({0})", "torch.cos({0})",
                  (2, 3)),
        fuzz.Step("exp", "v3", ("v2",), "gg.exp({0})", "np.exp({0})", "torch.exp({0})",
                  (2, 3)),
        fuzz.Step("sum", "v4", ("v3",), "gg.sum({0}, axis=-1, keepdims=False)",
                  "np.sum({0}, axis=-1, keepdims=False)", "torch.sum({0}, dim=-1)", (2,)),
    ]
    return fuzz.Program([x], steps, "v4", np.ones(2))


def test_a_failure_is_shrunk_and_printed_as_a_runnable_program(tmp_path):
    prog = _broken_program()
    assert {m.check for m in fuzz.check_program(prog)} >= {"value"}
    small = fuzz.shrink(prog, lambda p: "value" in {m.check for m in fuzz.check_program(p)})
    assert [s.op for s in small.steps] == ["cos", "sum"]     # sum keeps the output's shape
    script = tmp_path / "repro.py"
    script.write_text(fuzz.repro(small, fuzz.check_program(small)))
    env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu")
    result = subprocess.run([sys.executable, str(script)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "value:" in result.stdout
    assert "def program(x0):" in script.read_text()


def test_differences_across_a_step_are_not_trusted_and_smooth_ones_are():
    def fn(h):
        return [np.array([np.floor(2.99999 + 1e3 * h), np.sin(0.3 + h)])]
    (best,), (error,) = fuzz._difference(fn, 1e-5)
    assert error[0] == np.inf                     # floor steps between h and -h
    assert error[1] < 1e-9 and abs(best[1] - np.cos(0.3)) < 1e-9
