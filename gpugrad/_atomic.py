"""Atomic file writes: a temporary file in the target's folder, flushed to disk, then
renamed over the target, so a crash never leaves a half-written file.

A process killed mid-write cannot remove its temporary file, so each temporary file names
its host and process, and the next write into that folder removes those whose process is
gone."""
from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time

_PREFIX = ".gpugrad-"
# .gpugrad-<pid>@<host>-<mkstemp's random part><suffix>
_OURS = re.compile(r"\.gpugrad-(\d+)@([A-Za-z0-9_.]*)-[A-Za-z0-9_]+\.[A-Za-z0-9]+\Z")
# what versions before the pid and host were added wrote: stale once a day old
_LEGACY = re.compile(r"\.gpugrad-[A-Za-z0-9_]{8}\.(tmp|png)\Z")
_LEGACY_AGE_S = 24 * 3600


def _host():
    return re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())


def _process_gone(pid):
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False          # alive, another user's, or not knowable here: keep it
    return False


def remove_stale_temporaries(folder):
    """Remove temporary files that writes into ``folder`` left when their process died."""
    host = _host()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(_PREFIX):
            continue
        ours = _OURS.match(entry.name)
        try:
            if ours:
                stale = ours.group(2) == host and _process_gone(int(ours.group(1)))
            else:
                stale = bool(_LEGACY.match(entry.name)) and \
                    time.time() - entry.stat(follow_symlinks=False).st_mtime > _LEGACY_AGE_S
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
        except OSError:
            pass              # removed meanwhile by another writer, or not ours to remove


def _naming(err, path, tmp):
    """``err`` as the same kind of error, naming ``path`` instead of the temporary file."""
    if err.filename not in (None, tmp) or err.filename2 not in (None, tmp, path):
        return err
    if err.errno is not None:
        return type(err)(err.errno, err.strerror, path)
    return type(err)(f"{err} (writing {path})")


@contextlib.contextmanager
def atomic_path(path, suffix=".tmp"):
    """Yields a temporary path next to ``path``; on success it replaces ``path``.

    Errors name ``path``, never the temporary file."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    remove_stale_temporaries(folder)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{_PREFIX}{os.getpid()}@{_host()}-", suffix=suffix,
                                   dir=folder)
        os.close(fd)
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        named = _naming(err, path, tmp if tmp is not None else err.filename)
        if named is err:
            raise
        raise named from None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)


def write_atomic(path, data):
    """Write ``data`` (str or bytes) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb" if isinstance(data, bytes) else "w") as fh:
            fh.write(data)
