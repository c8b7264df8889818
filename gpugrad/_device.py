"""The device layer: one class per kind of device behind one interface.

A device owns its array module, its kernel table, allocation (so that memory accounting
happens by construction), its random generator, host transfer, timing marks and one
``run(op, params, arrays, out=None)`` through which every kernel call passes. This module
holds the interface, the CPU device (NumPy) and the registry of devices; the CUDA device
lives in ``_cuda.py``, the only module that imports CuPy, and registers itself here.
Nothing above this layer branches on the kind of device.
"""
from __future__ import annotations

import os
import threading
import time
import weakref

import numpy as np

from .kernels import reference

# Arrays smaller than this are not counted by the CPU accounting: a weak reference with a
# callback costs about a microsecond, which would double the cost of an op on tiny
# tensors, while such arrays never decide a peak.
TRACK_MIN_BYTES = 1024
_np_generic = np.generic
_np_asarray = np.asarray

# gg.compile: the thread now recording a step (None when none is). Host reads, random draws
# and masks made outside the kernels are refused there: a replay would not redo them.
recording_thread = None


def refuse_while_recording(what, why):
    """Raise if this thread is recording a step for gg.compile (callers check
    ``recording_thread is not None`` first, so that this costs nothing otherwise)."""
    if recording_thread == threading.get_ident():
        raise RuntimeError(f"{what} while gg.compile records a step: {why}")


class _TrackedRef(weakref.ref):
    """A weak reference to a counted array that knows its key and size (one object per
    array, where a callback bound to the key would take two)."""
    __slots__ = ("key", "nbytes")


class HostMemory:
    """Live bytes of the arrays a CPU device allocated, with a peak."""

    __slots__ = ("current", "peak", "_refs", "__weakref__")

    def __init__(self):
        self.current = 0
        self.peak = 0
        self._refs = {}

    def track(self, arr):
        """Count ``arr`` until it dies; counting it twice counts it once."""
        nbytes = arr.nbytes
        if nbytes < TRACK_MIN_BYTES:
            return
        key = id(arr)
        refs = self._refs
        if key in refs:
            return
        ref = _TrackedRef(arr, self._release)
        ref.key = key
        ref.nbytes = nbytes
        refs[key] = ref
        self.current += nbytes
        if self.current > self.peak:
            self.peak = self.current

    def _release(self, ref):
        refs = self._refs
        if refs.get(ref.key) is ref:
            del refs[ref.key]
            self.current -= ref.nbytes

    def stats(self):
        return {"current_bytes": self.current, "peak_bytes": self.peak,
                "tracked_arrays": len(self._refs)}

    def reset_peak(self):
        self.peak = self.current


class Device:
    """A place where arrays live. Subclasses set ``type``, ``xp`` (the array module),
    ``kernels`` (the kernel table: CUDA kernels or their NumPy twins) and ``memory``."""

    type = "?"
    xp = None
    is_host = False       # arrays in host memory: reading them back costs no sync
    __slots__ = ("index", "kernels", "memory", "_generator", "_forks", "_functions",
                 "__weakref__")

    def __init__(self, index):
        self.index = index
        self._generator = None
        self._forks = None
        self._functions = {}

    def __repr__(self):
        return f"device(type='{self.type}', index={self.index})"

    def __str__(self):
        return f"{self.type}:{self.index}" if self.index else self.type

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

    # -- kernels ----------------------------------------------------------------------------
    def function(self, name):
        """The kernel ``name`` of this device's table, else the array module's function."""
        fn = self._functions.get(name)
        if fn is None:
            fn = getattr(self.kernels, name, None) or getattr(self.xp, name)
            self._functions[name] = fn
        return fn

    def run(self, op, params, arrays, out=None):
        """Run ``op``'s forward kernel on this device; with ``out`` it writes there and
        allocates nothing. Every op call passes through here (and the profiler's)."""
        kernel = op.kernel
        if kernel is not None:
            fn = self._functions.get(kernel) or self.function(kernel)
            data = fn(*arrays) if out is None else fn(*arrays, out=out)
        else:
            data = op.forward(self, params, *arrays, out=out)
        if data.__class__ is not self.array_type:
            # NumPy returns scalars from 0-d ufunc calls; a tensor always holds an array
            data = _np_asarray(data) if isinstance(data, _np_generic) else data
        if data.nbytes >= TRACK_MIN_BYTES and out is None and not op.view:
            self.memory.track(data)
        return data

    # -- arrays -----------------------------------------------------------------------------
    array_type = None

    def asarray(self, data, dtype=None):
        """An array of this device holding a copy of ``data`` (from any device)."""
        raise NotImplementedError

    def allocate(self, fill, shape, dtype):
        """A new array from ``fill`` (zeros, ones, empty, full, ...), counted."""
        arr = fill(shape, dtype=dtype)
        self.memory.track(arr)
        return arr

    def adopt(self, arr):
        """Count an array made outside ``run`` (a mask, a constant, a rule's arithmetic) as
        this device's; a NumPy scalar (what 0-d arithmetic gives) becomes a 0-d array."""
        if arr.__class__ is not self.array_type:
            arr = self.xp.asarray(arr)
        if arr.nbytes >= TRACK_MIN_BYTES:
            self.memory.track(arr)
        return arr

    def owns(self, arr):
        return arr.__class__ is self.array_type

    def to_host(self, arr):
        return arr

    def index_add(self, target, index, values):
        """target[index] += values, adding repeated indices once each (in place)."""
        self.xp.add.at(target, index, values)

    def context(self):
        """A context manager that makes this device current."""
        return _NULL_CONTEXT

    def scalar_feed(self, count):
        """``count`` float64 scalars that the host writes before each launch of a captured
        graph and its kernels read on the device (gg.compile: learning rates, bias
        corrections): ``acquire()`` gives the host array to fill, ``push()`` sends it,
        ``device`` is what the kernels read."""
        return ScalarFeed(self, count)

    # -- timing -----------------------------------------------------------------------------
    def new_mark(self):
        """A point in this device's timeline; ``elapsed`` gives the seconds between two."""
        return time.perf_counter()

    def elapsed(self, start, stop):
        return stop - start

    def host_time(self, mark):
        """The host clock reading of a mark, for placing it on a timeline."""
        return mark

    def range_push(self, name):
        """Open a named range for external profilers (Nsight on a GPU)."""

    def range_pop(self):
        pass

    def synchronize(self):
        pass

    # -- between processes (gpugrad.distributed) --------------------------------------------
    # the engine init_process_group(backend=None) picks for a process computing here
    collective_backend = "mpi"

    def for_local_rank(self, local_rank):
        """The device of this kind that process ``local_rank`` of a host computes on: one
        each where the host has several (GPUs), this one where all share it (its memory)."""
        return self

    def nccl(self):
        """CuPy's NCCL binding, for arrays of this device; only a CUDA device has one."""
        raise RuntimeError(f"the nccl backend needs a CUDA device, and {self} is not one "
                           "(CuPy missing, no driver, or GPUGRAD_DEVICE=cpu): use backend='mpi'")

    # -- random numbers ---------------------------------------------------------------------
    @property
    def generator(self):
        """This device's generator, seeded by ``gg.manual_seed`` (or from entropy)."""
        if self._generator is None:
            self.seed(_seed)
        return self._generator

    def seed(self, seed):
        self._generator = self.new_generator(seed)
        self._generator.philox = PhiloxStream(seed)
        self._forks = None

    def new_generator(self, seed):
        """A fresh generator object of this device's kind (never the user's stream)."""
        raise NotImplementedError

    def rng_state(self):
        """A token from which ``set_rng_state`` puts this device's random streams back to
        this point (gradient checkpointing replays a region's draws with it): the Philox
        stream's counter (dropout) and the array module's generator.

        Here, for generators whose state cannot be read back (CuPy's), the latter is
        forked: it goes on from a fresh generator whose seed is in the token, drawn on the
        host from a sequence that ``gg.manual_seed`` seeds (no device synchronisation)."""
        if self._forks is None:
            self._forks = np.random.default_rng(None if _seed is None else [_seed, 1])
        fork = int(self._forks.integers(2 ** 31 - 1))
        self._set_generator(self.new_generator(fork))
        philox = self._generator.philox
        return fork, philox.seed, philox.offset

    def set_rng_state(self, token):
        fork, seed, offset = token
        self._set_generator(self.new_generator(fork))
        self._generator.philox.seed, self._generator.philox.offset = seed, offset

    def _set_generator(self, generator):
        """A new array-module generator; the Philox stream object stays (a compiled step
        may hold it)."""
        generator.philox = self.generator.philox
        self._generator = generator

    # -- DLPack -----------------------------------------------------------------------------
    def dlpack_device(self):
        """(DLPack device type, index) of this device's arrays."""
        raise NotImplementedError

    def from_dlpack(self, obj):
        """An array of this device sharing memory with ``obj`` (DLPack's consumer side)."""
        raise NotImplementedError


class ScalarFeed:
    """A device's scalar feed (``Device.scalar_feed``) where host and device share memory:
    a host array copied into the device's at ``push``."""

    __slots__ = ("host", "device")

    def __init__(self, dev, count):
        self.host = np.zeros(count, dtype=np.float64)
        with dev.context():
            self.device = dev.allocate(dev.xp.zeros, (count,), np.float64)

    def acquire(self):
        return self.host

    def push(self):
        self.device[...] = self.host


class PhiloxStream:
    """The counter-based stream of a device (dropout): a key and the next counter; a
    draw is a pure function of (seed, offset, element), so it can be replayed."""

    __slots__ = ("seed", "offset")

    def __init__(self, seed=None):
        self.seed = int(seed) % 2**64 if seed is not None else \
            int.from_bytes(os.urandom(8), "little")
        self.offset = 0

    def take(self, count=1):
        """The next ``count`` counter values (their first)."""
        first = self.offset
        self.offset += count
        return first


_RANDOM_REFUSED = ("the numbers would be drawn once and frozen into every replay; draw them "
                   "outside the step and pass them in (dropout is fine: it replays with a "
                   "new mask each time)")


class Generator:
    """Random numbers for one device: ``normal``, ``uniform`` and ``integers`` in the
    requested dtype, drawn through the array module's generator; ``philox``, the
    counter-based stream that dropout draws from."""

    __slots__ = ("_rng", "philox")

    def __init__(self, rng):
        self._rng = rng
        self.philox = None

    def normal(self, shape, dtype):
        if recording_thread is not None:
            refuse_while_recording("a random draw", _RANDOM_REFUSED)
        return self._rng.standard_normal(shape, dtype=_sampling_dtype(dtype)).astype(
            dtype, copy=False)

    def uniform(self, shape, dtype):
        if recording_thread is not None:
            refuse_while_recording("a random draw", _RANDOM_REFUSED)
        return self._rng.random(shape, dtype=_sampling_dtype(dtype)).astype(dtype, copy=False)

    def integers(self, low, high, shape, dtype=np.int64):
        if recording_thread is not None:
            refuse_while_recording("a random draw", _RANDOM_REFUSED)
        return self._rng.integers(low, high, size=shape).astype(dtype, copy=False)

    def choice(self, values, shape):
        if recording_thread is not None:
            refuse_while_recording("a random draw", _RANDOM_REFUSED)
        return self._rng.choice(values, size=shape)


def _sampling_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f" and dtype.name != "bfloat16":
        raise TypeError(f"random floating-point samples need a floating dtype, got {dtype}")
    return dtype if dtype in (np.float32, np.float64) else np.dtype(np.float32)


class CPUDevice(Device):
    """NumPy arrays in host memory; the kernel table is the NumPy twins. ``cpu:1`` is a
    second, separate instance (tests use it to stand in for a second GPU)."""

    type = "cpu"
    xp = np
    array_type = np.ndarray
    is_host = True
    __slots__ = ()

    def __init__(self, index):
        super().__init__(index)
        self.kernels = reference
        self.memory = HostMemory()
        self._functions.update(reference.NUMPY_FORMS)

    def asarray(self, data, dtype=None):
        if hasattr(data, "__cuda_array_interface__"):
            data = data.get()      # a GPU array: copied to the host
        arr = np.array(data, dtype=dtype)
        return self.adopt(arr)

    def new_generator(self, seed):
        return Generator(np.random.default_rng(seed))

    def rng_state(self):
        gen = self.generator
        # bit_generator.state is a fresh dict at each read
        return gen._rng.bit_generator.state, gen.philox.seed, gen.philox.offset

    def set_rng_state(self, token):
        state, seed, offset = token
        gen = self.generator
        gen._rng.bit_generator.state = state
        gen.philox.seed, gen.philox.offset = seed, offset

    def dlpack_device(self):
        return (_DLPACK_CPU, 0)

    def from_dlpack(self, obj):
        return np.from_dlpack(obj)


class _NullContext:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


_NULL_CONTEXT = _NullContext()
_DLPACK_CPU = 1

# -- the registry ----------------------------------------------------------------------------
_kinds = {"cpu": CPUDevice}     # device type -> class; _cuda.py adds "cuda"
_devices: dict = {}
# the array classes of the devices made so far, renewed as each is made
_array_types = [frozenset([np.ndarray])]
# array class -> the device whose kernels run on bare arrays of that class, where one device
# serves them all (every NumPy array: the CPU's kernels are the same on each instance); a
# GPU's arrays are told apart by their device id instead (array_device)
ARRAY_HOMES: dict = {}
_default = None
_seed = None                     # devices created after manual_seed start from it too
# what answers cuda_available(): set by _cuda.py (False until it is imported)
_cuda_probe = None


def register_kind(type_, cls, probe=None):
    """Add a kind of device (the CUDA module calls this when it is imported)."""
    global _cuda_probe
    _kinds[type_] = cls
    if probe is not None:
        _cuda_probe = probe


def cuda_available() -> bool:
    """True only if CuPy imports and a CUDA device answers (never with GPUGRAD_DEVICE=cpu)."""
    if os.environ.get("GPUGRAD_DEVICE", "").strip().lower() == "cpu":
        return False
    return _cuda_probe is not None and _cuda_probe()


def _parse(spec):
    text = spec.strip().lower()
    kind, _, index = text.partition(":")
    if kind == "gpu":
        kind = "cuda"
    if kind in ("cpu", "cuda") and (not index or index.isdigit()):
        return kind, int(index or 0)
    raise ValueError(f"unknown device '{spec}': expected 'cpu', 'cuda' or 'cuda:N'")


def device(spec="cpu") -> Device:
    """The device named by ``spec``: a Device, 'cpu', 'cuda', 'cuda:N' (or 'cpu:N')."""
    if isinstance(spec, Device):
        return spec
    if spec is None:
        return default_device()
    if not isinstance(spec, str):
        raise TypeError(f"device must be a string or gg.device, got {type(spec).__name__}")
    key = _parse(spec)
    dev = _devices.get(key)
    if dev is None:
        cls = _kinds.get(key[0])
        if cls is None or (key[0] == "cuda" and not cuda_available()):
            raise RuntimeError(
                f"device '{spec}' was asked for but CUDA is not available "
                "(CuPy missing, no driver, or GPUGRAD_DEVICE=cpu)")
        dev = cls(key[1])
        _devices[key] = dev
        _array_types[0] = frozenset([np.ndarray] + [d.array_type for d in _devices.values()])
        if key == ("cpu", 0):
            ARRAY_HOMES[np.ndarray] = dev
    return dev


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
    """The device an array lives on: NumPy arrays and scalars on the CPU, a registered
    device's arrays on that device; None for anything else."""
    if isinstance(arr, (np.ndarray, np.generic)):
        return _devices.get(("cpu", 0)) or device("cpu")
    for kind in _kinds.values():
        found = kind.device_of(arr) if hasattr(kind, "device_of") else None
        if found is not None:
            return found
    return None


def devices():
    """The devices made so far."""
    return list(_devices.values())


def array_types():
    """The array classes of the kinds of device in use (NumPy's, and CuPy's once loaded)."""
    return _array_types[0]


def manual_seed(seed: int):
    """Seed gpugrad's random numbers on every device, present and future."""
    global _seed
    _seed = int(seed)
    for dev in _devices.values():
        dev.seed(_seed)


def array_module(arr):
    """The array module (NumPy, CuPy) of an array."""
    return reference.array_module(arr)
