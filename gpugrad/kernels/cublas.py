"""cuBLAS through its C API (ctypes), on a handle of our own: what a captured CUDA graph
runs for its GEMMs.

CuPy refuses every cuBLAS call while a stream is capturing (its ``setStream`` raises,
CuPy issue 6290), so ``gg.compile`` drives cuBLAS itself: the library CuPy already loaded
(found in the process's memory map, so no second copy is loaded), a handle bound to the
capture stream, and a persistent workspace set before capture (``cublasSetWorkspace``), so
that cuBLAS allocates nothing inside the graph. This module imports no CuPy: arrays are
passed as device pointers with their shapes and strides.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import glob
import os

import numpy as np

from .. import _dtypes

# cublasOperation_t, cudaDataType_t, cublasComputeType_t, cublasGemmAlgo_t
OP_N, OP_T = 0, 1
CUDA_R_32F, CUDA_R_16F, CUDA_R_16BF = 0, 2, 14
COMPUTE_32F = 68
GEMM_DEFAULT = -1
WORKSPACE_BYTES = 32 << 20        # cuBLAS asks for up to 32 MiB on Hopper
DATA_TYPES = {np.dtype(np.float32): CUDA_R_32F, np.dtype(np.float16): CUDA_R_16F}
if _dtypes.bfloat16 is not None:
    DATA_TYPES[_dtypes.bfloat16] = CUDA_R_16BF
# the entry points used; test_compile checks they resolve where libcublas is present
SYMBOLS = ("cublasCreate_v2", "cublasDestroy_v2", "cublasSetStream_v2", "cublasSetWorkspace_v2",
           "cublasGemmEx", "cublasGetVersion_v2")


class CublasError(RuntimeError):
    pass


def library_candidates():
    """Paths of libcublas: the one already mapped into this process (CuPy's), then the
    nvidia-cublas wheel's, then the system's."""
    found = []
    try:
        with open("/proc/self/maps") as fh:
            for line in fh:
                path = line.split()[-1] if "/" in line else ""
                if "libcublas.so" in os.path.basename(path) and "Lt" not in path \
                        and path not in found:
                    found.append(path)
    except OSError:
        pass
    try:
        import nvidia  # the wheels' namespace: nvidia/cublas/lib (CUDA 12), nvidia/cu13/lib
        for root in nvidia.__path__:
            found += sorted(p for p in glob.glob(os.path.join(root, "*", "lib", "libcublas.so*"))
                            if p not in found)
    except ImportError:
        pass
    system = ctypes.util.find_library("cublas")
    if system:
        found.append(system)
    return found


def load(path=None):
    """The libcublas library with the argument types of the entry points set."""
    candidates = [path] if path else library_candidates()
    errors = []
    for candidate in candidates:
        try:
            lib = ctypes.CDLL(candidate, mode=ctypes.RTLD_GLOBAL)
        except OSError as err:
            errors.append(f"{candidate}: {err}")
            continue
        _declare(lib)
        return lib
    raise CublasError("libcublas was not found (install CuPy with its CUDA libraries or "
                      "nvidia-cublas): " + ("; ".join(errors) or "no candidate path"))


def _declare(lib):
    vp, i, sz = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    lib.cublasCreate_v2.argtypes = [ctypes.POINTER(vp)]
    lib.cublasDestroy_v2.argtypes = [vp]
    lib.cublasSetStream_v2.argtypes = [vp, vp]
    lib.cublasSetWorkspace_v2.argtypes = [vp, vp, sz]
    lib.cublasGetVersion_v2.argtypes = [vp, ctypes.POINTER(i)]
    lib.cublasGemmEx.argtypes = [vp, i, i, i, i, i, vp, vp, i, i, vp, i, i, vp, vp, i, i, i, i]
    for name in SYMBOLS:
        getattr(lib, name).restype = i


def _check(status, what):
    if status != 0:
        raise CublasError(f"{what} failed with cuBLAS status {status}")


class Handle:
    """A cuBLAS handle bound to one stream, with a workspace that outlives every graph
    captured with it."""

    def __init__(self, lib, stream_ptr, workspace_ptr, workspace_bytes):
        self.lib = lib
        self.ptr = ctypes.c_void_p()
        _check(lib.cublasCreate_v2(ctypes.byref(self.ptr)), "cublasCreate")
        self.set_stream(stream_ptr)
        _check(lib.cublasSetWorkspace_v2(self.ptr, ctypes.c_void_p(workspace_ptr),
                                         workspace_bytes), "cublasSetWorkspace")
        self._one = {dt: np.ones(1, dtype=np.float32) for dt in DATA_TYPES}
        self._zero = np.zeros(1, dtype=np.float32)

    def set_stream(self, stream_ptr):
        _check(self.lib.cublasSetStream_v2(self.ptr, ctypes.c_void_p(stream_ptr)),
               "cublasSetStream")

    def gemm(self, a, b, out):
        """out = a @ b for 2-D float32/float16/bfloat16 arrays (CuPy's or anything with
        ``.data.ptr``, ``.shape``, ``.strides``, ``.dtype``), row-major, either operand
        possibly a transposed view; out C-contiguous."""
        args = gemm_arguments(a.shape, a.strides, b.shape, b.strides, out.shape, out.strides,
                              a.dtype.itemsize)
        dtype = DATA_TYPES[np.dtype(a.dtype)]
        transa, transb, m, n, k, lda, ldb, ldc = args
        one = self._one[np.dtype(a.dtype)]
        _check(self.lib.cublasGemmEx(
            self.ptr, transa, transb, m, n, k, one.ctypes.data, ctypes.c_void_p(b.data.ptr),
            dtype, lda, ctypes.c_void_p(a.data.ptr), dtype, ldb, self._zero.ctypes.data,
            ctypes.c_void_p(out.data.ptr), dtype, ldc, COMPUTE_32F, GEMM_DEFAULT),
            "cublasGemmEx")
        return out

    def close(self):
        if self.ptr:
            self.lib.cublasDestroy_v2(self.ptr)
            self.ptr = ctypes.c_void_p()


def _layout(shape, strides, itemsize):
    """(transposed, leading dimension) of a 2-D operand read as column-major: a row-major
    (C-contiguous) matrix is its own transpose in column-major order."""
    rows, cols = shape
    s0, s1 = strides[0] // itemsize, strides[1] // itemsize
    if s1 == 1 and (s0 >= max(cols, 1) or rows == 1):
        return False, max(s0, cols, 1)          # row-major: column-major of the transpose
    if s0 == 1 and (s1 >= max(rows, 1) or cols == 1):
        return True, max(s1, rows, 1)           # a transposed view
    raise ValueError(f"gemm operand of shape {tuple(shape)} with strides {tuple(strides)} "
                     "is neither row- nor column-major")


def gemm_arguments(a_shape, a_strides, b_shape, b_strides, c_shape, c_strides, itemsize):
    """cublasGemmEx's (transa, transb, m, n, k, lda, ldb, ldc) for row-major C = A @ B,
    computed as column-major C^T = B^T A^T (cuBLAS's first operand is B)."""
    if len(a_shape) != 2 or len(b_shape) != 2:
        raise ValueError("gemm: only 2-D operands are captured")
    (m_rows, k), (k2, n) = a_shape, b_shape
    if k != k2 or tuple(c_shape) != (m_rows, n):
        raise ValueError(f"gemm: shapes {tuple(a_shape)} @ {tuple(b_shape)} -> "
                         f"{tuple(c_shape)} do not match")
    c_transposed, ldc = _layout(c_shape, c_strides, itemsize)
    if c_transposed and m_rows > 1 and n > 1:
        raise ValueError("gemm: the output must be C-contiguous")
    a_t, lda_ = _layout(a_shape, a_strides, itemsize)
    b_t, ldb_ = _layout(b_shape, b_strides, itemsize)
    # column-major: C^T (n x m) = op(B^T) (n x k) @ op(A^T) (k x m)
    return (OP_T if b_t else OP_N, OP_T if a_t else OP_N, n, m_rows, k, ldb_, lda_,
            max(ldc, n, 1))


def emulate_gemm(args, a, b):
    """What cublasGemmEx computes for ``args`` on the memory of row-major arrays a and b
    (NumPy), as a NumPy array of the row-major result: the twin of ``Handle.gemm``."""
    transa, transb, m, n, k, lda, ldb, ldc = args
    # cuBLAS's op(X) of an ld-major buffer: element (i, j) of X at X[i + j * ld]
    first = _column_view(b, ld=lda, rows=(k if transa else m), cols=(m if transa else k))
    second = _column_view(a, ld=ldb, rows=(n if transb else k), cols=(k if transb else n))
    op_first = first.T if transa == OP_T else first
    op_second = second.T if transb == OP_T else second
    c_t = op_first @ op_second                 # (m, n) column-major == C^T
    return np.ascontiguousarray(c_t.T)


def _column_view(arr, ld, rows, cols):
    """The column-major matrix (rows x cols, leading dimension ld) over arr's buffer."""
    base = arr
    while base.base is not None and isinstance(base.base, np.ndarray):
        base = base.base
    start = (arr.__array_interface__["data"][0] - base.__array_interface__["data"][0]) \
        // arr.itemsize
    flat = base.reshape(-1)
    return np.lib.stride_tricks.as_strided(
        flat[start:], shape=(rows, cols), strides=(arr.itemsize, ld * arr.itemsize))
