"""``gg.autograd.detect_anomaly()``: the first op whose forward output holds a NaN, or
whose backward rule produces a NaN or an inf, raises ``FloatingPointError`` naming the
op, the phase and the user's source line that created the op.

Nothing of this runs outside the context: the engine's hooks (``graph.profiler``,
``graph.on_record``, ``graph.anomaly``) are None then. Inside it, the forward is checked
through the hook every op's kernel call passes through (``graph.profiler``), each node
recorded gets the user's line (``graph.on_record``), and the backward scheduler hands
each node's cotangents to ``check_backward`` before they move on, so a NaN that a rule
produces is charged to the op whose rule it is (``log``), not to the ops the rule is
written with (the ``div`` of ``g / x``): those run with ``in_backward`` set and are not
checked on their own. On a device whose arrays are not in host memory each check only
queues a device-side flag; the flags are read once when the backward starts (the end of
the forward), once at its end, and when the context closes.

The context is per thread, as PyTorch's anomaly mode: ops of other threads pass through
the hooks unchecked.
"""
from __future__ import annotations

import functools
import os
import sys
import threading
import weakref

import numpy as np

from .. import _device
from .._tensor import Tensor
from . import graph
from .mode import state

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_lock = threading.Lock()


def user_site():
    """'file:line' of the innermost frame outside the gpugrad package."""
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE_DIR):
        frame = frame.f_back
    if frame is None:
        return "<unknown>"
    return f"{frame.f_code.co_filename}:{frame.f_lineno}"


def _checkable(arr):
    dtype = getattr(arr, "dtype", None)
    return dtype is not None and dtype.kind in "fcV" and arr.size > 0   # V: bfloat16


def _what(arr, inf_too):
    if np.isnan(arr).any():
        return "nan"
    if inf_too and np.isinf(arr).any():
        return "inf"
    return None


class _Checker:
    """Installed in the graph module while some thread has a detect_anomaly context open."""

    def __init__(self, defer_on_host):
        self.defer_on_host = defer_on_host
        self.threads = {}       # thread id -> stack of check_nan flags of its open contexts
        # node -> the user's file:line where it was recorded (weak: a long run inside the
        # context keeps no graph alive)
        self.sites = weakref.WeakKeyDictionary()
        self.pending = {}       # thread id -> [(device, device flags, message)]
        self.previous = None    # the profiler this checker passes kernel calls on to

    def checking(self):
        flags = self.threads.get(threading.get_ident())
        return bool(flags) and flags[-1]

    # -- installation ---------------------------------------------------------------------
    def install(self):
        self.previous = graph.profiler
        graph.profiler = self
        graph.on_record = self.record
        graph.anomaly = self

    def uninstall(self):
        graph.profiler = self.previous
        graph.on_record = None
        graph.anomaly = None

    # -- the hooks ------------------------------------------------------------------------
    def run(self, op, dev, p, arrays):
        """Every op's kernel call while installed (the profiler's protocol)."""
        previous = self.previous
        data = dev.run(op, p, arrays) if previous is None else previous.run(op, dev, p, arrays)
        if not state.in_backward and _checkable(data) and self.checking():
            self._check(dev, data, False, functools.partial(
                _forward_message, op.name, user_site()))
        return data

    def kernel(self, name, phase, dev, launch, shapes, dtype, flops=0, nbytes=0):
        """A kernel outside the graph (an optimizer update): passed on, not checked."""
        if self.previous is None:
            return launch()
        return self.previous.kernel(name, phase, dev, launch, shapes, dtype, flops, nbytes)

    def record(self, node):
        if threading.get_ident() in self.threads:
            self.sites[node] = user_site()

    def check_backward(self, node, cotangents):
        """Called by the scheduler with the cotangents a node's VJP rule returned."""
        if not self.checking():
            return
        site = self.sites.get(node, "<unknown: recorded outside detect_anomaly>")
        for i, g in enumerate(cotangents):
            arr = g._data if isinstance(g, Tensor) else g
            if g is None or not _checkable(arr):
                continue
            dev = g.device if isinstance(g, Tensor) else _device.array_device(arr) or node.dev
            self._check(dev, arr, True, functools.partial(
                _backward_message, node.op.name, i, site))

    # -- checks -----------------------------------------------------------------------------
    def _check(self, dev, arr, inf_too, message):
        if dev.is_host and not self.defer_on_host:
            what = _what(arr, inf_too)
            if what:
                raise FloatingPointError(message(what))
            return
        xp = dev.xp
        with dev.context():
            # two flags, so that the message can say which without keeping the array
            bad = xp.stack([xp.isnan(arr).any(),
                            xp.isinf(arr).any() if inf_too else xp.zeros((), dtype=bool)])
        self.pending.setdefault(threading.get_ident(), []).append((dev, bad, message))

    def flush(self):
        """Read this thread's queued flags (one transfer per device) and raise for the
        first one set."""
        pending = self.pending.pop(threading.get_ident(), None)
        if not pending:
            return
        found = []
        by_device = {}
        for k, (dev, bad, _) in enumerate(pending):
            by_device.setdefault(dev, []).append((k, bad))
        for dev, items in by_device.items():
            with dev.context():
                host = np.asarray(dev.to_host(dev.xp.stack([bad for _, bad in items])))
            found.extend((k, "nan" if pair[0] else "inf")
                         for (k, _), pair in zip(items, host) if pair.any())
        if found:
            k, what = min(found)
            raise FloatingPointError(pending[k][2](what))


def _forward_message(name, site, what):
    return (f"detect_anomaly: op '{name}' returned {what} in its forward output, in the "
            f"forward pass; created at {site}")


def _backward_message(name, i, site, what):
    return (f"detect_anomaly: the backward of op '{name}' returned {what} in the gradient "
            f"of its input {i}, in the backward pass; the op was created at {site}")


class detect_anomaly:
    """Context manager (or decorator): raise ``FloatingPointError`` at the first op whose
    forward output holds a NaN or whose backward rule returns a NaN or an inf, naming
    the op, the phase and the source line that created the op. Per thread.

    >>> import gpugrad as gg
    >>> x = gg.tensor([0.0, 1.0], requires_grad=True)
    >>> with gg.autograd.detect_anomaly():
    ...     y = (gg.sqrt(x) * 0.0).sum()
    ...     try:
    ...         y.backward()
    ...     except FloatingPointError as err:
    ...         print(str(err).split(",")[0])
    detect_anomaly: the backward of op 'sqrt' returned nan in the gradient of its input 0
    """

    # tests set this to exercise the GPU's queued flags on the CPU
    _defer_on_cpu = False

    def __init__(self, check_nan=True):
        self.check_nan = bool(check_nan)
        self._entered = []

    def __enter__(self):
        ident = threading.get_ident()
        with _lock:
            checker = graph.anomaly
            if checker is None:
                checker = _Checker(self._defer_on_cpu)
                checker.install()
            checker.threads.setdefault(ident, []).append(self.check_nan)
        self._entered.append(checker)
        return self

    def __exit__(self, exc_type, exc, tb):
        checker = self._entered.pop()
        ident = threading.get_ident()
        try:
            if exc_type is None:
                checker.flush()
        finally:
            with _lock:
                flags = checker.threads[ident]
                flags.pop()
                if not flags:
                    del checker.threads[ident]
                    checker.pending.pop(ident, None)
                if not checker.threads:
                    checker.uninstall()
        return False

    def __call__(self, fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with detect_anomaly(self.check_nan):
                return fn(*args, **kwargs)
        return wrapper


def is_anomaly_enabled():
    """Whether this thread is inside a detect_anomaly context."""
    checker = graph.anomaly
    return checker is not None and threading.get_ident() in checker.threads
