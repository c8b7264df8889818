"""The CUDA device: CuPy arrays on one GPU, the kernels of ``kernels/*.cu``.

The only module of gpugrad that imports CuPy, and it does so lazily: importing this
module costs nothing, and with ``GPUGRAD_DEVICE=cpu`` CuPy is never imported.
"""
from __future__ import annotations

import os
import time

import numpy as np

from . import _device, _dtypes
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
        return self._rng.standard_normal(shape, dtype=_device._sampling_dtype(dtype)).astype(
            dtype, copy=False)

    def uniform(self, shape, dtype):
        return self._rng.random_sample(shape, dtype=_device._sampling_dtype(dtype)).astype(
            dtype, copy=False)

    def integers(self, low, high, shape, dtype=np.int64):
        return self._rng.randint(low, high, size=shape).astype(dtype, copy=False)

    def choice(self, values, shape):
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


class CUDADevice(_device.Device):
    """One GPU through CuPy."""

    type = "cuda"
    __slots__ = ("xp", "array_type", "_cuda_device")

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


    def dlpack_device(self):
        return (_DLPACK_CUDA, self.index)

    def from_dlpack(self, obj):
        with self._cuda_device:
            return self.xp.from_dlpack(obj)


_DLPACK_CUDA = 2
# cudaDataType codes (library_types.h) and cuBLAS constants (cublas_api.h)
_CUDA_DTYPE = {np.dtype(np.float16): 2}
if _dtypes.bfloat16 is not None:
    _CUDA_DTYPE[_dtypes.bfloat16] = 14       # CUDA_R_16BF
_CUBLAS_COMPUTE_32F = 68
_CUBLAS_GEMM_DEFAULT = -1
_ONE = np.ones((), dtype=np.float32)
_ZERO = np.zeros((), dtype=np.float32)


def gemm_ex(trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc):
    """C = op(A) op(B) in cuBLAS's column-major terms, A, B and C of one dtype (float16 or
    bfloat16), the products accumulated in float32 (compute type 32F): cublasGemmEx on
    the current stream. The kernel table decides the layouts (kernels/cuda.py)."""
    cupy = import_cupy()
    from cupy.cuda import cublas
    from cupy.cuda import device as cuda_device
    handle = cuda_device.get_cublas_handle()
    cublas.setStream(handle, cupy.cuda.get_current_stream().ptr)
    code = _CUDA_DTYPE[a.dtype]
    mode = cublas.getPointerMode(handle)
    cublas.setPointerMode(handle, 0)     # alpha and beta are host scalars
    try:
        cublas.gemmEx(handle, int(trans_a), int(trans_b), m, n, k, _ONE.ctypes.data,
                      a.data.ptr, code, lda, b.data.ptr, code, ldb, _ZERO.ctypes.data,
                      c.data.ptr, code, ldc, _CUBLAS_COMPUTE_32F, _CUBLAS_GEMM_DEFAULT)
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
