"""The CUDA device: CuPy arrays on one GPU, the kernels of ``kernels/*.cu``.

The only module of gpugrad that imports CuPy, and it does so lazily: importing this
module costs nothing, and with ``GPUGRAD_DEVICE=cpu`` CuPy is never imported.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import _device
from .kernels import cublas as cublas_codes
from .kernels import cuda as cuda_kernels
from .kernels import reference

_cupy = None
_state = None        # None: not probed yet; else whether a CUDA device answers


def import_cupy():
    """The cupy module (imported on first use)."""
    global _cupy
    if _cupy is None:
        import cupy
        import cupyx.scipy.special
        reference.register_array_module(cupy.ndarray, cupy, cupyx.scipy.special.erf)
        _cupy = cupy
    return _cupy


def probe():
    global _state
    if _state is None:
        try:
            _state = import_cupy().cuda.runtime.getDeviceCount() > 0
        except Exception:  # ImportError, CUDARuntimeError with no driver, ...
            _state = False
    return _state


class CupyMemory:
    """Used bytes of CuPy's memory pool, with a peak kept by a memory hook."""

    def __init__(self, cupy):
        self._pool = cupy.get_default_memory_pool()
        self.peak = self._pool.used_bytes()
        memory = self

        class _PeakHook(cupy.cuda.MemoryHook):
            name = "gpugrad_peak"

            def malloc_postprocess(self, device_id, size, mem_size, mem_ptr, pmem_id):
                used = memory._pool.used_bytes()
                if used > memory.peak:
                    memory.peak = used

        # the hook stays installed for the whole process; peak follows every malloc
        _PeakHook().__enter__()

    def track(self, arr):
        pass      # the pool counts every allocation already

    def stats(self):
        used = self._pool.used_bytes()
        if used > self.peak:
            self.peak = used
        return {"current_bytes": used, "peak_bytes": self.peak,
                "pool_total_bytes": self._pool.total_bytes()}

    def reset_peak(self):
        self.peak = self._pool.used_bytes()


class CupyGenerator(_device.Generator):
    __slots__ = ()

    def normal(self, shape, dtype):
        if _device.recording_thread is not None:
            _device.refuse_while_recording("a random draw", _device._RANDOM_REFUSED)
        return self._rng.standard_normal(shape, dtype=_device._sampling_dtype(dtype)).astype(
            dtype, copy=False)

    def uniform(self, shape, dtype):
        if _device.recording_thread is not None:
            _device.refuse_while_recording("a random draw", _device._RANDOM_REFUSED)
        return self._rng.random_sample(shape, dtype=_device._sampling_dtype(dtype)).astype(
            dtype, copy=False)

    def integers(self, low, high, shape, dtype=np.int64):
        if _device.recording_thread is not None:
            _device.refuse_while_recording("a random draw", _device._RANDOM_REFUSED)
        return self._rng.randint(low, high, size=shape).astype(dtype, copy=False)

    def choice(self, values, shape):
        if _device.recording_thread is not None:
            _device.refuse_while_recording("a random draw", _device._RANDOM_REFUSED)
        return self._rng.choice(import_cupy().asarray(values), size=shape)


_nvtx = []


def _nvtx_usable(cupy):
    if not _nvtx:
        try:
            cupy.cuda.nvtx.RangePush("gpugrad")
            cupy.cuda.nvtx.RangePop()
            _nvtx.append(True)
        except Exception:  # CuPy built without NVTX
            _nvtx.append(False)
    return _nvtx[0]


class CapturedGraph:
    """A captured CUDA graph with what must live as long as it: its stream and the memory
    pool its buffers came from. Calling it launches the graph on the current stream."""

    def __init__(self, graph, stream, pool, cuda_device):
        self.graph, self.stream, self.pool, self.cuda_device = graph, stream, pool, cuda_device

    def __call__(self):
        with self.cuda_device:
            self.graph.launch()


class PinnedScalarFeed:
    """Scalars for a captured graph's kernels (``Device.scalar_feed``): a ring of pinned host
    buffers, each copied asynchronously into one device buffer on the current stream
    before the graph launch that reads it. The host refills a pinned buffer only once its
    previous copy has run (an event per buffer), so that it can run several replays ahead
    of the GPU without overwriting scalars not yet sent; stream order keeps a copy from
    overtaking the graph that reads the previous values."""

    DEPTH = 4

    def __init__(self, cupy, cuda_device, count):
        self._cupy, self._cuda_device = cupy, cuda_device
        nbytes = max(8, 8 * count)
        with cuda_device:
            self.device = cupy.zeros(count, dtype=np.float64)
            self._memory = [cupy.cuda.alloc_pinned_memory(nbytes) for _ in range(self.DEPTH)]
            self._events = [cupy.cuda.Event(disable_timing=True) for _ in range(self.DEPTH)]
        self._hosts = [np.ndarray((count,), np.float64, buffer=m) for m in self._memory]
        self._recorded = [False] * self.DEPTH
        self._turn = 0

    def acquire(self):
        if self._recorded[self._turn]:
            self._events[self._turn].synchronize()
        return self._hosts[self._turn]

    def push(self):
        turn = self._turn
        with self._cuda_device:
            stream = self._cupy.cuda.get_current_stream()
            self.device.set(self._hosts[turn], stream=stream)
            self._events[turn].record(stream)
        self._recorded[turn] = True
        self._turn = (turn + 1) % self.DEPTH


class CUDADevice(_device.Device):
    """One GPU through CuPy."""

    type = "cuda"
    __slots__ = ("xp", "array_type", "_cuda_device", "_blas", "_blas_workspace")

    def __init__(self, index):
        super().__init__(index)
        cupy = import_cupy()
        count = cupy.cuda.runtime.getDeviceCount()
        if index >= count:
            raise RuntimeError(f"device 'cuda:{index}' does not exist: {count} CUDA device(s) "
                               "found")
        self.xp = cupy
        self.array_type = cupy.ndarray
        self._cuda_device = cupy.cuda.Device(index)
        with self._cuda_device:
            self.memory = CupyMemory(cupy)
            sms = cupy.cuda.runtime.getDeviceProperties(index)["multiProcessorCount"]
        modules = {}

        def load(source):
            if source not in modules:
                modules[source] = cupy.RawModule(code=cuda_kernels.read_source(source),
                                                 options=("-std=c++17",))
            return modules[source]
        self.kernels = cuda_kernels.CudaKernels(cupy, load, int(sms) * 16, self.context,
                                                gemm_ex=gemm_ex)

    def __str__(self):
        return f"cuda:{self.index}"

    @staticmethod
    def device_of(arr):
        if _cupy is not None and isinstance(arr, _cupy.ndarray):
            return _device.device(f"cuda:{arr.device.id}")
        return None

    def run(self, op, params, arrays, out=None):
        if self.index:
            with self._cuda_device:
                return super().run(op, params, arrays, out)
        return super().run(op, params, arrays, out)

    def asarray(self, data, dtype=None):
        with self._cuda_device:
            return self.xp.array(data, dtype=dtype)

    def allocate(self, fill, shape, dtype):
        with self._cuda_device:
            return fill(shape, dtype=dtype)

    def to_host(self, arr):
        return arr.get()

    def context(self):
        return self._cuda_device

    def new_mark(self):
        """A recorded CUDA event: read later, no host synchronisation now."""
        event = self.xp.cuda.Event()
        event.record()
        return event

    def elapsed(self, start, stop):
        stop.synchronize()
        return self.xp.cuda.get_elapsed_time(start, stop) / 1e3

    def host_time(self, mark):
        return time.perf_counter()   # an event has no host reading; now is close enough

    def range_push(self, name):
        if _nvtx_usable(self.xp):
            self.xp.cuda.nvtx.RangePush(name)

    def range_pop(self):
        if _nvtx_usable(self.xp):
            self.xp.cuda.nvtx.RangePop()

    def synchronize(self):
        self._cuda_device.synchronize()

    def new_generator(self, seed):
        with self._cuda_device:
            return CupyGenerator(self.xp.random.RandomState(seed))

    # -- CUDA graphs (gg.compile) ---------------------------------------------------------------
    def capture(self, run):
        """``run()`` captured as a CUDA graph: on a side stream in relaxed mode, every
        allocation inside it from a memory pool kept with the graph, and GEMMs through a
        cuBLAS handle of our own (CuPy refuses cuBLAS calls during capture). Nothing runs
        now; the returned object launches the graph on the current stream when called."""
        cp = self.xp
        with self._cuda_device:
            blas = self._capture_blas()
            stream = cp.cuda.Stream(non_blocking=True)
            pool = cp.cuda.MemoryPool()
            blas.set_stream(stream.ptr)
            previous = self._functions.get("matmul")
            self._functions["matmul"] = self._captured_matmul
            graph = None
            try:
                with stream, cp.cuda.using_allocator(pool.malloc):
                    stream.begin_capture(mode=cp.cuda.runtime.streamCaptureModeRelaxed)
                    try:
                        run()
                    finally:
                        graph = stream.end_capture()
            finally:
                if previous is None:
                    self._functions.pop("matmul", None)
                else:
                    self._functions["matmul"] = previous
        return CapturedGraph(graph, stream, pool, self._cuda_device)

    def scalar_feed(self, count):
        return PinnedScalarFeed(self.xp, self._cuda_device, count)

    def _capture_blas(self):
        handle = getattr(self, "_blas", None)
        if handle is None:
            from .kernels import cublas
            with self._cuda_device:
                # persistent: cuBLAS must not allocate its workspace inside a graph
                self._blas_workspace = self.xp.empty(cublas.WORKSPACE_BYTES, dtype=np.uint8)
                handle = cublas.Handle(cublas.load(), 0, self._blas_workspace.data.ptr,
                                       cublas.WORKSPACE_BYTES)
            self._blas = handle
        return handle

    def _captured_matmul(self, a, b, out=None):
        batched = (a.ndim == 3 and b.ndim == 3 and out is not None and out.ndim == 3
                   and a.shape[0] == b.shape[0] == out.shape[0])
        if ((not batched and (a.ndim != 2 or b.ndim != 2)) or out is None
                or a.dtype != b.dtype or a.dtype != out.dtype
                or a.dtype not in _CAPTURED_DTYPES):
            raise NotImplementedError(
                f"gg.compile captures 2-D and equally batched 3-D float32/float16/bfloat16 "
                f"GEMMs into a given buffer only, got "
                f"{a.shape} {a.dtype} @ {b.shape} {b.dtype}")
        if batched:
            # one GEMM per matrix of the batch: each a 2-D view cuBLAS reads by its strides
            for i in range(a.shape[0]):
                self._blas.gemm(a[i], b[i], out[i])
            return out
        return self._blas.gemm(a, b, out)

    # -- between processes: what gpugrad.distributed's NCCL engine needs ---------------------
    collective_backend = "nccl"

    def for_local_rank(self, local_rank):
        """One GPU per process: local rank modulo the GPUs of the host."""
        count = self.xp.cuda.runtime.getDeviceCount()
        return _device.device(f"cuda:{local_rank % count}")

    def nccl(self):
        """CuPy's NCCL binding (``cupy.cuda.nccl``), with NCCL loadable."""
        try:
            from cupy.cuda import nccl
        except ImportError as err:
            raise RuntimeError(f"the nccl backend needs CuPy's NCCL binding ({err}): install "
                               "the gpu extra (pip install 'gpugrad[gpu]', which brings the "
                               "nvidia-nccl-cu13 wheel)") from None
        if not getattr(nccl, "available", False):
            raise RuntimeError("CuPy's NCCL binding is present but NCCL is not loadable: "
                               "install the nvidia-nccl-cu13 wheel (pip install "
                               "'gpugrad[gpu]')")
        return nccl

    def new_stream(self):
        """A stream of its own that does not wait on the legacy default stream."""
        with self._cuda_device:
            return self.xp.cuda.Stream(non_blocking=True)

    def current_stream(self):
        with self._cuda_device:
            return self.xp.cuda.get_current_stream()

    def new_event(self, timing=False):
        """An unrecorded CUDA event (``timing``: one that ``elapsed`` can read)."""
        with self._cuda_device:
            return self.xp.cuda.Event(disable_timing=not timing)

    @staticmethod
    def pointer(arr):
        """The device address of an array's first element."""
        return arr.data.ptr


    def dlpack_device(self):
        return (_DLPACK_CUDA, self.index)

    def from_dlpack(self, obj):
        with self._cuda_device:
            return self.xp.from_dlpack(obj)


_DLPACK_CUDA = 2
_CAPTURED_DTYPES = tuple(cublas_codes.DATA_TYPES)
_ONE = np.ones((), dtype=np.float32)
_ZERO = np.zeros((), dtype=np.float32)


def gemm_ex(args, a, b, out):
    """out = a @ b for float16 or bfloat16 arrays, the products accumulated in float32
    (compute type 32F): cublasGemmEx through CuPy's handle on the current stream (outside
    capture; a captured graph uses gpugrad's own handle). ``args`` are GemmEx's
    (transa, transb, m, n, k, lda, ldb, ldc) from ``kernels/cublas.gemm_arguments``,
    whose first operand is b."""
    cupy = import_cupy()
    from cupy.cuda import cublas
    from cupy.cuda import device as cuda_device
    transa, transb, m, n, k, lda, ldb, ldc = args
    handle = cuda_device.get_cublas_handle()
    cublas.setStream(handle, cupy.cuda.get_current_stream().ptr)
    code = cublas_codes.DATA_TYPES[a.dtype]
    mode = cublas.getPointerMode(handle)
    cublas.setPointerMode(handle, 0)     # alpha and beta are host scalars
    try:
        cublas.gemmEx(handle, transa, transb, m, n, k, _ONE.ctypes.data, b.data.ptr, code,
                      lda, a.data.ptr, code, ldb, _ZERO.ctypes.data, out.data.ptr, code, ldc,
                      cublas_codes.COMPUTE_32F, cublas_codes.GEMM_DEFAULT)
    finally:
        cublas.setPointerMode(handle, mode)


def availability():
    """(number of CUDA devices, why there is none), without raising."""
    if os.environ.get("GPUGRAD_DEVICE", "").strip().lower() == "cpu":
        return 0, "GPUGRAD_DEVICE=cpu"
    try:
        cupy = import_cupy()
    except ImportError:
        return 0, "CuPy is not installed: pip install \".[gpu]\""
    except Exception as err:  # a broken CuPy install raises all sorts
        return 0, f"CuPy failed to import: {err}"
    try:
        count = cupy.cuda.runtime.getDeviceCount()
    except Exception as err:  # CUDARuntimeError without a driver
        return 0, f"no CUDA driver or device answered: {err}"
    return count, None if count else "the CUDA driver reports no device"


def describe():
    """Lines for ``gpugrad info``: CuPy's version, each GPU, the kernels compiled."""
    cupy = import_cupy()
    count = cupy.cuda.runtime.getDeviceCount()
    lines = [f"cupy {cupy.__version__}, {count} CUDA device(s)"]
    for i in range(count):
        props = cupy.cuda.runtime.getDeviceProperties(i)
        name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
        lines.append(f"  cuda:{i} {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
    dev = _device.device("cuda")
    lines.append("kernels compiled: " + ", ".join(dev.kernels.compiled_names()))
    return lines


_device.register_kind("cuda", CUDADevice, probe)
