"""Run the CUDA C of ``kernels/*.cu`` on the CPU, on NumPy arrays.

A ``.cu`` file is compiled with g++ against ``shim/cuda_shim.h`` (CUDA's keywords and
built-in variables over fibers) into a shared library, cached on disk. Its kernels are
then launched with CuPy's calling convention, ``fn(grid, block, args)``, so the very
launchers of ``kernels/cuda.py`` drive them: CI checks kernels and launchers against
the NumPy twins without a GPU.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import numpy as np

from .. import _dtypes

KERNEL_DIR = os.path.dirname(os.path.abspath(__file__))
SHIM_DIR = os.path.join(KERNEL_DIR, "shim")
FLAGS = ["-std=c++20", "-O2", "-fPIC", "-shared", "-fvisibility=hidden", "-fno-gnu-unique",
         "-U_FORTIFY_SOURCE", "-Wno-unknown-pragmas"]
# type codes shared with shim/cuda_shim_launch.h
_CODES = {np.dtype(np.float32): 1, np.dtype(np.float64): 2, np.dtype(np.int32): 3,
          np.dtype(np.int64): 4, np.dtype(np.float16): 5, np.dtype(np.uint8): 6,
          np.dtype(np.bool_): 7, np.dtype(np.uint16): 8}
if _dtypes.bfloat16 is not None:
    _CODES[_dtypes.bfloat16] = 9
_PTR = 16


class GGLaunch(ctypes.Structure):
    _fields_ = [("grid", ctypes.c_uint * 3), ("block", ctypes.c_uint * 3),
                ("nargs", ctypes.c_int), ("codes", ctypes.POINTER(ctypes.c_int)),
                ("values", ctypes.POINTER(ctypes.c_uint64))]


def available():
    return shutil.which("g++") is not None


def _cache_dir():
    root = os.environ.get("GPUGRAD_SHIM_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
        "gpugrad", "shim")
    try:
        os.makedirs(root, exist_ok=True)
        return root
    except OSError:
        path = os.path.join(tempfile.gettempdir(), "gpugrad-shim")
        os.makedirs(path, exist_ok=True)
        return path


def _read(path):
    with open(path, "rb") as fh:
        return fh.read()


def kernel_names(source, extra_flags=()):
    """The ``extern "C"`` kernels a .cu file defines, after macro expansion."""
    result = subprocess.run(
        ["g++", "-E", "-std=c++20", *extra_flags, "-include",
         os.path.join(SHIM_DIR, "cuda_shim.h"), "-I", KERNEL_DIR, "-x", "c++", source],
        capture_output=True, text=True)
    if result.returncode:
        raise RuntimeError(f"preprocessing {source} failed:\n{result.stderr}")
    body = result.stdout.split("cuda_shim.h", 1)[-1]
    return sorted(set(re.findall(r'extern\s+"C"\s+void\s+(\w+)\s*\(', body)))


def build(name, extra_flags=()):
    """Compile ``kernels/<name>.cu`` (or a .cu file at the path ``name``) with the shim;
    returns the path of the library."""
    source = name if name.endswith(".cu") else os.path.join(KERNEL_DIR, f"{name}.cu")
    name = os.path.splitext(os.path.basename(source))[0]
    digest = hashlib.sha256()
    for path in (source, os.path.join(KERNEL_DIR, "common.cuh"),
                 os.path.join(SHIM_DIR, "cuda_shim.h"),
                 os.path.join(SHIM_DIR, "cuda_shim_launch.h")):
        digest.update(_read(path))
    digest.update(" ".join(FLAGS + list(extra_flags)).encode())
    target = os.path.join(_cache_dir(), f"{name}-{digest.hexdigest()[:16]}.so")
    if os.path.exists(target):
        return target
    names = kernel_names(source, extra_flags)
    if not names:
        raise RuntimeError(f"{source} defines no extern \"C\" kernels")
    unit = "".join([
        '#include "cuda_shim.h"\n',
        f'#include "{source}"\n',
        '#include "cuda_shim_launch.h"\n',
        *(f"GG_REGISTER({n})\n" for n in names)])
    with tempfile.TemporaryDirectory() as tmp:
        cpp = os.path.join(tmp, f"{name}_shim.cpp")
        with open(cpp, "w") as fh:
            fh.write(unit)
        partial = os.path.join(os.path.dirname(target),
                               f".{os.path.basename(target)}.{os.getpid()}")
        result = subprocess.run(["g++", *FLAGS, *extra_flags, "-I", SHIM_DIR, "-I", KERNEL_DIR,
                                 cpp, "-o", partial], capture_output=True, text=True)
        if result.returncode:
            raise RuntimeError(f"compiling {source} for the CPU shim failed:\n{result.stderr}")
        os.replace(partial, target)
    return target


def _pack(arg, index, kernel):
    """(type code, 64-bit value) of one argument, converted as CuPy converts it."""
    if isinstance(arg, np.ndarray):
        if arg.dtype not in _CODES:
            raise TypeError(f"{kernel}: argument {index} has unsupported dtype {arg.dtype}")
        if not (arg.flags.c_contiguous or arg.size <= 1):
            raise ValueError(f"{kernel}: argument {index} is not C-contiguous")
        return _PTR | _CODES[arg.dtype], arg.ctypes.data
    if isinstance(arg, np.generic):
        raw = arg.tobytes().ljust(8, b"\0")
        return _CODES[arg.dtype], int.from_bytes(raw, "little")
    if isinstance(arg, bool):
        return _CODES[np.dtype(np.bool_)], int(arg)
    if isinstance(arg, int):       # CuPy passes a Python int as long long
        return _CODES[np.dtype(np.int64)], int(np.int64(arg).view(np.uint64))
    if isinstance(arg, float):     # and a Python float as double
        return _CODES[np.dtype(np.float64)], int(np.float64(arg).view(np.uint64))
    raise TypeError(f"{kernel}: argument {index} of type {type(arg).__name__} cannot be passed")


class ShimFunction:
    def __init__(self, lib, name):
        self.name = name
        self._fn = getattr(lib, f"gg_launch__{name}")
        self._fn.argtypes = [ctypes.POINTER(GGLaunch)]
        self._fn.restype = ctypes.c_int
        self._error = lib.gg_last_error
        self._error.restype = ctypes.c_char_p

    def __call__(self, grid, block, args, shared_mem=0):
        if shared_mem:
            raise ValueError(f"{self.name}: dynamic shared memory is not supported by the shim")
        grid = tuple(grid) + (1,) * (3 - len(grid))
        block = tuple(block) + (1,) * (3 - len(block))
        packed = [_pack(a, i, self.name) for i, a in enumerate(args)]
        codes = (ctypes.c_int * max(1, len(packed)))(*[c for c, _ in packed])
        values = (ctypes.c_uint64 * max(1, len(packed)))(*[v for _, v in packed])
        launch = GGLaunch((ctypes.c_uint * 3)(*grid), (ctypes.c_uint * 3)(*block), len(packed),
                          codes, values)
        if self._fn(ctypes.byref(launch)):
            raise RuntimeError(self._error().decode())


class ShimModule:
    """A .cu file compiled for the CPU; ``get_function`` as cupy.RawModule's."""

    def __init__(self, name, extra_flags=()):
        self.path = build(name, extra_flags)
        self._lib = ctypes.CDLL(self.path, mode=ctypes.RTLD_LOCAL)
        self._functions = {}

    def get_function(self, name):
        fn = self._functions.get(name)
        if fn is None:
            try:
                fn = ShimFunction(self._lib, name)
            except AttributeError:
                raise AttributeError(f"no kernel '{name}' in {self.path}") from None
            self._functions[name] = fn
        return fn


def kernel_table(max_blocks=8, extra_flags=()):
    """The launchers of kernels/cuda.py over NumPy arrays, running the CUDA C on the CPU."""
    from .cuda import CudaKernels
    modules = {}

    def load(source):
        if source not in modules:
            modules[source] = ShimModule(source, extra_flags)
        return modules[source]
    return CudaKernels(np, load, max_blocks)
