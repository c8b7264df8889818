"""DLPack interchange: ``Tensor.__dlpack__``, ``Tensor.__dlpack_device__`` and
``gg.from_dlpack(obj)`` for anything that has ``__dlpack__`` (PyTorch, NumPy, CuPy, JAX).

Memory is shared where the devices match: a write through one side is seen through the
other. The export hands over the array of the tensor's device (a NumPy array on the CPU,
a CuPy array on a GPU), whose own ``__dlpack__`` does the stream hand-off the protocol
asks for (the consumer passes its stream; the producer makes it wait for the pending
work). A tensor that requires grad exports its data, detached from the graph.
"""
import numpy as np

from . import _device
from ._tensor import Tensor
from ._tensor import wrap as _wrap

__all__ = ["from_dlpack", "to_dlpack"]

# DLPack device types (dlpack.h): host memory, CUDA memory, pinned and managed memory
_CPU, _CUDA, _CUDA_HOST, _CUDA_MANAGED = 1, 2, 3, 13


def _dlpack(self, *, stream=None, max_version=None, dl_device=None, copy=None):
    arr = self._data
    if dl_device is not None:
        wanted = (int(dl_device[0]), int(dl_device[1]))
        if wanted != self.__dlpack_device__():
            if wanted[0] == _CPU and copy is not False:
                # a host copy, as the protocol allows when copy is not False
                host = np.ascontiguousarray(self.device.to_host(arr))
                return _export(host, stream=None, max_version=max_version)
            raise BufferError(f"__dlpack__: the tensor is on {self.device}; it cannot be "
                              f"exported to DLPack device {wanted} without a copy"
                              + (" (copy=False)" if copy is False else ""))
    if copy:
        with self.device.context():
            arr = arr.copy()
    return _export(arr, stream=stream, max_version=max_version)


def _export(arr, **kwargs):
    """arr.__dlpack__ with the keywords this NumPy/CuPy version understands: NumPy before
    2.1 takes only ``stream``, and refuses any other keyword."""
    given = {k: v for k, v in kwargs.items() if v is not None}
    if isinstance(arr, np.ndarray):
        given.pop("stream", None)     # the CPU has no streams; NumPy wants None there
        if not arr.flags.writeable:
            arr = arr.copy()          # NumPy refuses to export read-only arrays
    try:
        return arr.__dlpack__(**given)
    except TypeError:
        if set(given) - {"stream"}:
            return arr.__dlpack__(**{k: v for k, v in given.items() if k == "stream"})
        raise


def _dlpack_device(self):
    return self.device.dlpack_device()


def from_dlpack(obj):
    """A tensor sharing memory with ``obj`` (anything with ``__dlpack__``): on the CPU for
    host arrays, on the matching GPU for device arrays. The dtype is kept (float64 stays
    float64), as PyTorch's ``from_dlpack`` keeps it.

    >>> import numpy as np, gpugrad as gg
    >>> a = np.arange(3.0)
    >>> t = gg.from_dlpack(a)
    >>> a[0] = 7.0
    >>> t.tolist()
    [7.0, 1.0, 2.0]
    """
    if isinstance(obj, Tensor):
        return obj.detach()
    if not hasattr(obj, "__dlpack__"):
        raise TypeError(f"from_dlpack: a {type(obj).__name__} has no __dlpack__ method "
                        "(a PyTorch tensor, NumPy or CuPy array, JAX array, ... is expected)")
    kind, index = (obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__")
                   else (_CPU, 0))
    kind = int(kind)
    if kind in (_CPU, _CUDA_HOST):
        dev = _device.device("cpu")
    elif kind in (_CUDA, _CUDA_MANAGED):
        if not _device.cuda_available():
            raise RuntimeError("from_dlpack: the array is in CUDA memory but CUDA is not "
                               "available here (CuPy missing or no device)")
        dev = _device.device(f"cuda:{int(index)}")
    else:
        raise BufferError(f"from_dlpack: DLPack device type {kind} is not supported "
                          "(CPU and CUDA are)")
    return _wrap(dev.adopt(dev.from_dlpack(obj)), dev)


def to_dlpack(tensor):
    """A DLPack capsule of the tensor's data (torch.utils.dlpack.to_dlpack's form)."""
    return tensor.__dlpack__()


Tensor.__dlpack__ = _dlpack
Tensor.__dlpack_device__ = _dlpack_device
