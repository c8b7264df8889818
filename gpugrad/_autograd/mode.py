"""Thread-local switches of the engine: grad mode, the active forward-mode levels, and
whether ops now run for a backward pass. Each thread has its own, as in PyTorch: two
threads training two models never see each other's ``no_grad``."""
from __future__ import annotations

import functools
import threading


class _State(threading.local):
    # class attributes are every thread's starting values
    grad_enabled = True
    inference = False
    in_backward = False
    # the callbacks queued by hooks during the backward pass now running (None outside one)
    final_callbacks = None
    # forward mode: the active levels (ids), and the level at or above which tangents are
    # not propagated (set while the JVP rule of that level runs)
    fw_levels = frozenset()
    fw_limit = float("inf")
    # the gg.compile recorder while this thread records a step (None otherwise)
    compiling = None


state = _State()
_next_level = [0]
_level_lock = threading.Lock()


def is_grad_enabled():
    return state.grad_enabled


# how many threads have recording off now: while none has, the op path knows that it records
# from one global read, without the (slower) thread-local lookup
threads_without_grad = [0]
_count_lock = threading.Lock()


def set_grad_enabled(flag):
    """Turn recording on or off for this thread; returns the previous setting."""
    flag = bool(flag)
    previous = state.grad_enabled
    if flag is not previous:
        with _count_lock:
            threads_without_grad[0] += -1 if flag else 1
        state.grad_enabled = flag
    return previous


class _GradMode:
    """A context manager that is also a decorator (a fresh context per call)."""

    def __init__(self, flag=None):
        self._flag = self._default if flag is None else bool(flag)

    def __enter__(self):
        self._previous = set_grad_enabled(self._flag)
        return self

    def __exit__(self, *exc):
        set_grad_enabled(self._previous)
        return False

    def __call__(self, fn):
        flag = self._flag

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with _GradMode(flag):
                return fn(*args, **kwargs)
        return wrapper


class no_grad(_GradMode):
    """Context manager (or decorator) under which nothing is recorded for backward."""
    _default = False

    def __init__(self):
        super().__init__(False)


class enable_grad(_GradMode):
    """Context manager (or decorator) that turns recording back on inside ``no_grad``."""
    _default = True

    def __init__(self):
        super().__init__(True)


class inference_mode(_GradMode):
    """As ``no_grad`` (PyTorch's inference mode; here it records nothing either)."""
    _default = False

    def __init__(self, mode=True):
        super().__init__(not mode)


# per active level, the tangent dicts that nodes refer to only weakly (see
# forward._keep_for_backward): alive while the level is, freed with it
kept_tangents: dict = {}


def enter_forward_level():
    with _level_lock:
        _next_level[0] += 1
        level = _next_level[0]
    kept_tangents[level] = []
    state.fw_levels = state.fw_levels | {level}
    return level


def exit_forward_level(level):
    state.fw_levels = state.fw_levels - {level}
    kept_tangents.pop(level, None)
