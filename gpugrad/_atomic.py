"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then
renamed over the target, so a crash never leaves a half-written file."""
from __future__ import annotations

import contextlib
import os
import tempfile


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yields a temporary path next to ``path``; on success it replaces ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    try:
        fd, tmp = tempfile.mkstemp(prefix=".gpugrad-", suffix=suffix, dir=folder)
    except OSError as err:
        # name the caller's path, not the temporary one next to it
        raise OSError(err.errno, f"cannot write '{path}': {err.strerror}") from None
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
