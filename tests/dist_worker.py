"""The program the distributed tests launch with ``mpiexec -n 2 python dist_worker.py
MODE...``. Each mode checks one behaviour on every rank and prints ``MODE rank R ok``;
a failing check prints ``MODE rank R FAIL`` with the traceback (and, when the ranks
would otherwise disagree on what to do next, aborts the job)."""
import ctypes
import json
import os
import sys
import time
import traceback

import numpy as np

import gpugrad as gg
import gpugrad.distributed as dist
import gpugrad.nn.functional as F


def _global_batch(n, features, classes, dtype, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, features)).astype(dtype)
    y = rng.integers(0, classes, size=n)
    return x, y


def _model(sizes, dtype, seed=0):
    gg.manual_seed(seed + 100 * dist.get_rank())  # different on each rank: DDP must broadcast
    model = gg.nn.MLP(sizes)
    for p in model.parameters():
        p.data = p._data.astype(dtype)
    return model


def _reference_copy(model):
    """A plain model holding the same parameter values."""
    ref = gg.nn.MLP(model.sizes)
    for p, q in zip(ref.parameters(), model.parameters()):
        p.data = q._data.copy()
    return ref


def check_collectives():
    rank, world = dist.get_rank(), dist.get_world_size()
    assert dist.is_initialized() and world == 2, world
    for dtype in (np.float32, np.float64):
        base = np.arange(6, dtype=dtype).reshape(2, 3) * 0.5 + 0.25
        expected = {"sum": sum(base + r for r in range(world)),
                    "avg": sum(base + r for r in range(world)) / world,
                    "max": base + world - 1, "min": base}
        for op, want in expected.items():
            t = gg.tensor(base + rank)
            out = dist.all_reduce(t, op=op)
            assert out is t and t.dtype == dtype, (op, t.dtype)
            np.testing.assert_allclose(t.numpy(), want, rtol=1e-6 if dtype == np.float32
                                       else 1e-12)
        # a non-contiguous view is reduced in place too
        wide = gg.tensor(np.stack([base + rank, base]).transpose(1, 0, 2).copy())
        view = wide[:, 0]
        dist.all_reduce(view, op="sum")
        np.testing.assert_allclose(wide.numpy()[:, 0], expected["sum"])
        src = world - 1
        t = gg.tensor(base * (rank + 1))
        assert dist.broadcast(t, src=src) is t
        np.testing.assert_array_equal(t.numpy(), base * (src + 1))
        outs = [gg.zeros(2, 3, dtype=dtype) for _ in range(world)]
        dist.all_gather(outs, gg.tensor(base + 10 * rank))
        for r, o in enumerate(outs):
            np.testing.assert_array_equal(o.numpy(), base + 10 * r)
    counts = gg.tensor(np.array([rank + 1, 7], dtype=np.int64))
    dist.all_reduce(counts)
    assert counts.tolist() == [3, 14], counts.tolist()
    for bad, error in ((lambda: dist.all_reduce(gg.ones(2), op="prod"), ValueError),
                       (lambda: dist.all_reduce(gg.tensor([1, 2]), op="avg"), TypeError),
                       (lambda: dist.broadcast(gg.ones(2), src=world), ValueError),
                       (lambda: dist.all_gather([gg.ones(2)], gg.ones(2)), ValueError),
                       (lambda: dist.all_gather([gg.ones(3), gg.ones(3)], gg.ones(2)),
                        ValueError),
                       (lambda: dist.all_reduce(np.ones(2)), TypeError),
                       (lambda: dist.all_reduce(gg.tensor([True, False])), TypeError),
                       (lambda: gg.nn.parallel.DistributedDataParallel(
                           gg.nn.MLP([2, 2])).to("cpu"), RuntimeError),
                       (lambda: dist.init_process_group(), RuntimeError)):
        try:
            bad()
        except error:
            pass
        else:
            raise AssertionError(f"no {error.__name__} from a bad call")
    dist.barrier()
    t = gg.tensor([1.0])
    dist.all_reduce(t)        # the group still works after the refused calls
    assert t.item() == world


def check_ddp_grads():
    """DDP's gradients on two halves equal one process's on the whole batch, for one
    bucket and for one bucket per parameter."""
    rank, world = dist.get_rank(), dist.get_world_size()
    for dtype, rtol in ((np.float64, 1e-10), (np.float32, 2e-5)):
        for cap in (25, 1e-6):
            model = _model([12, 16, 8, 5], dtype)
            ddp = gg.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=cap)
            if cap < 1:
                assert len(ddp.bucket_sizes) == 6, ddp.bucket_sizes
            ref = _reference_copy(model)
            x, y = _global_batch(10, 12, 5, dtype)
            for _ in range(2):        # twice: the second pass reuses the hooked leaves
                model.zero_grad()
                F.cross_entropy(ddp(gg.tensor(x[rank::world])),
                                gg.tensor(y[rank::world])).backward()
            ref.zero_grad()
            F.cross_entropy(ref(gg.tensor(x)), gg.tensor(y)).backward()
            for (name, p), q in zip(model.named_parameters(), ref.parameters()):
                assert p.grad.dtype == dtype, (name, p.grad.dtype)
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=rtol,
                                           atol=rtol * 1e-2, err_msg=name)
            # every rank holds the same averaged gradient, bit for bit
            for p in model.parameters():
                copies = [gg.zeros_like(p.grad) for _ in range(world)]
                dist.all_gather(copies, p.grad)
                for c in copies:
                    np.testing.assert_array_equal(c.numpy(), p.grad.numpy())


class _TwoHeads(gg.nn.Module):
    def __init__(self, body, extra):
        super().__init__()
        self.body = body
        self.extra = extra

    def forward(self, x, use_extra):
        out = self.body(x)
        return out + self.extra(x) if use_extra else out


def check_unused_and_no_sync():
    rank, world = dist.get_rank(), dist.get_world_size()
    # a parameter that only rank 0 uses: the others count zeros for it
    body = _model([6, 4, 3], np.float64)
    extra = gg.nn.Linear(6, 3)
    for p in extra.parameters():
        p.data = p._data.astype(np.float64)
    model = _TwoHeads(body, extra)
    ddp = gg.nn.parallel.DistributedDataParallel(model)
    ref_body, ref_extra = _reference_copy(body), gg.nn.Linear(6, 3)
    for p, q in zip(ref_extra.parameters(), extra.parameters()):
        p.data = q._data.copy()
    x, y = _global_batch(4, 6, 3, np.float64)
    F.cross_entropy(ddp(gg.tensor(x[rank::world]), rank == 0),
                    gg.tensor(y[rank::world])).backward()
    assert extra.weight.grad is not None
    # rank 0's loss gradient counts with weight 1/world; the others' with 0
    xs0 = gg.tensor(x[0::world])
    (F.cross_entropy(ref_body(xs0) + ref_extra(xs0), gg.tensor(y[0::world])) / world).backward()
    np.testing.assert_allclose(extra.weight.grad.numpy(), ref_extra.weight.grad.numpy(),
                               rtol=1e-10)
    # no_sync: two micro-batches accumulated locally, reduced once
    model = _model([6, 4, 3], np.float64)
    ddp = gg.nn.parallel.DistributedDataParallel(model)
    ref = _reference_copy(model)
    x, y = _global_batch(8, 6, 3, np.float64)
    mine = list(range(rank, 8, world))
    halves = (mine[:2], mine[2:])
    with ddp.no_sync():
        F.cross_entropy(ddp(gg.tensor(x[halves[0]])), gg.tensor(y[halves[0]])).backward()
    local = [p.grad.numpy().copy() for p in model.parameters()]
    F.cross_entropy(ddp(gg.tensor(x[halves[1]])), gg.tensor(y[halves[1]])).backward()
    for r in range(world):
        rows = list(range(r, 8, world))
        for part in (rows[:2], rows[2:]):
            (F.cross_entropy(ref(gg.tensor(x[part])), gg.tensor(y[part])) / world).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-10)
    assert not np.allclose(local[0], next(model.parameters()).grad.numpy())
    # a module cast after wrapping no longer fits its buckets: an error on every rank, not
    # gradients squeezed into the old dtype
    model.to(np.float32)
    try:
        F.cross_entropy(ddp(gg.tensor(x[mine].astype(np.float32))), gg.tensor(y[mine])).backward()
    except RuntimeError as err:
        assert "float32" in str(err) and "before wrapping" in str(err), err
    else:
        raise AssertionError("a module cast after wrapping went unnoticed")


def check_training():
    """20 steps of SGD (momentum) and Adam on two ranks equal one process on the global
    batch."""
    rank, world = dist.get_rank(), dist.get_world_size()
    for name, make in (("sgd", lambda ps: gg.optim.SGD(ps, lr=0.1, momentum=0.9)),
                       ("adam", lambda ps: gg.optim.Adam(ps, lr=1e-2))):
        model = _model([20, 32, 32, 4], np.float32)
        ddp = gg.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.002)
        assert len(ddp.bucket_sizes) > 1, ddp.bucket_sizes
        ref = _reference_copy(model)
        opt, ref_opt = make(list(model.parameters())), make(list(ref.parameters()))
        losses, ref_losses = [], []
        for step in range(20):
            x, y = _global_batch(16, 20, 4, np.float32, seed=step % 2)
            loss = F.cross_entropy(ddp(gg.tensor(x[rank::world])), gg.tensor(y[rank::world]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(dist.all_reduce(loss.detach(), op="avg").item()))
            ref_loss = F.cross_entropy(ref(gg.tensor(x)), gg.tensor(y))
            ref_opt.zero_grad()
            ref_loss.backward()
            ref_opt.step()
            ref_losses.append(ref_loss.item())
        np.testing.assert_allclose(losses, ref_losses, rtol=1e-4, err_msg=name)
        assert ref_losses[-1] < 0.8 * ref_losses[0], (name, ref_losses)
        for p, q in zip(model.parameters(), ref.parameters()):
            np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=name)


def check_overlap():
    """The first bucket's all-reduce starts while backward still has work to do: the
    profiler's communication spans begin before the last backward op ends."""
    rank, world = dist.get_rank(), dist.get_world_size()
    model = _model([64, 128, 128, 10], np.float32)
    ddp = gg.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.02)
    x, y = _global_batch(32, 64, 10, np.float32)
    for _ in range(2):    # the second step is the steady state
        loss = F.cross_entropy(ddp(gg.tensor(x[rank::world])), gg.tensor(y[rank::world]))
        model.zero_grad()
        with gg.profiler.profile() as prof:
            loss.backward()
    comm = [e for e in prof.events if e.phase == "communication"]
    backward = [e for e in prof.events if e.phase == "backward"]
    assert len(comm) == len(ddp.bucket_sizes) > 1, (len(comm), ddp.bucket_sizes)
    last_backward_end = max(e.start + e.duration for e in backward)
    assert min(e.start for e in comm) < last_backward_end, "no all-reduce before backward ended"
    assert sorted(e.bytes for e in comm) == sorted(ddp.bucket_sizes)
    path = os.environ.get("GPUGRAD_TEST_TRACE")
    if path and rank == 0:
        prof.export_chrome_trace(path)


def check_bootstrap():
    """The NCCL unique id is made once, by rank 0, and every rank receives it."""
    made = []

    def make_id():
        made.append(1)
        return tuple(int(v) for v in np.random.default_rng().integers(-128, 128, size=128))

    comm = dist._require_group().backend.comm
    uid = dist._bootstrap_unique_id(comm, make_id)
    assert isinstance(uid, tuple) and len(uid) == 128
    everyone = dist.all_gather_object(uid)
    assert all(u == everyone[0] for u in everyone)
    assert len(made) == (1 if dist.get_rank() == 0 else 0)


def check_mismatch():
    """Ranks wrapping different models get a clear error on every rank, not a hang."""
    sizes = [4, 3, 2] if dist.get_rank() == 0 else [4, 5, 2]
    try:
        gg.nn.parallel.DistributedDataParallel(gg.nn.MLP(sizes))
    except ValueError as err:
        assert "rank 1" in str(err) and "(3, 4)" in str(err), err
    else:
        raise AssertionError("different models were wrapped without an error")


# -- the NCCL engine on a stand-in GPU ---------------------------------------------------------
# A device that is not host memory and answers the CUDA device's NCCL interface (binding,
# streams, events, pointers) with fakes: NCCL calls become MPI calls on the addresses they
# get, and every stream operation is logged. It runs the NCCL engine's code (dispatch,
# staging, ordering by events, DDP's asynchronous path, profiler spans from events) on
# machines without a GPU; tests/test_distributed.py's GPU test runs the real one.
STREAM_LOG = []


class _Event:
    def __init__(self, timing):
        self.timing = timing
        self.time = None

    def record(self, stream=None):
        self.time = time.perf_counter()
        STREAM_LOG.append(("record", (stream or _CURRENT).name, id(self)))

    @property
    def done(self):
        return self.time is not None


class _Stream:
    def __init__(self, name):
        self.name = name
        self.ptr = hash(name)

    def wait_event(self, event):
        assert event.done, "a stream waits for an event never recorded"
        STREAM_LOG.append(("wait", self.name, id(event)))

    def synchronize(self):
        STREAM_LOG.append(("synchronize", self.name))


_CURRENT = _Stream("current")
_STREAMS = {}


def _host_view(ptr, count, dtype):
    raw = (ctypes.c_char * (count * np.dtype(dtype).itemsize)).from_address(ptr)
    return np.frombuffer(raw, dtype=dtype, count=count)


class _FakeNccl:
    available = True
    NCCL_FLOAT16, NCCL_FLOAT32, NCCL_FLOAT64 = np.float16, np.float32, np.float64
    NCCL_INT8, NCCL_UINT8, NCCL_INT32, NCCL_INT64 = np.int8, np.uint8, np.int32, np.int64
    NCCL_SUM, NCCL_MAX, NCCL_MIN = "sum", "max", "min"

    @staticmethod
    def get_unique_id():
        return tuple(range(128))

    class NcclCommunicator:
        def __init__(self, size, uid, rank):
            from mpi4py import MPI
            self.MPI = MPI
            self.comm = MPI.COMM_WORLD
            assert (size, rank) == (self.comm.Get_size(), self.comm.Get_rank())
            assert uid == tuple(range(128))

        def _log(self, what, stream):
            STREAM_LOG.append((what, _STREAMS[stream].name))

        def allReduce(self, send, recv, count, dtype, op, stream):
            self._log("allReduce", stream)
            ops = {"sum": self.MPI.SUM, "max": self.MPI.MAX, "min": self.MPI.MIN}
            out = _host_view(recv, count, dtype)
            source = self.MPI.IN_PLACE if send == recv else _host_view(send, count, dtype)
            self.comm.Allreduce(source, out, op=ops[op])

        def bcast(self, buf, count, dtype, root, stream):
            self._log("bcast", stream)
            self.comm.Bcast(_host_view(buf, count, dtype), root=root)

        def allGather(self, send, recv, count, dtype, stream):
            self._log("allGather", stream)
            self.comm.Allgather(_host_view(send, count, dtype),
                                _host_view(recv, count * self.comm.Get_size(), dtype))

        def abort(self):
            pass

        def destroy(self):
            STREAM_LOG.append(("destroy",))


class StandInGPU(gg._device.CPUDevice):
    """Not host memory (as a GPU), with NCCL; its arrays are NumPy arrays."""
    is_host = False
    collective_backend = "nccl"

    def for_local_rank(self, local_rank):
        return self

    def nccl(self):
        return _FakeNccl

    def new_stream(self):
        stream = _Stream(f"comm{len(_STREAMS)}")
        _STREAMS[stream.ptr] = stream
        return stream

    def current_stream(self):
        return _CURRENT

    def new_event(self, timing=False):
        return _Event(timing)

    @staticmethod
    def pointer(arr):
        assert arr.flags.c_contiguous
        return arr.ctypes.data

    def to_host(self, arr):
        return arr.copy()

    def elapsed(self, start, stop):
        if isinstance(start, _Event):
            assert start.timing and stop.timing, "elapsed needs events made for timing"
            return stop.time - start.time
        return stop - start


def check_nccl_standin():
    """The NCCL engine's collectives, stream ordering, host arrays through MPI within an
    NCCL group, errors, and DDP's asynchronous path, on the stand-in GPU."""
    rank, world = dist.get_rank(), dist.get_world_size()
    dist.destroy_process_group()
    gpu, other = StandInGPU(5), StandInGPU(6)
    saved_default = gg._device._default
    gg._device._default = gpu
    try:
        dist.init_process_group()
        assert dist.get_backend() == "nccl" and dist.get_device() is gpu
        for dtype in (np.float32, np.float64):
            base = np.arange(6, dtype=dtype).reshape(2, 3) + 0.5
            for op, want in (("sum", 2 * base + 1), ("avg", base + 0.5), ("max", base + 1),
                             ("min", base)):
                t = gg.tensor(base + rank, device=gpu)
                STREAM_LOG.clear()
                dist.all_reduce(t, op=op)
                np.testing.assert_allclose(t.numpy(), want)
            # the reduction waits for the current stream's work, runs on the stream of
            # its own, and the current stream waits for it: nothing blocks the host
            kinds = [(e[0], e[1]) for e in STREAM_LOG]
            assert kinds == [("record", "current"), ("wait", "comm0"), ("allReduce", "comm0"),
                             ("record", "comm0"), ("wait", "current")], STREAM_LOG
            assert STREAM_LOG[0][2] == STREAM_LOG[1][2] and STREAM_LOG[3][2] == STREAM_LOG[4][2]
            wide = gg.tensor(np.stack([base + rank, base]).transpose(1, 0, 2).copy(), device=gpu)
            dist.all_reduce(wide[:, 0])                        # a strided view, in place
            np.testing.assert_allclose(wide.numpy()[:, 0], 2 * base + 1)
            np.testing.assert_allclose(wide.numpy()[:, 1], base)
            t = gg.tensor(base * (rank + 1), device=gpu)
            dist.broadcast(t, src=1)
            np.testing.assert_array_equal(t.numpy(), base * 2)
            outs = [gg.zeros(2, 3, dtype=dtype, device=gpu) for _ in range(world)]
            dist.all_gather(outs, gg.tensor(base + 10 * rank, device=gpu))
            for r, o in enumerate(outs):
                np.testing.assert_array_equal(o.numpy(), base + 10 * r)
        host = gg.tensor([float(rank + 1)], device="cpu")
        STREAM_LOG.clear()
        dist.all_reduce(host)                       # host memory: MPI, no stream involved
        assert host.item() == 3.0 and not STREAM_LOG, STREAM_LOG
        for bad, error, words in (
                (lambda: dist.all_reduce(gg.ones(2, device=other)), ValueError, "works on"),
                (lambda: dist.all_reduce(gg.tensor(np.ones(2, np.int16), device=gpu)),
                 TypeError, "no type for dtype int16")):
            try:
                bad()
            except error as err:
                assert words in str(err), err
            else:
                raise AssertionError(f"no {error.__name__} ({words})")
        # DDP through the asynchronous NCCL path: grads as one process's, spans timed by
        # events
        model = _model([12, 16, 8, 5], np.float32).to(gpu)
        ddp = gg.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=1e-4)
        ref = _reference_copy(model).to(gpu)
        x, y = _global_batch(10, 12, 5, np.float32)
        with gg.profiler.profile() as prof:
            F.cross_entropy(ddp(gg.tensor(x[rank::world], device=gpu)),
                            gg.tensor(y[rank::world], device=gpu)).backward()
        F.cross_entropy(ref(gg.tensor(x, device=gpu)), gg.tensor(y, device=gpu)).backward()
        for p, q in zip(model.parameters(), ref.parameters()):
            assert p.grad.device is gpu
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=2e-5, atol=1e-7)
        comm = [e for e in prof.events if e.phase == "communication"]
        assert len(comm) == len(ddp.bucket_sizes) > 1 and all(e.duration > 0 for e in comm)
        STREAM_LOG.clear()
        dist.destroy_process_group()
        assert ("synchronize", "comm0") in STREAM_LOG and ("destroy",) in STREAM_LOG
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
        gg._device._default = saved_default
        dist.init_process_group(backend="mpi")


def crash():
    """Rank 1 fails while rank 0 waits in a collective: the job must end, non-zero."""
    if dist.get_rank() == 1:
        time.sleep(0.2)
        raise RuntimeError("rank 1 fails on purpose")
    dist.all_reduce(gg.ones(3))
    time.sleep(60)


def nccl_single():
    """A one-rank NCCL group on the one GPU: collectives and a DDP step."""
    dist.init_process_group(backend="nccl")
    assert dist.get_backend() == "nccl" and dist.get_world_size() == 1
    dev = dist.get_device()
    assert dev.type == "cuda", dev
    for dtype in (np.float32, np.float64):
        t = gg.tensor(np.arange(5, dtype=dtype) + 1, device=dev)
        dist.all_reduce(t, op="sum")
        np.testing.assert_array_equal(t.numpy(), np.arange(5) + 1)
        dist.all_reduce(t, op="avg")
        dist.broadcast(t, src=0)
        outs = [gg.zeros(5, dtype=dtype, device=dev)]
        dist.all_gather(outs, t)
        np.testing.assert_array_equal(outs[0].numpy(), np.arange(5) + 1)
    gg.manual_seed(0)
    model = gg.nn.MLP([16, 32, 4], device=dev)
    ref = gg.nn.MLP([16, 32, 4], device=dev)
    for p, q in zip(ref.parameters(), model.parameters()):
        p.data = q._data.copy()
    ddp = gg.nn.parallel.DistributedDataParallel(model, bucket_cap_mb=0.001)
    x, y = gg.randn(8, 16, device=dev), gg.tensor(np.arange(8) % 4, device=dev)
    with gg.profiler.profile() as prof:
        F.cross_entropy(ddp(x), y).backward()
    F.cross_entropy(ref(x), y).backward()
    for p, q in zip(model.parameters(), ref.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-7)
    comm = [e for e in prof.events if e.phase == "communication"]
    assert len(comm) == len(ddp.bucket_sizes) and all(e.duration > 0 for e in comm)
    dist.destroy_process_group()
    print(json.dumps({"nccl": "ok"}))


CHECKS = {"collectives": check_collectives, "ddp_grads": check_ddp_grads,
          "unused_no_sync": check_unused_and_no_sync, "training": check_training,
          "overlap": check_overlap,
          "bootstrap": check_bootstrap, "mismatch": check_mismatch,
          "nccl_standin": check_nccl_standin}


def main(modes):
    if modes == ["crash"]:
        dist.init_process_group(backend="mpi")
        crash()
        return
    if modes == ["nccl"]:
        nccl_single()
        return
    if not gg.cuda_available():
        try:
            dist.init_process_group(backend="nccl")
        except RuntimeError as err:
            assert "nccl" in str(err) and not dist.is_initialized(), err
        else:
            raise AssertionError("an nccl group without CUDA")
    dist.init_process_group()
    assert dist.get_backend() == ("nccl" if gg.cuda_available() else "mpi")
    rank = dist.get_rank()
    for mode in modes:
        try:
            CHECKS[mode]()
        except Exception:
            print(f"{mode} rank {rank} FAIL\n{traceback.format_exc()}", flush=True)
            # the other rank may be waiting in a collective this one never reaches
            dist.abort(3)
        print(f"{mode} rank {rank} ok", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1:])
