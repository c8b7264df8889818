"""The Tensor: an array on a device plus what autograd needs to know about it.

This module knows nothing of ops or autograd: operators and methods are bound onto
Tensor by ``gpugrad._methods``, a module above them.
"""
from __future__ import annotations

import itertools
import warnings
import weakref

import numpy as np

from . import _device

# gg.compile's recorder while one records a step (its ``reset_grads``): told of gradients
# reset by hand (``t.grad = None``) as zero_grad tells it
grad_reset_listener = None

_new = object.__new__

# One clock orders graph nodes and in-place writes: a node takes a tick when it is
# recorded, a write stamps the tensor's version with a tick. A saved tensor whose version
# is newer than its node was written after it was saved.
next_tick = itertools.count(1).__next__
last_write = [0]


def bump_version(ver):
    tick = next_tick()
    ver[0] = tick
    last_write[0] = tick


class Size(tuple):
    """A shape, as ``x.size()`` returns it (PyTorch's ``torch.Size``): a tuple of ints."""

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self):
        return f"gg.Size({list(self)})"


class TensorHooks:
    """What a tensor asked of the gradient reaching its node: hooks to run on it (each may
    return a replacement), for a leaf hooks to run once it is accumulated into ``.grad``
    (``post_accumulate``), and for a non-leaf whether to keep it in ``.grad``. A node's
    ``retained`` slot holds one of these, or None."""

    __slots__ = ("tensor", "retain", "hooks", "post_accumulate", "__weakref__")

    def __init__(self, tensor):
        self.tensor = weakref.ref(tensor)
        self.retain = False
        self.hooks = {}
        self.post_accumulate = {}


class RemovableHandle:
    """What ``register_hook`` returns: ``remove()`` takes the hook off again."""

    _next_id = itertools.count().__next__

    def __init__(self, record):
        self._record = weakref.ref(record)
        self.id = RemovableHandle._next_id()

    def remove(self):
        record = self._record()
        if record is not None:
            record.hooks.pop(self.id, None)
            record.post_accumulate.pop(self.id, None)


_HOST_READ = ("a recorded step cannot depend on a tensor's value, which changes at every "
              "replay (and would stall a captured GPU graph); return the tensor from the "
              "step and read it after the call")


def _refuse_host_read(what):
    _device.refuse_while_recording(f"{what} reads a tensor on the host", _HOST_READ)


_NON_LEAF_GRAD = (
    "The .grad attribute of a tensor that is not a leaf is being read: backward does not "
    "fill it, so it stays None. Call .retain_grad() on the non-leaf tensor before backward "
    "to keep its gradient, or read .grad of the leaf tensor instead.")


class Tensor:
    """An n-dimensional array on a device, with reverse- and forward-mode autodiff.

    >>> import gpugrad as gg
    >>> x = gg.tensor([1.0, 2.0, 3.0], requires_grad=True)
    >>> (x * x).sum().backward()
    >>> x.grad.tolist()
    [2.0, 4.0, 6.0]
    """

    # _node: the node that made this tensor, or for a leaf that requires grad the node that
    # accumulates into its .grad (so requires_grad is ``_node is not None``)
    # _base: for a tensor made by a view op, the tensor it views (set only on views: read it
    # with getattr); in-place writes through a view update the base's graph
    __slots__ = ("_data", "device", "_grad", "_node", "_ver", "_tangents", "_base",
                 "__weakref__")
    # NumPy defers to Tensor's reflected operators instead of broadcasting over it
    __array_ufunc__ = None

    def __init__(self, data, dtype=None, device=None, requires_grad=False):
        dev = _device.device(device) if device is not None else None
        if isinstance(data, Tensor):
            arr = data._data
            dev = dev or data.device
        else:
            arr = data
            if not hasattr(arr, "dtype"):
                arr = np.asarray(arr)
                if dtype is None and arr.dtype == np.float64:
                    dtype = np.float32         # Python floats become the default float
            if dev is None:
                # an array of a device stays there; host data goes to the default device
                home = None if isinstance(arr, (np.ndarray, np.generic)) else \
                    _device.array_device(arr)
                dev = home or _device.default_device()
        out = dev.asarray(arr, dtype=None if dtype is None else np.dtype(dtype))
        if out.dtype.kind not in "biufc" and out.dtype.name != "bfloat16":
            raise TypeError(f"cannot make a tensor from {type(data).__name__} (NumPy reads it "
                            f"as dtype {out.dtype}): expected numbers or booleans")
        self._data = out
        self.device = dev
        self._grad = None
        self._node = None
        self._ver = [0]
        self._tangents = None
        if requires_grad:
            self.requires_grad_(True)

    # -- attributes ------------------------------------------------------------------
    @property
    def shape(self):
        return self._data.shape

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def dtype(self):
        return self._data.dtype

    def size(self, dim=None):
        """The shape (a tuple), or with ``dim`` the length of that dimension."""
        shape = self._data.shape
        if dim is None:
            return Size(shape)
        ndim = len(shape)
        if not -ndim <= dim < max(ndim, 1):
            raise IndexError(f"Dimension out of range (expected to be in range of "
                             f"[{-max(ndim, 1)}, {max(ndim, 1) - 1}], but got {dim})")
        return shape[dim] if ndim else 1

    def numel(self):
        return self._data.size

    def dim(self):
        return self._data.ndim

    @property
    def is_leaf(self):
        return self._node is None or self._node.leaf is not None

    @property
    def grad_fn(self):
        node = self._node
        return None if node is None or node.leaf is not None else node

    @property
    def requires_grad(self):
        return self._node is not None

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, flag=True):
        if not self.is_leaf and not flag:
            raise RuntimeError(
                "requires_grad can only be turned off on a leaf tensor; use .detach()")
        # bfloat16 (ml_dtypes) is of NumPy kind 'V'
        if flag and self._data.dtype.kind not in "fc" and self._data.dtype.name != "bfloat16":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self._data.dtype}")
        if not flag:
            self._node = None
        elif self._node is None:
            self._node = LeafNode(self)
        return self

    @property
    def grad(self):
        node = self._node
        if self._grad is None and node is not None and node.leaf is None \
                and (node.retained is None or not node.retained.retain):
            warnings.warn(_NON_LEAF_GRAD, UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None:
            if not isinstance(value, Tensor):
                raise TypeError(f"grad must be a Tensor or None, got {type(value).__name__}")
            if value.shape != self.shape:
                raise ValueError(f"grad of shape {tuple(value.shape)} assigned to a tensor "
                                 f"of shape {tuple(self.shape)}")
            if value.dtype != self.dtype:
                raise TypeError(f"grad of dtype {value.dtype} assigned to a tensor of dtype "
                                f"{self.dtype}")
            if value.device is not self.device:
                raise ValueError(f"grad on device {value.device} assigned to a tensor on "
                                 f"device {self.device}")
        elif grad_reset_listener is not None:
            grad_reset_listener((self,))       # gg.compile: a reset, as zero_grad's
        self._grad = value

    @property
    def data(self):
        """The same storage as a tensor cut from the graph (PyTorch's ``.data``): writes
        through it change this tensor and move its version counter, so that backward
        still notices a saved value that was overwritten."""
        out = wrap(self._data, self.device)
        out._ver = self._ver
        return out

    @data.setter
    def data(self, value):
        """Replace the storage (shape and dtype may change, as in PyTorch)."""
        if isinstance(value, Tensor):
            if value.device is not self.device:
                raise ValueError(f"data on device {value.device} assigned to a tensor on "
                                 f"device {self.device}")
            value = value._data
        elif _device.array_device(value) is not self.device:
            value = self.device.asarray(value)
        if self._node is not None and self._node.leaf is None:
            raise RuntimeError("data can only be assigned to a leaf tensor; use .detach() or "
                               "an in-place op on a non-leaf")
        self._data = value
        if self._node is not None:
            # its gradient sink knew the old shape and dtype
            self._node = LeafNode(self, self._node.retained)
        bump_version(self._ver)

    @property
    def T(self):
        """The dimensions reversed (PyTorch's ``.T``; for 2-D tensors the transpose)."""
        return self.permute(*range(self.ndim - 1, -1, -1))

    @property
    def mT(self):
        """The last two dimensions swapped (a batch of matrices transposed)."""
        if self.ndim < 2:
            raise RuntimeError(f"tensor.mT is only supported on matrices or batches of "
                               f"matrices. Got {self.ndim}-D tensor.")
        return self.transpose(-2, -1)

    # -- conversions -----------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """A host copy as a NumPy array (detached)."""
        if _device.recording_thread is not None:
            _refuse_host_read(".numpy()")
        return np.array(self.device.to_host(self._data))

    def __array__(self, dtype=None, copy=None):
        if _device.recording_thread is not None:
            _refuse_host_read("np.asarray(tensor)")
        host = self.device.to_host(self._data)
        return host if dtype is None else host.astype(dtype)

    def item(self):
        if _device.recording_thread is not None:
            _refuse_host_read(".item() (also float(t), int(t), bool(t))")
        if self._data.size != 1:
            raise ValueError(f"item() needs a tensor with one element, got shape "
                             f"{tuple(self.shape)}")
        return self.device.to_host(self._data).item()

    def tolist(self):
        if _device.recording_thread is not None:
            _refuse_host_read(".tolist()")
        return self.device.to_host(self._data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            what = "no values" if self._data.size == 0 else "more than one value"
            raise RuntimeError(f"Boolean value of Tensor with {what} is ambiguous")
        return bool(self.item())

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    __hash__ = object.__hash__

    def __repr__(self):
        body = np.array2string(self.device.to_host(self._data), separator=", ", precision=4,
                               prefix="tensor(")
        extra = ""
        if str(self.device) != "cpu":
            extra += f", device='{self.device}'"
        if self.dtype != np.float32 and self.dtype != np.int64 and self.dtype != np.bool_:
            extra += f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self._node.op.name}>"
        elif self._node is not None:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    def detach(self):
        """The same data (a view sharing storage and version counter), cut from the graph."""
        out = wrap(self._data, self.device)
        out._ver = self._ver
        return out

    def detach_(self):
        """Cut this tensor from the graph, in place: it becomes a leaf that does not
        require grad."""
        if getattr(self, "_base", None) is not None and self._node is not None:
            raise RuntimeError("Can't detach views in-place. Use detach() instead.")
        self._node = None
        self._tangents = None
        return self

    def _hooks(self):
        """This tensor's hook record, on its node (made on first use)."""
        node = self._node
        if node.retained is None or node.retained.tensor() is not self:
            record = TensorHooks(self)
            if node.retained is not None:    # another tensor object on the same node
                record.retain = node.retained.retain
                record.hooks = node.retained.hooks
                record.post_accumulate = node.retained.post_accumulate
            node.retained = record
        return node.retained

    def retain_grad(self):
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if self._node is None:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self._node.leaf is None:
            self._hooks().retain = True

    @property
    def retains_grad(self):
        node = self._node
        return node is not None and node.leaf is None and node.retained is not None \
            and node.retained.retain

    def register_hook(self, hook):
        """Call ``hook(grad)`` when the gradient of this tensor has been computed in a
        backward pass; a hook that returns a tensor replaces the gradient. Returns a
        handle whose ``remove()`` takes the hook off."""
        if self._node is None:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require "
                               "gradient")
        if not callable(hook):
            raise TypeError(f"register_hook: expected a callable, got {type(hook).__name__}")
        record = self._hooks()
        handle = RemovableHandle(record)
        record.hooks[handle.id] = hook
        return handle


def wrap(arr, dev):
    """A fresh constant tensor around an array (no copy, no autograd)."""
    out = _new(Tensor)
    out._data = arr
    out.device = dev
    out._grad = None
    out._node = None
    out._ver = [0]
    out._tangents = None
    return out


class LeafNode:
    """The sink of a leaf tensor's gradient (PyTorch's AccumulateGrad): adds what reaches
    it into ``.grad``. It refers to its tensor weakly, so that neither keeps the other
    alive; it has no parents.

    Its creation number is taken when an op first consumes the leaf, just before that
    op's, so the scheduler reaches the sink right after its last consumer in backward (when
    the gradient is complete, which hooks and overlapped communication rely on), not at the
    very end. Each backward that accumulates gives the tensor a fresh sink for the next
    graph; a retained graph keeps the old one."""

    __slots__ = ("leaf", "seq", "shape", "dtype", "dev", "retained", "__weakref__")
    parents = ()
    name = "AccumulateGrad"

    def __init__(self, tensor, retained=None):
        self.leaf = weakref.ref(tensor)
        self.seq = 0              # not consumed yet
        self.shape = tensor._data.shape
        self.dtype = tensor._data.dtype
        self.dev = tensor.device
        self.retained = retained  # the tensor's hooks (a TensorHooks record), if any

    def renewed(self, tensor):
        """A fresh sink for the tensor's next graph, keeping its hooks."""
        return LeafNode(tensor, self.retained)

    def __repr__(self):
        return "<AccumulateGrad>"
