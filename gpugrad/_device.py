"""The device layer: array module, kernels, random numbers and memory accounting per device.

This is the only module that imports CuPy, and it does so lazily: with
``GPUGRAD_DEVICE=cpu`` CuPy is never imported.
"""
from __future__ import annotations

import math
import os
import time
import weakref

import numpy as np

_cupy = None            # the cupy module once imported
_cuda_state = None      # None: not probed yet; else bool

# Arrays smaller than this are not counted by the CPU accounting: a weak reference
# with a callback costs about a microsecond, which would double the cost of an op on
# tiny tensors, while such arrays never decide a peak.
TRACK_MIN_BYTES = 1024


def _import_cupy():
    global _cupy
    if _cupy is None:
        import cupy
        _cupy = cupy
    return _cupy


def cuda_available() -> bool:
    """True only if CuPy imports and a CUDA device answers."""
    global _cuda_state
    if _cuda_state is None:
        if os.environ.get("GPUGRAD_DEVICE", "").strip().lower() == "cpu":
            _cuda_state = False
            return False
        try:
            cupy = _import_cupy()
            _cuda_state = cupy.cuda.runtime.getDeviceCount() > 0
        except Exception:  # ImportError, CUDARuntimeError with no driver, ...
            _cuda_state = False
    return _cuda_state


class _HostMemory:
    """Live bytes of arrays gpugrad allocated on the host, with a peak."""

    __slots__ = ("current", "peak", "_refs", "__weakref__")

    def __init__(self):
        self.current = 0
        self.peak = 0
        self._refs = {}

    def track(self, arr):
        nbytes = arr.nbytes
        if nbytes < TRACK_MIN_BYTES:
            return
        ref = weakref.ref(arr, self._release)
        self._refs[id(ref)] = (ref, nbytes)
        self.current += nbytes
        if self.current > self.peak:
            self.peak = self.current

    def _release(self, ref):
        entry = self._refs.pop(id(ref), None)
        if entry is not None:
            self.current -= entry[1]

    def stats(self):
        return {"current_bytes": self.current, "peak_bytes": self.peak,
                "tracked_arrays": len(self._refs)}

    def reset_peak(self):
        self.peak = self.current


class _CupyMemory:
    """Used bytes of CuPy's memory pool, with a peak kept by a memory hook."""

    def __init__(self, cupy, index):
        self._cupy = cupy
        self._index = index
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
        pass

    def stats(self):
        used = self._pool.used_bytes()
        if used > self.peak:
            self.peak = used
        return {"current_bytes": used, "peak_bytes": self.peak,
                "pool_total_bytes": self._pool.total_bytes()}

    def reset_peak(self):
        self.peak = self._pool.used_bytes()


class Device:
    """A place where arrays live: ``cpu`` (NumPy) or ``cuda:N`` (CuPy)."""

    __slots__ = ("type", "index", "xp", "memory", "_rng", "kernels", "fn", "__weakref__")

    def __init__(self, type_, index):
        self.type = type_
        self.index = index
        if type_ == "cpu":
            self.xp = np
            self.memory = _HostMemory()
        else:
            if not cuda_available():
                raise RuntimeError(
                    f"device '{self}' was asked for but CUDA is not available "
                    "(CuPy missing, no driver, or GPUGRAD_DEVICE=cpu)")
            cupy = _import_cupy()
            count = cupy.cuda.runtime.getDeviceCount()
            if index >= count:
                raise RuntimeError(f"device '{self}' does not exist: {count} CUDA device(s) found")
            self.xp = cupy
            with cupy.cuda.Device(index):
                self.memory = _CupyMemory(cupy, index)
        self._rng = None
        # the kernel table: CUDA kernels on CuPy, their NumPy twins on the CPU
        from . import kernels
        self.kernels = kernels.table_for(self)
        self.fn = _FunctionTable(self.kernels, self.xp)

    def __repr__(self):
        return f"device(type='{self.type}', index={self.index})" if self.type == "cuda" \
            else "device(type='cpu')"

    def __str__(self):
        return "cpu" if self.type == "cpu" else f"cuda:{self.index}"

    def __eq__(self, other):
        if isinstance(other, Device):
            return self is other
        if isinstance(other, str):
            try:
                return _parse(other) == (self.type, self.index)
            except ValueError:
                return False
        return NotImplemented

    def __hash__(self):
        return hash((self.type, self.index))

    # -- arrays -------------------------------------------------------------------
    def asarray(self, data, dtype=None):
        """An array of this device holding ``data`` (copied across devices)."""
        xp = self.xp
        if self.type == "cpu":
            if _cupy is not None and isinstance(data, _cupy.ndarray):
                data = data.get()
            return np.array(data, dtype=dtype)
        with xp.cuda.Device(self.index):
            return xp.array(data, dtype=dtype)

    def index_add(self, target, index, values):
        """target[index] += values, adding repeated indices once each (in place)."""
        if self.type == "cpu":
            np.add.at(target, index, values)
        else:
            self.xp.add.at(target, index, values)

    def to_host(self, arr):
        return arr if self.type == "cpu" else arr.get()

    def context(self):
        """A context manager making this device current (a no-op on the CPU)."""
        if self.type == "cpu":
            return _NULL_CONTEXT
        return self.xp.cuda.Device(self.index)

    def new_mark(self):
        """A point in this device's timeline: a recorded CUDA event on a GPU (read later,
        no host sync now), the host clock on the CPU. ``elapsed`` gives seconds between."""
        if self.type == "cpu":
            return time.perf_counter()
        event = self.xp.cuda.Event()
        event.record()
        return event

    def elapsed(self, start, stop):
        if self.type == "cpu":
            return stop - start
        stop.synchronize()
        return self.xp.cuda.get_elapsed_time(start, stop) / 1e3

    def range_push(self, name):
        """An NVTX range, so that Nsight shows op names (a no-op on the CPU, or where
        CuPy has no NVTX)."""
        if self.type != "cpu" and _nvtx_usable(self.xp):
            self.xp.cuda.nvtx.RangePush(name)

    def range_pop(self):
        if self.type != "cpu" and _nvtx_usable(self.xp):
            self.xp.cuda.nvtx.RangePop()

    def synchronize(self):
        if self.type != "cpu":
            self.xp.cuda.Device(self.index).synchronize()

    @property
    def rng(self):
        if self._rng is None:
            self.seed(_seed)
        return self._rng

    def seed(self, seed):
        if self.type == "cpu":
            self._rng = np.random.default_rng(seed)
        else:
            with self.context():
                self._rng = self.xp.random.RandomState(seed)


_nvtx_state = []


def _nvtx_usable(cupy):
    if not _nvtx_state:
        try:
            cupy.cuda.nvtx.RangePush("gpugrad")
            cupy.cuda.nvtx.RangePop()
            _nvtx_state.append(True)
        except Exception:  # CuPy built without NVTX
            _nvtx_state.append(False)
    return _nvtx_state[0]


class _FunctionTable(dict):
    """name -> the kernel of that name, else the array module's function, resolved once."""

    def __init__(self, kernels, xp):
        super().__init__()
        self._kernels = kernels
        self._xp = xp

    def __missing__(self, name):
        fn = getattr(self._kernels, name, None) or getattr(self._xp, name)
        self[name] = fn
        return fn


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL_CONTEXT = _NullContext()
_devices: dict = {}


def _parse(spec):
    text = spec.strip().lower()
    if text == "cpu":
        return ("cpu", 0)
    if text == "cuda" or text == "gpu":
        return ("cuda", 0)
    if text.startswith("cuda:"):
        rest = text[5:]
        if rest.isdigit():
            return ("cuda", int(rest))
    raise ValueError(f"unknown device '{spec}': expected 'cpu', 'cuda' or 'cuda:N'")


def device(spec="cpu") -> Device:
    """The device named by ``spec``: a Device, 'cpu', 'cuda' or 'cuda:N'."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return default_device()
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string or gg.device, got {type(spec).__name__}")
    key = _parse(spec)
    dev = _devices.get(key)
    if dev is None:
        dev = Device(*key)
        _devices[key] = dev
    return dev


_default = None


def default_device() -> Device:
    """'cuda' when available, else 'cpu'; the GPUGRAD_DEVICE variable overrides."""
    global _default
    if _default is None:
        override = os.environ.get("GPUGRAD_DEVICE", "").strip()
        if override:
            _default = device(override)
        else:
            _default = device("cuda" if cuda_available() else "cpu")
    return _default


def array_device(arr):
    """The device an array lives on (NumPy -> cpu, CuPy -> its cuda device)."""
    if isinstance(arr, np.ndarray) or np.isscalar(arr):
        return device("cpu")
    if _cupy is not None and isinstance(arr, _cupy.ndarray):
        return device(f"cuda:{arr.device.id}")
    return None


_np_erf = np.frompyfunc(math.erf, 1, 1)


def erf(arr):
    """The error function elementwise, on either array module (NumPy has none: math.erf
    per element there, exact to float64; cupyx.scipy.special on a GPU)."""
    if is_cupy_array(arr):
        import cupyx.scipy.special
        return cupyx.scipy.special.erf(arr)
    arr = np.asarray(arr)
    values = np.asarray(_np_erf(arr), dtype=np.float64)   # 0-d input gives a plain float
    return values.astype(arr.dtype if arr.dtype.kind == "f" else np.float64, copy=False)


def is_cupy_array(arr):
    return _cupy is not None and isinstance(arr, _cupy.ndarray)


def manual_seed(seed: int):
    """Seed gpugrad's random numbers on every device, present and future."""
    global _seed
    _seed = int(seed)
    for dev in _devices.values():
        dev.seed(_seed)


_seed = None   # devices created after manual_seed start from it too
