"""Mixed precision: ``autocast`` and ``GradScaler``.

Inside ``with gg.autocast(dtype=gg.bfloat16):`` (or ``gg.float16``) matrix products
(``matmul``, ``linear``) cast their float32 operands to the low dtype and run there,
accumulating in float32: cuBLAS with compute type 32F on a GPU; on the CPU the product
of the low-precision operands is formed in float32 and rounded once to the low dtype,
which has the same rounding points as a low-precision GEMM with float32 accumulation.
Softmax, log-softmax, cross-entropy and the reductions (sum, mean, logsumexp) run in
float32 on every device (stricter than PyTorch's CPU autocast, which leaves softmax in
bfloat16). Parameters stay float32 and so do their gradients: the cast's backward casts
the gradient back.

``GradScaler`` multiplies the loss by a scale so that small float16 gradients do not
flush to zero, divides the gradients by it before the optimizer step, skips a step
whose gradients hold an inf or a NaN and then halves the scale; after
``growth_interval`` clean steps in a row it doubles the scale. The skip decision and
the scale update stay on the device: no host synchronisation in ``step``/``update``.
"""
import functools

import numpy as np

from . import _autocast, _device, _dtypes
from ._tensor import Tensor
from ._tensor import wrap as _wrap

__all__ = ["autocast", "GradScaler", "is_autocast_enabled", "get_autocast_dtype"]


class autocast:
    """Run matmul/linear in ``dtype`` (bfloat16 or float16) with float32 accumulation;
    softmax, losses and reductions in float32. Also a decorator.

    >>> import gpugrad as gg
    >>> w = gg.ones(4, 4, requires_grad=True)
    >>> with gg.autocast(dtype=gg.bfloat16):
    ...     y = gg.ones(2, 4) @ w
    >>> str(y.dtype), str(w.dtype)
    ('bfloat16', 'float32')
    """

    def __init__(self, device_type=None, dtype=None, enabled=True, cache_enabled=None):
        if dtype is None:
            dtype = _dtypes.require_bfloat16()
        dtype = np.dtype(dtype)
        if dtype not in _dtypes.LOW_FLOATS:
            raise ValueError(f"autocast: dtype must be gg.bfloat16 or gg.float16, got {dtype}")
        if device_type is not None and str(device_type).split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"autocast: unknown device_type '{device_type}': expected "
                             "'cpu' or 'cuda'")
        self.dtype = dtype
        self.enabled = bool(enabled)
        self._previous = []

    def __enter__(self):
        if self.enabled:
            self._previous.append(_autocast.push(self.dtype))
        else:
            # autocast(enabled=False) inside autocast turns it off for its body
            self._previous.append(_autocast.push(None))
        return self

    def __exit__(self, *exc):
        _autocast.pop(self._previous.pop())
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with autocast(dtype=self.dtype, enabled=self.enabled):
                return fn(*args, **kwargs)
        return wrapper


def is_autocast_enabled():
    """Whether matmuls of this thread now run in a low dtype."""
    return _autocast.low_dtype() is not None


def get_autocast_dtype():
    """This thread's autocast dtype, or None outside autocast."""
    return _autocast.low_dtype()


_NOT_RECORDED = ("its inf/NaN check, skipped step and scale update run outside the recorded "
                 "ops, so every replay would repeat the first step's decision; call the scaler "
                 "outside the compiled step (bfloat16 needs no scaler)")


def _refuse_while_recording(what):
    if _device.recording_thread is not None:
        _device.refuse_while_recording(f"GradScaler.{what}", _NOT_RECORDED)


class GradScaler:
    """Loss scaling for float16 training, as ``torch.amp.GradScaler``.

    >>> import gpugrad as gg
    >>> model = gg.nn.Linear(3, 1)
    >>> opt = gg.optim.SGD(model.parameters(), lr=0.1)
    >>> scaler = gg.amp.GradScaler()
    >>> loss = model(gg.ones(2, 3)).sum()
    >>> scaler.scale(loss).backward()
    >>> scaler.step(opt)
    >>> scaler.update()
    >>> scaler.get_scale()
    65536.0

    The scale and the count of clean steps live on the device, so ``step`` and
    ``update`` never wait for it. A skipped step leaves the parameters and the
    optimizer's state buffers as they were (restored on the device where the skip is
    decided there); on the host the flag is read directly and the optimizer is not run.
    On a GPU an optimizer's host-side counters still advance on a skipped step (Adam's
    step count, which only its bias correction reads), which PyTorch's eager Adam does
    not do; ``GradScaler(sync=True)`` reads the flag on the host instead (PyTorch's
    behaviour, one synchronisation per step).
    """

    def __init__(self, device=None, init_scale=2.0 ** 16, growth_factor=2.0,
                 backoff_factor=0.5, growth_interval=2000, enabled=True, sync=False):
        if init_scale <= 0:
            raise ValueError(f"GradScaler: init_scale must be positive, got {init_scale}")
        if growth_factor <= 1.0:
            raise ValueError(f"GradScaler: growth_factor must be > 1, got {growth_factor}")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"GradScaler: backoff_factor must be in (0, 1), got "
                             f"{backoff_factor}")
        if int(growth_interval) != growth_interval or growth_interval <= 0:
            raise ValueError(f"GradScaler: growth_interval must be a positive integer, got "
                             f"{growth_interval}")
        if device is not None and str(device).split(":")[0] not in ("cpu", "cuda"):
            raise ValueError(f"GradScaler: unknown device '{device}': expected 'cpu' or 'cuda'")
        # the scale lives where the first scaled loss lives (PyTorch's device argument is
        # accepted for compatibility; the tensors decide)
        self._device = None
        self._pending_tracker = 0
        self._init_scale = float(init_scale)
        self._growth_factor = float(growth_factor)
        self._backoff_factor = float(backoff_factor)
        self._growth_interval = int(growth_interval)
        self._enabled = bool(enabled)
        self._sync = bool(sync)
        self._scale = None            # 0-d float32 array on the device, made lazily
        self._growth_tracker = None   # 0-d int32 array: clean steps in a row
        self._found_inf = {}          # id(optimizer) -> 0-d bool array, per step
        self._stepped = set()

    # tests set this to run the on-device skip (restore by a masked copy) on the CPU too
    _device_side_on_cpu = False

    # -- state on the device ---------------------------------------------------------------
    def _lazy_init(self, dev):
        if self._device is None:
            self._device = dev
        elif dev is not self._device:
            raise ValueError(f"GradScaler: tensors on {dev}, but the scale lives on "
                             f"{self._device}")
        if self._scale is None:
            with dev.context():
                self._scale = dev.adopt(dev.xp.full((), self._init_scale, dtype=np.float32))
                self._growth_tracker = dev.adopt(
                    dev.xp.full((), self._pending_tracker, dtype=np.int32))

    def is_enabled(self):
        return self._enabled

    def scale(self, outputs):
        """outputs times the current scale (a Tensor, or a list/tuple of them)."""
        if not self._enabled:
            return outputs
        _refuse_while_recording("scale")
        if isinstance(outputs, (list, tuple)):
            return type(outputs)(self.scale(o) for o in outputs)
        if not isinstance(outputs, Tensor):
            raise TypeError(f"GradScaler.scale expects a Tensor, got {type(outputs).__name__}")
        self._lazy_init(outputs.device)
        factor = self._scale if outputs.dtype == np.float32 else \
            self._scale.astype(outputs.dtype)
        return outputs * _wrap(factor, outputs.device)

    def _params_with_grads(self, optimizer):
        return [p for group in optimizer.param_groups for p in group["params"]
                if p._grad is not None]

    def unscale_(self, optimizer):
        """Divide the optimizer's gradients by the scale in place (once per step), and
        note on the device whether any of them holds an inf or a NaN."""
        if not self._enabled:
            return
        _refuse_while_recording("unscale_")
        key = id(optimizer)
        if key in self._found_inf:
            raise RuntimeError("unscale_() has already been called on this optimizer since "
                               "the last update()")
        params = self._params_with_grads(optimizer)
        dev = params[0].device if params else self._device
        if dev is None:
            raise RuntimeError("GradScaler: no gradients to unscale and no scale yet; call "
                               "scaler.scale(loss).backward() first")
        self._lazy_init(dev)
        xp = dev.xp
        with dev.context():
            found = xp.zeros((), dtype=bool)
            inv = (1.0 / self._scale.astype(np.float64)).astype(np.float32)
            for p in params:
                g = p._grad
                if g.device is not dev:
                    raise ValueError(f"GradScaler: a gradient on {g.device}, the scale on "
                                     f"{dev}")
                if g._node is not None:
                    raise RuntimeError("GradScaler.unscale_: a gradient is part of a graph "
                                       "(backward with create_graph=True); unscale a detached "
                                       "one")
                # scale the gradient in a fresh array: .grad may share storage with a tensor
                # the user holds (a seed gradient, a retained grad)
                data = dev.adopt(g._data * inv.astype(g._data.dtype))
                found = found | ~xp.isfinite(data).all()
                p._grad = _wrap(data, dev)
        self._found_inf[key] = found

    def step(self, optimizer, *args, **kwargs):
        """Unscale (unless unscale_ ran) and run ``optimizer.step()`` unless a gradient
        held an inf or a NaN."""
        if not self._enabled:
            return optimizer.step(*args, **kwargs)
        _refuse_while_recording("step")
        if id(optimizer) in self._stepped:
            raise RuntimeError("step() has already been called on this optimizer since the "
                               "last update()")
        if id(optimizer) not in self._found_inf:
            self.unscale_(optimizer)
        found = self._found_inf[id(optimizer)]
        self._stepped.add(id(optimizer))
        dev = self._device
        if (dev.is_host and not self._device_side_on_cpu) or self._sync:
            # the flag is on the host already (or a sync was asked for): skip outright
            if bool(dev.to_host(found)):
                return None
            return optimizer.step(*args, **kwargs)
        # on the device: run the step, then put back what it changed where found is set
        saved = []
        with dev.context():
            for p in self._params_with_grads(optimizer):
                state = optimizer.state.get(p, {})
                saved.append((p._data, p._data.copy()))
                for value in state.values():
                    if hasattr(value, "shape") and hasattr(value, "copy"):
                        saved.append((value, value.copy()))
            result = optimizer.step(*args, **kwargs)
            for arr, old in saved:
                dev.xp.copyto(arr, old, where=found)
        return result

    def update(self, new_scale=None):
        """Back the scale off if any step of this iteration found an inf or NaN, else
        grow it after ``growth_interval`` clean steps; on the device."""
        if not self._enabled or self._scale is None:
            return
        _refuse_while_recording("update")
        dev = self._device
        xp = dev.xp
        with dev.context():
            if new_scale is not None:
                value = new_scale._data if isinstance(new_scale, Tensor) else new_scale
                self._scale = xp.asarray(value, dtype=np.float32).reshape(())
                self._growth_tracker = xp.zeros((), dtype=np.int32)
            elif self._found_inf:
                found = xp.zeros((), dtype=bool)
                for flag in self._found_inf.values():
                    found = found | flag
                tracker = self._growth_tracker + 1
                grow = tracker >= self._growth_interval
                scale = self._scale
                self._scale = xp.where(
                    found, scale * np.float32(self._backoff_factor),
                    xp.where(grow, scale * np.float32(self._growth_factor), scale)
                ).astype(np.float32)
                self._growth_tracker = xp.where(found | grow, 0, tracker).astype(np.int32)
        self._found_inf = {}
        self._stepped = set()

    # -- inspection and state ---------------------------------------------------------------
    def get_scale(self):
        """The current scale as a Python float (reads the device)."""
        if not self._enabled:
            return 1.0
        if self._scale is None:
            return self._init_scale
        return float(self._device.to_host(self._scale))

    def get_growth_factor(self):
        return self._growth_factor

    def get_backoff_factor(self):
        return self._backoff_factor

    def get_growth_interval(self):
        return self._growth_interval

    def _get_growth_tracker(self):
        if self._growth_tracker is None:
            return self._pending_tracker
        return int(self._device.to_host(self._growth_tracker))

    def state_dict(self):
        """PyTorch's keys: scale, growth_factor, backoff_factor, growth_interval,
        _growth_tracker."""
        if not self._enabled:
            return {}
        return {"scale": self.get_scale(), "growth_factor": self._growth_factor,
                "backoff_factor": self._backoff_factor,
                "growth_interval": self._growth_interval,
                "_growth_tracker": self._get_growth_tracker()}

    def load_state_dict(self, state_dict):
        if not self._enabled:
            return
        if not state_dict:
            raise RuntimeError("GradScaler.load_state_dict: the state dict is empty (saved "
                               "from a disabled scaler?)")
        missing = {"scale", "growth_factor", "backoff_factor", "growth_interval",
                   "_growth_tracker"} - set(state_dict)
        if missing:
            raise KeyError(f"GradScaler.load_state_dict: missing keys {sorted(missing)}")
        self._init_scale = float(state_dict["scale"])
        self._growth_factor = float(state_dict["growth_factor"])
        self._backoff_factor = float(state_dict["backoff_factor"])
        self._growth_interval = int(state_dict["growth_interval"])
        if self._device is not None:
            with self._device.context():
                xp = self._device.xp
                self._scale = xp.full((), self._init_scale, dtype=np.float32)
                self._growth_tracker = xp.full((), int(state_dict["_growth_tracker"]),
                                               dtype=np.int32)
        else:
            self._pending_tracker = int(state_dict["_growth_tracker"])
