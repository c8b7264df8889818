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


def set_grad_enabled(flag):
    """Turn recording on or off for this thread; returns the previous setting."""
    previous = state.grad_enabled
    state.grad_enabled = bool(flag)
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


def enter_forward_level():
    with _level_lock:
        _next_level[0] += 1
        level = _next_level[0]
    state.fw_levels = state.fw_levels | {level}
    return level


def exit_forward_level(level):
    state.fw_levels = state.fw_levels - {level}
