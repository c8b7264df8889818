"""The `gpugrad` command as a newcomer meets it: bad values refused by the parser with one
line naming the flag, output paths checked before any work, defaults shown, and the
commands that have nothing to do (no GPU, no Graphviz) saying so plainly."""
import os
import re
import subprocess
import sys

import pytest

import gpugrad as gg
from gpugrad import cli, training

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _refused(capsys, *argv):
    """The parser's one-line refusal (exit status 2) of ``gpugrad argv``."""
    with pytest.raises(SystemExit) as exc:
        cli.main(list(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    return err


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if a command gets as far as training or profiling."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command ran although its arguments were bad")
    monkeypatch.setattr(training, "train", refuse)
    monkeypatch.setattr(gg.data, "mnist", refuse)


@pytest.mark.parametrize("argv, wants", [
    (["train", "--lr", "nan"], "positive finite number"),
    (["train", "--lr", "inf"], "positive finite number"),
    (["train", "--lr", "0"], "positive finite number"),
    (["train", "--lr", "-0.1"], "positive finite number"),
    (["train", "--lr", "fast"], "positive finite number"),
    (["train", "--epochs", "0"], "positive integer"),
    (["train", "--epochs", "-3"], "positive integer"),
    (["train", "--epochs", "2.5"], "positive integer"),
    (["train", "--batch-size", "0"], "positive integer"),
    (["train", "--hidden", "0"], "positive integers separated by commas"),
    (["train", "--hidden", "abc"], "positive integers separated by commas"),
    (["train", "--hidden", "256,,128"], "positive integers separated by commas"),
    (["train", "--hidden", "-5"], "positive integers separated by commas"),
    (["train", "--seed", "-1"], "non-negative integer"),
    (["train", "--threads", "-1"], "non-negative integer"),
    (["profile", "--steps", "0"], "positive integer"),
    (["profile", "--top", "0"], "positive integer"),
    (["profile", "--hidden", "x"], "positive integers separated by commas"),
])
def test_meaningless_values_are_refused_naming_the_flag(capsys, no_training, argv, wants):
    err = _refused(capsys, *argv)
    flag, value = argv[1], argv[2]
    assert f"argument {flag}:" in err and wants in err and f"'{value}'" in err
    assert err.startswith(f"gpugrad {argv[0]}: error:")


def test_data_must_be_an_existing_folder(capsys, no_training, tmp_path):
    a_file = tmp_path / "train-images.gz"
    a_file.write_bytes(b"")
    err = _refused(capsys, "train", "--data", str(a_file))
    assert "argument --data:" in err and str(a_file) in err and "is a file" in err
    err = _refused(capsys, "train", "--data", str(tmp_path / "nope"))
    assert "argument --data:" in err and "does not exist" in err


@pytest.mark.parametrize("command, flag", [("train", "--save"), ("profile", "--trace"),
                                           ("profile", "--roofline"), ("graph", "--output")])
def test_output_paths_are_checked_before_any_work(capsys, no_training, tmp_path, command,
                                                   flag):
    target = tmp_path / "missing" / "out.file"
    err = _refused(capsys, command, flag, str(target))
    assert f"argument {flag}:" in err and str(target) in err and "does not exist" in err
    assert ".gpugrad-" not in err and ".tmp" not in err
    err = _refused(capsys, command, flag, str(tmp_path))
    assert f"argument {flag}:" in err and "is a folder" in err


def test_write_errors_after_the_run_name_the_users_path(tmp_path):
    from gpugrad._atomic import write_atomic
    target = tmp_path / "gone" / "trace.json"
    with pytest.raises(OSError) as exc:
        write_atomic(str(target), "{}")
    assert str(target) in str(exc.value) and ".gpugrad-" not in str(exc.value)


def test_each_optimizer_gets_its_own_default_learning_rate(capsys):
    args = cli.build_parser().parse_args(["train", "--optimizer", "sgd"])
    assert args.lr is None          # resolved by train() for the chosen optimizer
    summary = training.train(hidden=(64,), epochs=2, optimizer="sgd", progress=False,
                             log=lambda msg: None, device="cpu")
    assert summary["lr"] == training.DEFAULT_LR["sgd"] > training.DEFAULT_LR["adam"]
    assert summary["test_accuracy"] > 0.8       # Adam's 1e-3 gives SGD about 0.65 here
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for name, lr in training.DEFAULT_LR.items():
        assert f"{lr:g} for {name}" in text


def test_train_function_refuses_meaningless_values():
    for kwargs, word in (({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"),
                         ({"lr": float("nan")}, "lr"), ({"lr": 0.0}, "lr"),
                         ({"hidden": (0,)}, "hidden"), ({"optimizer": "rmsprop"}, "rmsprop")):
        with pytest.raises(ValueError, match=word):
            training.train(**kwargs, progress=False, log=lambda msg: None, device="cpu")


def test_help_shows_the_defaults(capsys):
    for command in ("train", "profile", "graph"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        parser = cli.build_parser()
        sub = parser._subparsers._group_actions[0].choices[command]
        for action in sub._actions:
            if action.default not in (None, False, "==SUPPRESS=="):
                assert f"(default: {action.default}" in text, (command, action.dest)


def test_readme_documents_every_flag():
    with open(os.path.join(ROOT, "README.md")) as fh:
        readme = fh.read()
    parser = cli.build_parser()
    for name, sub in parser._subparsers._group_actions[0].choices.items():
        for action in sub._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert flag in readme, f"gpugrad {name} {flag} is not in the README"


def test_blas_threads_are_limited_while_training(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    seen = []

    def fake_train(**kwargs):
        seen.append([p["num_threads"] for p in threadpoolctl.threadpool_info()
                     if p["user_api"] == "blas"])
        return {}
    monkeypatch.setattr(training, "train", fake_train)
    assert cli.main(["train", "--no-progress"]) == 0
    assert cli.build_parser().parse_args(["train"]).threads == 1
    assert seen[0] and set(seen[0]) == {1}


def _cli(*args, **env):
    full_env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu")
    full_env.update(env)
    return subprocess.run([sys.executable, "-m", "gpugrad", *args], env=full_env,
                          capture_output=True, text=True, timeout=300)


def test_info_reports_a_missing_gpu_instead_of_failing():
    result = _cli("info", GPUGRAD_DEVICE="cuda")
    assert result.returncode == 0, result.stderr
    assert "gpugrad" in result.stdout and not result.stderr
    if "CUDA device(s)" not in result.stdout:          # no GPU here: say why
        assert re.search(r"cuda: not available \(.+\)", result.stdout)
        assert "default device: none usable" in result.stdout


def test_graph_without_graphviz_writes_dot_and_says_how_to_render(capsys, monkeypatch,
                                                                   tmp_path):
    import shutil
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert cli.main(["graph", "--output", str(tmp_path / "graph.svg")]) == 0
    assert sorted(os.listdir(tmp_path)) == ["graph.dot"]
    assert (tmp_path / "graph.dot").read_text().startswith("digraph forward")
    out = capsys.readouterr().out
    assert f"dot -Tsvg {tmp_path / 'graph.dot'} -o {tmp_path / 'graph.svg'}" in out


def test_profile_runs_past_the_end_of_an_epoch(capsys):
    # 4,000 samples in batches of 512: 8 batches, then the loader starts over
    assert cli.main(["profile", "--steps", "10", "--batch-size", "512", "--hidden", "8"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("10 training steps") and "adam_update" in out


def test_compiled_training_gives_the_eager_loss_curve_bit_for_bit():
    runs = [training.train(hidden=(32,), epochs=2, batch_size=300, optimizer=opt,
                           progress=False, log=lambda msg: None, device="cpu", compiled=c)
            for opt in ("sgd", "adamw") for c in (False, True)]
    for eager, compiled in (runs[:2], runs[2:]):
        assert compiled["compiled"] and not eager["compiled"]
        assert [h["loss"] for h in eager["history"]] == [h["loss"] for h in compiled["history"]]
        assert eager["test_accuracy"] == compiled["test_accuracy"]


def test_profile_of_a_compiled_step_shows_its_replays(capsys):
    assert cli.main(["profile", "--steps", "3", "--batch-size", "64", "--hidden", "8",
                     "--compile"]) == 0
    out = capsys.readouterr().out
    assert "compiled (replays of one recording)" in out
    assert "linear" in out and "adam_update" in out and "relu_grad" in out
