"""Several processes training one model: ``import gpugrad.distributed as dist``.

An MPI launcher starts the processes and gives each its rank (``mpiexec -n 4 python
train.py``, or Slurm's ``srun``). Collectives then run on one of two engines:

- ``"mpi"``: mpi4py on NumPy arrays (CuPy arrays go through host memory);
- ``"nccl"``: CuPy's NCCL binding on GPU arrays, on a CUDA stream of its own ordered by
  events; rank 0 makes the NCCL unique id and MPI broadcasts it. Host arrays still go
  through MPI.

>>> import gpugrad as gg
>>> import gpugrad.distributed as dist
>>> dist.init_process_group()            # doctest: +SKIP
>>> t = gg.tensor([float(dist.get_rank())])
>>> dist.all_reduce(t, op="sum")          # doctest: +SKIP

A process that dies of an uncaught exception aborts the whole job (``MPI_Abort`` from
``sys.excepthook``), so the others never wait forever in a collective. ``sys.exit`` is
not an uncaught exception: MPI's finalization at exit waits for the other ranks, so a
rank that must stop alone calls ``abort(code)``.
"""
import os
import sys
import time

import numpy as np

from . import _device, _tensor, profiler
from ._tensor import Tensor

__all__ = ["init_process_group", "destroy_process_group", "is_initialized", "get_rank",
           "get_world_size", "get_backend", "get_local_rank", "get_device", "barrier",
           "all_reduce", "broadcast", "all_gather", "all_gather_object", "abort"]

_OPS = ("sum", "avg", "max", "min")
_group = None

_INSTALL_HINT = ("install mpi4py and an MPI: pip install 'gpugrad[distributed]' (mpi4py with "
                 "the mpich wheel), or on a cluster build mpi4py against the system MPI "
                 "(module load mpi; pip install --no-binary mpi4py mpi4py)")


def _import_mpi():
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError, OSError) as err:
        raise RuntimeError(f"gpugrad.distributed needs mpi4py ({err}): {_INSTALL_HINT}") \
            from None
    return MPI


def _require_group():
    if _group is None:
        raise RuntimeError("the default process group is not initialized: call "
                           "gpugrad.distributed.init_process_group() first")
    return _group


# -- pending collectives ----------------------------------------------------------------
class _Work:
    """A collective under way. ``test()`` polls it without blocking (an MPI progress
    call: many MPI builds move a non-blocking collective along only when polled) and
    says whether it finished; ``wait()`` completes it. With NCCL, completion means
    ordered before later work on the current stream, not finished on the host."""

    __slots__ = ("_test", "_wait", "_finish", "done", "_record")

    def __init__(self, test, wait, finish=None, record=None):
        self._test = test
        self._wait = wait
        self._finish = finish
        self.done = False
        self._record = record

    def test(self):
        if not self.done and self._test():
            self._complete()
        return self.done

    def wait(self):
        if not self.done:
            self._wait()
            self._complete()

    def _complete(self):
        self.done = True
        if self._finish is not None:
            self._finish()
        if self._record is not None:
            self._record()


def _wait_yielding(request):
    """Complete an MPI request, giving the CPU away between polls: MPI's own Wait spins,
    and where ranks share cores with each other (or with anything else) a spinning rank
    holds the core its peer needs to make the progress it waits for."""
    test = request.Test
    spin_until = time.perf_counter() + _SPIN_SECONDS
    while not test():
        if time.perf_counter() > spin_until:
            os.sched_yield()


# a peer on another core answers within this: spin, then yield
_SPIN_SECONDS = 2e-4


def _contiguous(xp, arr):
    """A C-contiguous array with arr's values: arr itself when it already is one."""
    return arr if arr.flags.c_contiguous else xp.ascontiguousarray(arr)


# -- the MPI engine -----------------------------------------------------------------------
class _MPIBackend:
    name = "mpi"

    def __init__(self, MPI, comm):
        self.MPI = MPI
        self.comm = comm
        self.host = self          # the engine of host arrays (the NCCL backend has one too)
        self._ops = {"sum": MPI.SUM, "avg": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}

    def _host(self, dev, arr):
        """(host buffer, function writing the buffer back to arr, or None): a host array
        itself where it is contiguous; a device's arrays are staged through host memory
        (an MPI that is not CUDA-aware cannot read them)."""
        if dev.is_host:
            buf = _contiguous(np, arr)
            if buf is arr:
                return buf, None
            return buf, lambda: np.copyto(arr, buf)
        buf = np.ascontiguousarray(dev.to_host(arr))
        return buf, lambda: arr.__setitem__(Ellipsis, dev.asarray(buf))

    def all_reduce(self, dev, arr, op):
        buf, back = self._host(dev, arr)
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])
        if back is not None:
            back()

    def all_reduce_async(self, dev, arr, op, finish, prof):
        begin = time.perf_counter()
        buf, back = self._host(dev, arr)
        request = self.comm.Iallreduce(self.MPI.IN_PLACE, buf, op=self._ops[op])

        def done():
            if back is not None:
                back()
            if finish is not None:
                finish()
        record = None
        if prof is not None:
            # the span ends where this process saw it complete
            def record():
                prof.span("all_reduce", dev, begin, arr.nbytes,
                          seconds=time.perf_counter() - begin)
        return _Work(request.Test, lambda: _wait_yielding(request), done, record)

    def broadcast(self, dev, arr, src):
        buf, back = self._host(dev, arr)
        self.comm.Bcast(buf, root=src)
        if back is not None:
            back()

    def all_gather(self, dev, arr):
        buf, _ = self._host(dev, arr)
        out = np.empty((self.comm.Get_size(),) + buf.shape, dtype=buf.dtype)
        self.comm.Allgather(buf, out)
        return out if dev.is_host else dev.asarray(out)

    def barrier(self):
        self.comm.Barrier()

    def abort(self, code):
        self.comm.Abort(code)

    def close(self):
        self.comm.Free()


# -- the NCCL engine ----------------------------------------------------------------------
_NCCL_DTYPES = {"float16": "NCCL_FLOAT16", "float32": "NCCL_FLOAT32",
                "float64": "NCCL_FLOAT64", "int8": "NCCL_INT8", "uint8": "NCCL_UINT8",
                "int32": "NCCL_INT32", "int64": "NCCL_INT64"}
_NCCL_OPS = {"sum": "NCCL_SUM", "avg": "NCCL_SUM", "max": "NCCL_MAX", "min": "NCCL_MIN"}


def _bootstrap_unique_id(comm, make_id):
    """The NCCL unique id made by rank 0 (``make_id()``) and broadcast over MPI, so every
    rank joins the same NCCL communicator; a tuple of ints on every rank."""
    uid = make_id() if comm.Get_rank() == 0 else None
    uid = comm.bcast(uid, root=0)
    if uid is None:
        raise RuntimeError("rank 0 sent no NCCL unique id")
    return tuple(uid)


class _NCCLBackend:
    """NCCL for the arrays of the rank's GPU, MPI for host arrays (losses, counts)."""

    name = "nccl"

    def __init__(self, MPI, comm, dev):
        self.host = _MPIBackend(MPI, comm)
        self.nccl = dev.nccl()
        self.dev = dev
        uid = _bootstrap_unique_id(comm, self.nccl.get_unique_id)
        with dev.context():
            self.comm = self.nccl.NcclCommunicator(comm.Get_size(), uid, comm.Get_rank())
        self.stream = dev.new_stream()

    def _on_gpu(self, dev, arr):
        """The NCCL dtype where NCCL moves this array; None where MPI does (a host array)."""
        if dev is not self.dev:
            if dev.is_host:
                return None
            raise ValueError(f"the nccl process group works on {self.dev}, got an array on "
                             f"{dev}")
        name = _NCCL_DTYPES.get(arr.dtype.name)
        if name is None:
            raise TypeError(f"the nccl backend has no type for dtype {arr.dtype}")
        return getattr(self.nccl, name)

    def _launch(self, run, timed=False):
        """run(stream pointer) on the communication stream after the work queued so far on
        the current stream; returns (current stream, event after the run, start event or
        None). The host never waits."""
        dev = self.dev
        current = dev.current_stream()
        ready = dev.new_event(timing=timed)
        ready.record(current)
        self.stream.wait_event(ready)
        with dev.context():
            run(self.stream.ptr)
        done = dev.new_event(timing=timed)
        done.record(self.stream)
        return current, done, ready if timed else None

    def _in_place(self, arr, fn):
        buf = _contiguous(self.dev.xp, arr)
        current, done, _ = self._launch(lambda stream: fn(buf, stream))
        current.wait_event(done)       # later work on the current stream sees the result
        if buf is not arr:
            arr[...] = buf

    def all_reduce(self, dev, arr, op):
        dtype = self._on_gpu(dev, arr)
        if dtype is None:
            return self.host.all_reduce(dev, arr, op)
        nccl_op, ptr = getattr(self.nccl, _NCCL_OPS[op]), dev.pointer
        self._in_place(arr, lambda buf, stream: self.comm.allReduce(
            ptr(buf), ptr(buf), buf.size, dtype, nccl_op, stream))

    def all_reduce_async(self, dev, arr, op, finish, prof):
        dtype = self._on_gpu(dev, arr)
        if dtype is None:
            return self.host.all_reduce_async(dev, arr, op, finish, prof)
        if not arr.flags.c_contiguous:
            raise ValueError("all_reduce_async needs a contiguous array")
        nccl_op, ptr = getattr(self.nccl, _NCCL_OPS[op]), dev.pointer(arr)
        host_start = time.perf_counter()
        current, done, start = self._launch(lambda stream: self.comm.allReduce(
            ptr, ptr, arr.size, dtype, nccl_op, stream), timed=prof is not None)

        def order_after():
            current.wait_event(done)    # later work on the current stream reads the result
            if finish is not None:
                finish()
        record = None
        if prof is not None:
            def record():
                prof.span("all_reduce", dev, host_start, arr.nbytes, marks=(start, done))
        return _Work(lambda: done.done, lambda: None, order_after, record)

    def broadcast(self, dev, arr, src):
        dtype = self._on_gpu(dev, arr)
        if dtype is None:
            return self.host.broadcast(dev, arr, src)
        ptr = dev.pointer
        self._in_place(arr, lambda buf, stream: self.comm.bcast(
            ptr(buf), buf.size, dtype, src, stream))

    def all_gather(self, dev, arr):
        dtype = self._on_gpu(dev, arr)
        if dtype is None:
            return self.host.all_gather(dev, arr)
        buf = _contiguous(dev.xp, arr)
        out = dev.allocate(dev.xp.empty, (self.host.comm.Get_size(),) + buf.shape, buf.dtype)
        ptr = dev.pointer
        current, done, _ = self._launch(lambda stream: self.comm.allGather(
            ptr(buf), ptr(out), buf.size, dtype, stream))
        current.wait_event(done)
        return out

    def barrier(self):
        self.dev.synchronize()
        self.stream.synchronize()
        self.host.barrier()

    def abort(self, code):
        try:
            self.comm.abort()
        finally:
            self.host.abort(code)

    def close(self):
        self.stream.synchronize()
        self.comm.destroy()
        self.host.close()


# -- the process group --------------------------------------------------------------------
class _Group:
    def __init__(self, backend, rank, size, local_rank, device, previous_hook):
        self.backend = backend
        self.rank = rank
        self.size = size
        self.local_rank = local_rank
        self.device = device
        self.previous_hook = previous_hook


def init_process_group(backend=None):
    """Join the processes the MPI launcher started. ``backend``: "mpi", "nccl", or None
    (the engine the rank's device asks for: NCCL on a GPU, MPI on the CPU). Rank and world
    size come from the launcher; a plain ``python`` process is a world of one."""
    global _group
    if _group is not None:
        raise RuntimeError("the default process group is already initialized "
                           f"(backend '{_group.backend.name}'); call destroy_process_group() "
                           "first")
    if backend is not None and backend not in ("mpi", "nccl"):
        raise ValueError(f"unknown backend '{backend}': expected 'mpi', 'nccl' or None")
    MPI = _import_mpi()
    comm = MPI.COMM_WORLD.Dup()     # our traffic never mixes with the user's own MPI calls
    try:
        local = comm.Split_type(MPI.COMM_TYPE_SHARED)
        local_rank = local.Get_rank()
        local.Free()
        # one GPU per process (local rank modulo the host's GPUs), or the shared CPU
        dev = _device.default_device().for_local_rank(local_rank)
        if backend is None:
            backend = dev.collective_backend
        engine = _NCCLBackend(MPI, comm, dev) if backend == "nccl" else _MPIBackend(MPI, comm)
    except BaseException:
        comm.Free()
        raise
    _group = _Group(engine, comm.Get_rank(), comm.Get_size(), local_rank, dev, sys.excepthook)
    if _group.size > 1:
        sys.excepthook = _abort_on_uncaught
    return None


def _abort_on_uncaught(exc_type, exc, tb):
    """An uncaught exception on one rank ends the job at once: the other ranks would
    otherwise wait in their next collective for ever."""
    group = _group
    previous = group.previous_hook if group is not None else sys.__excepthook__
    try:
        previous(exc_type, exc, tb)
        if group is not None:
            sys.stderr.write(f"gpugrad.distributed: rank {group.rank} failed; aborting the "
                             "job\n")
        sys.stderr.flush()
    finally:
        if group is not None:
            group.backend.abort(1)


def abort(code=1):
    """End every process of the job now with exit status ``code`` (MPI_Abort; the NCCL
    communicator is aborted first)."""
    group = _require_group()
    sys.stdout.flush()
    sys.stderr.flush()
    group.backend.abort(code)


def destroy_process_group():
    """Leave the process group (MPI itself is finalized when the process exits)."""
    global _group
    group = _require_group()
    _group = None
    if sys.excepthook is _abort_on_uncaught:
        sys.excepthook = group.previous_hook
    group.backend.close()


def is_initialized():
    return _group is not None


def get_rank():
    return _require_group().rank


def get_world_size():
    return _require_group().size


def get_local_rank():
    """This process's rank among those on its host."""
    return _require_group().local_rank


def get_backend():
    return _require_group().backend.name


def get_device():
    """The device this rank should compute on: its GPU (local rank modulo the GPUs of
    the host) when the default device is CUDA, else the CPU."""
    return _require_group().device


def barrier():
    _require_group().backend.barrier()


def _tensor_arg(fn, t):
    if not isinstance(t, Tensor):
        raise TypeError(f"{fn}: expected a Tensor, got {type(t).__name__}")
    return t


def _check_op(op, dtype):
    if op not in _OPS:
        raise ValueError(f"unknown reduction op '{op}': expected one of {', '.join(_OPS)}")
    if op == "avg" and dtype.kind not in "fc":
        raise TypeError(f"all_reduce: op 'avg' needs a floating-point tensor, got {dtype}")
    if dtype.kind == "b":
        raise TypeError("all_reduce: bool tensors cannot be reduced; convert to an integer "
                        "dtype first")


def all_reduce(tensor, op="sum"):
    """Reduce ``tensor`` over all ranks ("sum", "avg", "max" or "min"), in place on every
    rank; returns it. Not recorded by autograd."""
    group = _require_group()
    t = _tensor_arg("all_reduce", tensor)
    _check_op(op, t.dtype)
    group.backend.all_reduce(t.device, t._data, op)
    if op == "avg":
        t._data *= t._data.dtype.type(1.0 / group.size)
    _tensor.bump_version(t._ver)
    return t


def broadcast(tensor, src=0):
    """Overwrite ``tensor`` on every rank with rank ``src``'s values; returns it."""
    group = _require_group()
    t = _tensor_arg("broadcast", tensor)
    if not isinstance(src, (int, np.integer)) or not 0 <= src < group.size:
        raise ValueError(f"broadcast: src must be a rank in [0, {group.size}), got {src}")
    group.backend.broadcast(t.device, t._data, int(src))
    _tensor.bump_version(t._ver)
    return t


def all_gather(tensor_list, tensor):
    """Fill ``tensor_list[r]`` with rank r's ``tensor`` on every rank."""
    group = _require_group()
    t = _tensor_arg("all_gather", tensor)
    if not isinstance(tensor_list, list) or len(tensor_list) != group.size:
        got = len(tensor_list) if isinstance(tensor_list, (list, tuple)) else \
            type(tensor_list).__name__
        raise ValueError(f"all_gather: tensor_list must be a list of {group.size} tensors "
                         f"(one per rank), got {got}")
    for r, out in enumerate(tensor_list):
        _tensor_arg("all_gather", out)
        if out.shape != t.shape or out.dtype != t.dtype or out.device is not t.device:
            raise ValueError(f"all_gather: tensor_list[{r}] is {tuple(out.shape)} {out.dtype} "
                             f"on {out.device}, the input {tuple(t.shape)} {t.dtype} on "
                             f"{t.device}")
    gathered = group.backend.all_gather(t.device, t._data)
    for r, out in enumerate(tensor_list):
        out._data[...] = gathered[r]
        _tensor.bump_version(out._ver)
    return tensor_list


# -- for DistributedDataParallel and the training loop --------------------------------------
def _all_reduce_async(dev, array, op="sum", finish=None):
    """Start an all-reduce of a contiguous array of ``dev`` in place and return its
    ``_Work``; ``finish()`` runs when it completes. Spans go to the active profiler."""
    group = _require_group()
    if op not in _OPS or op == "avg":
        raise ValueError(f"all_reduce_async: op must be 'sum', 'max' or 'min', got '{op}'")
    return group.backend.all_reduce_async(dev, array, op, finish, profiler.active())


def _host_all_reduce(values, op="sum"):
    """All-reduce a NumPy array through MPI whatever the backend (losses, counts)."""
    group = _require_group()
    arr = np.ascontiguousarray(values)
    group.backend.host.all_reduce(_device.device("cpu"), arr, op)
    if op == "avg":
        arr = arr / group.size
    return arr


def all_gather_object(obj):
    """Every rank's picklable ``obj``, as a list indexed by rank (through MPI: for small
    objects)."""
    return _require_group().backend.host.comm.allgather(obj)
