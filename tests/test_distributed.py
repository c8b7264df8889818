"""Data parallelism: the engine's post-accumulate hooks, the sampler, and real 2-rank MPI
jobs (collectives, DDP gradients and training against one process, overlap, the CLI, a
crashing rank). The MPI jobs skip, saying why, where mpi4py or mpiexec is missing."""
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest

import gpugrad as gg
import gpugrad.distributed as dist
import gpugrad.nn.functional as F
from gpugrad import autograd
from gpugrad._autograd.mode import state

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKER = os.path.join(ROOT, "tests", "dist_worker.py")
RANKS = 2          # CI has 2 cores


def _mpiexec():
    """The mpiexec that belongs to the MPI mpi4py loads: the one installed beside this
    Python first (the mpich wheel puts it there), else the one on PATH."""
    if importlib.util.find_spec("mpi4py") is None:
        return None, "mpi4py is not installed (pip install '.[distributed]')"
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    found = local if os.access(local, os.X_OK) else shutil.which("mpiexec")
    if found is None:
        return None, "mpiexec is not on PATH (pip install mpich)"
    return found, None


def _launch(args, ranks=RANKS, timeout=120, extra_env=None):
    mpiexec, why = _mpiexec()
    if mpiexec is None:
        pytest.skip(why)
    env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", **(extra_env or {}))
    return subprocess.run([mpiexec, "-n", str(ranks), *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def _model_and_batch(seed=0):
    gg.manual_seed(seed)
    model = gg.nn.MLP([8, 6, 4])
    x, y = gg.randn(5, 8), gg.tensor([0, 1, 2, 3, 0])
    return model, x, y


# -- the engine's hooks ---------------------------------------------------------------------
def test_post_accumulate_hook_sees_the_accumulated_grad_and_can_be_removed():
    model, x, y = _model_and_batch()
    calls = []
    w = model[0].weight
    handle = w.register_post_accumulate_grad_hook(
        lambda t: calls.append((t is w, None if t.grad is None else t.grad.numpy().copy())))
    F.cross_entropy(model(x), y).backward()
    assert len(calls) == 1 and calls[0][0]
    np.testing.assert_array_equal(calls[0][1], w.grad.numpy())
    F.cross_entropy(model(x), y).backward()       # accumulates: the hook sees the sum
    assert len(calls) == 2
    np.testing.assert_array_equal(calls[1][1], w.grad.numpy())
    np.testing.assert_allclose(calls[1][1], 2 * calls[0][1], rtol=1e-6)
    handle.remove()
    F.cross_entropy(model(x), y).backward()
    assert len(calls) == 2
    assert not w._node.retained.post_accumulate
    # autograd.grad accumulates nothing, so it runs no hook
    w.register_post_accumulate_grad_hook(lambda t: calls.append("grad"))
    gg.autograd.grad(F.cross_entropy(model(x), y), [w])
    assert calls[-1] != "grad"


def test_post_accumulate_hooks_run_as_soon_as_each_grad_is_complete():
    """In every iteration (not only the first, when the leaves' gradient sinks are new)
    the last layer's hooks run before the first layer's VJPs: what DDP's overlap of
    communication with backward rests on."""
    model, x, y = _model_and_batch()
    seen = []
    prof = gg.profiler.profile()
    for name, p in model.named_parameters():
        p.register_post_accumulate_grad_hook(
            lambda t, name=name: seen.append((name, len(prof.events))))
    for _ in range(3):
        seen.clear()
        model.zero_grad()
        loss = F.cross_entropy(model(x), y)
        prof.events.clear()
        with prof:
            loss.backward()
        assert len(seen) == 4
        last_layer_done = max(n for name, n in seen if name.startswith("2."))
        first_layer_done = min(n for name, n in seen if name.startswith("0."))
        assert last_layer_done < first_layer_done, seen


def test_hooks_stay_when_the_data_of_a_leaf_is_replaced():
    """Assigning .data gives the leaf a new gradient sink (new shape or dtype); its hooks
    move to it, so a model wrapped by DDP keeps averaging after p.data = ..."""
    w = gg.randn(3, requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda t: calls.append(t.dtype))
    w.data = w.numpy().astype(np.float64)
    (w * w).sum().backward()
    assert calls == [np.float64]


def test_hooks_stay_when_a_module_is_moved_or_cast():
    """Module.to keeps the Parameter objects and gives them new gradient sinks; the hooks
    registered on them go along (a DDP wrapper then notices the cast instead of being
    silently bypassed)."""
    layer = gg.nn.Linear(3, 2)
    calls = []
    layer.weight.register_post_accumulate_grad_hook(lambda t: calls.append(t.dtype))
    layer.weight.register_hook(lambda g: calls.append("grad hook"))
    layer.to(gg.float64)
    layer(gg.randn(4, 3, dtype=gg.float64)).sum().backward()
    assert calls == ["grad hook", np.float64]


def test_a_backward_inside_a_hook_keeps_its_callbacks_apart():
    """queue_callback belongs to the pass now running: a backward run by a hook calls back
    at its own end, the outer pass's callbacks wait for the outer end."""
    order = []
    inner_leaf = gg.randn(2, requires_grad=True)
    inner_leaf.register_post_accumulate_grad_hook(
        lambda t: autograd.queue_callback(lambda: order.append("inner callback")))
    outer_leaf = gg.randn(2, requires_grad=True)

    def outer_hook(t):
        autograd.queue_callback(lambda: order.append("outer callback"))
        with gg.enable_grad():           # backward records nothing unless asked to
            (inner_leaf * 3).sum().backward()
        order.append("inner backward returned")
    outer_leaf.register_post_accumulate_grad_hook(outer_hook)
    (outer_leaf * 2).sum().backward()
    assert order == ["inner callback", "inner backward returned", "outer callback"]
    assert state.final_callbacks is None


def test_devices_say_which_engine_and_device_a_rank_uses():
    cpu = gg.device("cpu")
    assert cpu.collective_backend == "mpi" and cpu.for_local_rank(3) is cpu
    with pytest.raises(RuntimeError, match="nccl backend needs a CUDA device.*backend='mpi'"):
        cpu.nccl()


def test_profiler_spans_go_to_the_communication_lane(tmp_path):
    cpu = gg.device("cpu")
    x = gg.randn(4, 4, requires_grad=True)
    with gg.profiler.profile() as prof:
        (x @ x).sum().backward()
        start = time.perf_counter()
        prof.span("all_reduce", cpu, start, nbytes=1024, seconds=0.002)
        prof.span("all_reduce", cpu, start, nbytes=64, marks=(start, start + 0.001))
    comm = [e for e in prof.events if e.phase == "communication"]
    assert [(e.bytes, round(e.duration, 6)) for e in comm] == [(1024, 0.002), (64, 0.001)]
    assert "communication" in prof.table()
    prof.export_chrome_trace(str(tmp_path / "t.json"))
    with open(tmp_path / "t.json") as fh:
        trace = json.load(fh)["traceEvents"]
    lanes = {e["args"]["name"]: e["tid"] for e in trace if e.get("name") == "thread_name"}
    assert lanes == {"forward": 1, "backward": 2, "communication": 4}
    assert {e["tid"] for e in trace if e.get("cat") == "communication"} == {4}
    # the memory counter follows kernel calls, not collectives
    assert sum(e["name"] == "memory" for e in trace) == len(prof.events) - 2


def test_hook_registration_errors_are_clear():
    w = gg.randn(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="non-leaf"):
        (w * 2).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(RuntimeError, match="does not require grad"):
        gg.randn(3).register_post_accumulate_grad_hook(lambda t: None)
    with pytest.raises(TypeError, match="callable"):
        w.register_post_accumulate_grad_hook(3)


def test_queue_callback_runs_after_backward_and_not_after_a_failed_one():
    model, x, y = _model_and_batch()
    order = []
    w = model[0].weight

    def hook(t):
        order.append("hook")
        autograd.queue_callback(lambda: order.append(("callback", t.grad is not None)))
    w.register_post_accumulate_grad_hook(hook)
    F.cross_entropy(model(x), y).backward()
    assert order == ["hook", ("callback", True)]
    with pytest.raises(RuntimeError, match="during a backward pass"):
        autograd.queue_callback(lambda: None)

    def failing(t):
        autograd.queue_callback(lambda: order.append("stale"))
        raise ValueError("hook fails")
    model[2].weight.register_post_accumulate_grad_hook(failing)
    order.clear()
    with pytest.raises(ValueError, match="hook fails"):
        F.cross_entropy(model(x), y).backward()
    F.cross_entropy(gg.nn.MLP([8, 4])(x), y).backward()      # an unrelated pass
    assert "stale" not in order and state.final_callbacks is None


# -- without a process group ------------------------------------------------------------------
def test_without_a_process_group_the_errors_say_what_to_do():
    assert not dist.is_initialized()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.get_rank()
    with pytest.raises(RuntimeError, match="init_process_group"):
        dist.all_reduce(gg.ones(2))
    with pytest.raises(RuntimeError, match="init_process_group"):
        gg.nn.parallel.DistributedDataParallel(gg.nn.MLP([3, 2]))
    with pytest.raises(ValueError, match="unknown backend 'gloo'"):
        dist.init_process_group(backend="gloo")
    with pytest.raises(RuntimeError, match="num_replicas and rank"):
        gg.data.DistributedSampler(10)


def test_compiled_and_distributed_training_are_refused_together():
    """A compiled step replays kernels only: DDP's all-reduces would not run."""
    from gpugrad import training
    with pytest.raises(ValueError, match="cannot be combined yet"):
        training.train(epochs=1, compiled=True, distributed=True, progress=False,
                       log=lambda msg: None, device="cpu")
    assert not dist.is_initialized()


# -- the sampler --------------------------------------------------------------------------------
def _pytorch_shards(n, replicas, drop_last):
    """PyTorch's DistributedSampler arithmetic, written out (on range(n), unshuffled)."""
    import math
    if drop_last and n % replicas:
        per_rank = math.ceil((n - replicas) / replicas)
    else:
        per_rank = math.ceil(n / replicas)
    total = per_rank * replicas
    indices = list(range(n))
    if not drop_last:
        pad = total - n
        if pad <= n:
            indices += indices[:pad]
        else:
            indices += (indices * math.ceil(pad / n))[:pad]
    else:
        indices = indices[:total]
    return [indices[r:total:replicas] for r in range(replicas)]


@pytest.mark.parametrize("n,replicas", [(10, 2), (11, 2), (7, 3), (2, 5), (16, 4), (1, 3)])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_pads_and_drops_as_pytorch(n, replicas, drop_last):
    shards = [list(gg.data.DistributedSampler(n, replicas, r, shuffle=False,
                                              drop_last=drop_last)) for r in range(replicas)]
    assert shards == _pytorch_shards(n, replicas, drop_last)
    assert all(len(s) == len(gg.data.DistributedSampler(n, replicas, 0, drop_last=drop_last))
               for s in shards)


def test_sampler_shards_are_disjoint_cover_the_data_and_change_with_the_epoch():
    n, replicas = 103, 4
    samplers = [gg.data.DistributedSampler(n, replicas, r, seed=5) for r in range(replicas)]
    first = [list(s) for s in samplers]
    flat = sum(first, [])
    assert sorted(set(flat)) == list(range(n))                    # covers everything
    assert len(flat) - len(set(flat)) == replicas * 26 - n        # only the padding repeats
    no_pad = [s[:25] for s in first]                              # 25 = n // replicas
    assert len(set(sum(no_pad, []))) == 25 * replicas             # disjoint
    for s in samplers:
        s.set_epoch(1)
    second = [list(s) for s in samplers]
    assert second != first and sorted(set(sum(second, []))) == list(range(n))
    again = gg.data.DistributedSampler(n, replicas, 2, seed=5)
    again.set_epoch(1)
    assert list(again) == second[2]                               # same on every rank


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="invalid rank 2"):
        gg.data.DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas"):
        gg.data.DistributedSampler(10, num_replicas=0, rank=0)
    with pytest.raises(TypeError, match="sized dataset"):
        gg.data.DistributedSampler(object(), 2, 0)


def test_loader_takes_a_sampler_and_a_shard():
    train, _ = gg.data.mnist()
    sampler = gg.data.DistributedSampler(train, num_replicas=3, rank=1, shuffle=False)
    loader = gg.data.DataLoader(train, 100, sampler=sampler, device="cpu")
    assert len(loader) == -(-len(sampler) // 100)
    x, _ = next(iter(loader))
    np.testing.assert_array_equal(x.numpy(), train.images[1:300:3])
    whole = gg.data.DataLoader(train, 10, shuffle=False, device="cpu")
    part = gg.data.DataLoader(train, 10, shuffle=False, device="cpu", shard=(1, 3))
    (xw, yw), (xp, yp) = next(iter(whole)), next(iter(part))
    np.testing.assert_array_equal(xp.numpy(), xw.numpy()[1::3])
    np.testing.assert_array_equal(yp.numpy(), yw.numpy()[1::3])
    with pytest.raises(ValueError, match="shard"):
        gg.data.DataLoader(train, 10, shard=(3, 3))


# -- 2-rank MPI jobs ----------------------------------------------------------------------------
CHECKS = ["collectives", "ddp_grads", "unused_no_sync", "training", "overlap", "bootstrap",
          "mismatch", "nccl_standin"]


@pytest.fixture(scope="module")
def worker_job(tmp_path_factory):
    """One 2-rank job runs every check (starting MPI jobs costs seconds on 2 cores)."""
    trace = str(tmp_path_factory.mktemp("trace") / "trace.json")
    result = _launch([sys.executable, WORKER, *CHECKS], extra_env={"GPUGRAD_TEST_TRACE": trace})
    return result, trace


@pytest.mark.parametrize("check", CHECKS)
def test_two_ranks(worker_job, check):
    """collectives on float32/float64; DDP gradients on 2 ranks equal one process's on
    the whole batch; unused parameters and no_sync; 20 steps of SGD and Adam equal one
    process; all-reduces start before backward ends; the NCCL id exchange; mismatched
    models are refused on every rank; the NCCL engine on a stand-in GPU."""
    result, _ = worker_job
    output = result.stdout + result.stderr
    for rank in range(RANKS):
        assert f"{check} rank {rank} ok" in output, output[-4000:]
    assert result.returncode == 0, output[-4000:]


def test_two_rank_trace_shows_all_reduce_in_its_own_lane(worker_job):
    result, trace = worker_job
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    with open(trace) as fh:
        events = json.load(fh)["traceEvents"]
    spans = [e for e in events if e.get("cat") == "communication"]
    backward = [e for e in events if e.get("cat") == "backward"]
    lane = gg.profiler.PHASES.index("communication") + 1
    assert spans and all(e["name"] == "all_reduce" and e["tid"] == lane for e in spans)
    assert min(e["ts"] for e in spans) < max(e["ts"] + e["dur"] for e in backward)


def test_a_crashing_rank_ends_the_job_nonzero_within_seconds():
    start = time.perf_counter()
    result = _launch([sys.executable, WORKER, "crash"], timeout=60)
    elapsed = time.perf_counter() - start
    assert result.returncode != 0
    assert "rank 1 fails on purpose" in result.stderr
    assert elapsed < 30, f"the job took {elapsed:.1f} s to end"     # rank 0 sleeps 60 s


def _train_json(args, ranks=None):
    cmd = [sys.executable, "-m", "gpugrad", "train", "--epochs", "2", "--hidden", "32",
           "--batch-size", "97", "--json", "--no-progress", *args]
    if ranks is None:
        env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu")
        result = subprocess.run([sys.executable, *cmd[1:]], env=env, capture_output=True,
                                text=True, timeout=120)
    else:
        result = _launch([*cmd, "--distributed"], ranks=ranks)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    return result


def test_cli_on_two_ranks_matches_one_process(tmp_path):
    single = _train_json(["--optimizer", "sgd", "--lr", "0.05"])
    path = tmp_path / "ckpt.npz"
    double = _train_json(["--optimizer", "sgd", "--lr", "0.05", "--save", str(path)],
                         ranks=2)
    one = json.loads(single.stdout.strip().splitlines()[-1])
    lines = double.stdout.strip().splitlines()
    assert len([ln for ln in lines if ln.startswith("{")]) == 1     # rank 0 alone prints
    two = json.loads(lines[-1])
    assert two["world_size"] == 2 and two["rank"] == 0
    np.testing.assert_allclose([h["loss"] for h in two["history"]],
                               [h["loss"] for h in one["history"]], rtol=1e-4)
    np.testing.assert_allclose([h["train_accuracy"] for h in two["history"]],
                               [h["train_accuracy"] for h in one["history"]], atol=2e-3)
    assert abs(two["test_accuracy"] - one["test_accuracy"]) <= 2e-3
    assert double.stderr.count("epoch 2/2") == 1                     # rank 0 alone logs
    state = gg.load(str(path))
    assert set(state["model"]) == {"0.weight", "0.bias", "2.weight", "2.bias"}


# -- NCCL on a GPU --------------------------------------------------------------------------------
@pytest.mark.gpu
def test_nccl_one_rank_group_on_the_gpu():
    env = dict(os.environ, PYTHONPATH=ROOT)
    env.pop("GPUGRAD_DEVICE", None)
    # importing mpi4py.MPI starts MPI: try it in a process of its own
    probe = subprocess.run([sys.executable, "-c", "from mpi4py import MPI"], env=env,
                           capture_output=True, text=True, timeout=60)
    if probe.returncode:
        pytest.skip(f"mpi4py does not load an MPI here: {probe.stderr.strip()[-300:]}")
    result = subprocess.run([sys.executable, WORKER, "nccl"], env=env, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"nccl": "ok"}


def test_readme_example_script_trains_on_two_ranks():
    result = _launch([sys.executable, os.path.join(ROOT, "examples", "distributed_mlp.py")])
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith("epoch")]
    assert len(lines) == 3 and all("on 2 rank(s)" in ln for ln in lines), result.stdout
    losses = [float(ln.split("loss ")[1].split()[0]) for ln in lines]
    assert losses[2] < losses[0], losses


def test_cli_error_on_every_rank_ends_the_job_with_the_message(tmp_path):
    """An error inside training (here: a folder without MNIST files, which the parser
    cannot know) aborts the job with the rank's message."""
    start = time.perf_counter()
    result = _launch([sys.executable, "-m", "gpugrad", "train", "--distributed", "--data",
                      str(tmp_path), "--no-progress"], timeout=60)
    assert result.returncode != 0
    # whichever rank fails first aborts the job: its message is the one printed
    assert re.search(r"rank \d: error: MNIST file train-images", result.stderr), \
        result.stderr[-2000:]
    assert time.perf_counter() - start < 30
