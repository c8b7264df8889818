"""``y += a * x`` with one rounding per element (a fused multiply-add), from the BLAS that
NumPy itself loaded: the host optimizer updates' last step.

PyTorch's CPU ``param.add_(grad, alpha=-lr)``, the step of torch.optim.SGD, fuses the
multiply and the add. NumPy has no ufunc that does: ``param -= lr * grad`` rounds twice,
so about 2% of float32 elements land one ulp away from PyTorch's, and it needs a
temporary as large as the parameter (or a block-by-block loop). BLAS ``axpy`` is that
update in one pass, and the OpenBLAS that NumPy's wheels ship computes it with FMA
instructions. It is found by its exported name in NumPy's own library folder, and used
only after a check on numbers whose fused and unfused results differ shows that it does
round once; elsewhere (another NumPy build, CuPy arrays, strided or mixed arrays)
``axpy`` returns False and the caller keeps NumPy's two roundings, as it does everywhere
with ``GPUGRAD_HOST_BLAS=0`` set.
"""
from __future__ import annotations

import ctypes
import glob
import os

import numpy as np

# NumPy >= 2 wheels: scipy-openblas built with 64-bit integers (symbols ending in 64_);
# then the plain CBLAS names of a NumPy linked against a system OpenBLAS
_SYMBOLS = (("scipy_cblas_{}axpy64_", ctypes.c_int64), ("cblas_{}axpy64_", ctypes.c_int64),
            ("scipy_cblas_{}axpy", ctypes.c_int), ("cblas_{}axpy", ctypes.c_int))
_LIBRARY_PATTERNS = ("numpy.libs/*openblas*", "numpy/.dylibs/*openblas*")

# dtype -> its axpy as a ctypes function, or None (not found, or not one rounding)
_AXPY: dict = {}
_searched = False
_DATA_OFFSET = object.__basicsize__      # the object header's size
_from_address = ctypes.c_void_p.from_address


def _library_files():
    root = os.path.dirname(os.path.dirname(np.__file__))
    for pattern in _LIBRARY_PATTERNS:
        yield from sorted(glob.glob(os.path.join(root, pattern)))


def _find(prefix):
    """The ctypes function of ``{prefix}axpy`` ('s' or 'd') in NumPy's BLAS, or None."""
    real = ctypes.c_float if prefix == "s" else ctypes.c_double
    for path in _library_files():
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for name, integer in _SYMBOLS:
            fn = getattr(lib, name.format(prefix), None)
            if fn is None:
                continue
            fn.restype = None
            fn.argtypes = [integer, real, ctypes.c_void_p, integer, ctypes.c_void_p, integer]
            return fn
    return None


def _rounds_once(fn, dtype):
    """Whether ``fn`` computes y + a x rounded once, on values where a second rounding
    would show: x = 1 + 2^-k, a = 1 - 2^-k, y = -1, whose exact result -2^-2k vanishes
    when a x is rounded first; 67 elements, so that vector bodies and scalar tails both
    run."""
    k = 13 if dtype == np.float32 else 28
    x = np.full(67, 1 + 2.0 ** -k, dtype)
    y = np.full(67, -1.0, dtype)
    fn(x.size, 1 - 2.0 ** -k, x.ctypes.data, 1, y.ctypes.data, 1)
    return bool(np.all(y == dtype.type(-(2.0 ** (-2 * k)))))


def _search():
    global _searched
    _searched = True
    if os.environ.get("GPUGRAD_HOST_BLAS", "1") == "0" or not _address_read_ok():
        return
    for prefix, dtype in (("s", np.dtype(np.float32)), ("d", np.dtype(np.float64))):
        fn = _find(prefix)
        if fn is not None and _rounds_once(fn, dtype):
            _AXPY[dtype] = fn


def available(dtype):
    """Whether ``axpy`` runs for arrays of ``dtype`` on this NumPy."""
    if not _searched:
        _search()
    return np.dtype(dtype) in _AXPY


def _address(a):
    """The data address of a NumPy array: read from the array object itself, where the
    first field after the object header holds it (``PyArrayObject.data``, NumPy's C API),
    as checked against ``ctypes.data`` when the library is searched; a fresh gradient's
    ``ctypes.data`` would cost more than a small update's arithmetic."""
    return _from_address(id(a) + _DATA_OFFSET).value


def _address_read_ok():
    arrays = [np.arange(5.0), np.arange(12, dtype=np.float32).reshape(3, 4)[1:]]
    return all(_address(a) == a.ctypes.data for a in arrays)


def fusable(first, *others):
    """The axpy function for these arrays (None entries skipped), or None: they must be
    C-contiguous NumPy arrays of ``first``'s shape and dtype, float32 or float64, pairwise
    apart in memory, ``first`` writable, and this NumPy's BLAS must round once."""
    if not _searched:
        _search()
    fn = _AXPY.get(first.dtype)
    if fn is None or first.__class__ is not np.ndarray or not (
            first.flags.c_contiguous and first.flags.writeable):
        return None
    arrays = [first]
    for a in others:
        if a is None:
            continue
        if a.__class__ is not np.ndarray or a.dtype != first.dtype or \
                a.shape != first.shape or not a.flags.c_contiguous or \
                any(np.may_share_memory(a, b) for b in arrays):
            return None
        arrays.append(a)
    return fn


def call(fn, alpha, x, y):
    """``y += alpha * x`` by ``fn`` from ``fusable(y, x)`` (the checks done there)."""
    n = y.size
    if n:
        fn(n, alpha, _address(x), 1, _address(y), 1)


def axpy(alpha, x, y):
    """``y += alpha * x`` in place, each element rounded once (alpha rounded to their dtype
    first, as PyTorch's ``alpha=`` is), where x and y are C-contiguous NumPy arrays of one
    shape and of float32 or float64 that do not overlap, y writable, and this NumPy's BLAS
    rounds once. Returns whether it ran; False leaves y untouched."""
    fn = _AXPY.get(y.dtype) if _searched else (_search() or _AXPY.get(y.dtype))
    if fn is None or x.__class__ is not np.ndarray or y.__class__ is not np.ndarray or \
            x.shape != y.shape or x.dtype != y.dtype:
        return False
    y_flags, x_flags = y.flags, x.flags
    if not (y_flags.c_contiguous and y_flags.writeable and x_flags.c_contiguous):
        return False
    px, py = _address(x), _address(y)
    nbytes = y.nbytes
    if px < py + nbytes and py < px + nbytes:
        return False            # overlapping: BLAS leaves that undefined
    fn(y.size, alpha, px, 1, py, 1)
    return True


def bound(x, y):
    """``alpha -> y += alpha * x``, ``axpy``'s arithmetic with the tests done and the
    addresses read now, for two arrays updated at every step (gg.compile's host replay,
    where a small parameter's update costs mostly those tests); None where ``axpy`` cannot
    take them. The callable keeps both arrays alive."""
    fn = fusable(y, x)
    if fn is None or y.size == 0:
        return None
    n, px, py = y.size, _address(x), _address(y)

    def update(alpha, x=x, y=y):
        fn(n, alpha, px, 1, py, 1)
    return update
