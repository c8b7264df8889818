"""gg.save and gg.load: state dicts as .npz files with a format version, written atomically."""
from __future__ import annotations

import io
import json
import math
import zipfile

import numpy as np

from . import _device
from ._atomic import atomic_path
from ._tensor import Tensor

FORMAT = "gpugrad-checkpoint"
VERSION = 1
_ZIP_MAGIC = b"PK\x03\x04"


def _flatten(obj, arrays, prefix="a"):
    """A JSON-able skeleton of ``obj`` with tensors and arrays moved into ``arrays``."""
    if isinstance(obj, Tensor):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = obj.numpy()
        return {"__tensor__": key}
    if isinstance(obj, np.ndarray):
        key = f"{prefix}{len(arrays)}"
        arrays[key] = obj
        return {"__ndarray__": key}
    if isinstance(obj, dict):
        # integer keys too: an optimizer's state is keyed by parameter index, as PyTorch's
        if not all(_is_key(k) for k in obj):
            raise TypeError("save: dictionary keys must be strings or integers")
        return {"__dict__": [[k, _flatten(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__list__" if isinstance(obj, list) else "__tuple__":
                [_flatten(v, arrays) for v in obj]}
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return obj.item()
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f"save: cannot store a {type(obj).__name__}")


def _restore(node, arrays, device):
    """The object ``_flatten`` made ``node`` from; anything else in the tree is damage."""
    if isinstance(node, dict):
        if len(node) != 1:
            raise ValueError(f"unexpected entry {sorted(node)!r} in the header")
        (kind, value), = node.items()
        if kind in ("__tensor__", "__ndarray__"):
            if not isinstance(value, str) or value not in arrays:
                raise ValueError(f"the header refers to an array {value!r} the file lacks")
            return Tensor(arrays[value], device=device) if kind == "__tensor__" \
                else arrays[value]
        if not isinstance(value, list):
            raise ValueError(f"unexpected {kind!r} entry in the header")
        if kind == "__dict__":
            if not all(isinstance(kv, list) and len(kv) == 2 and _is_key(kv[0])
                       for kv in value):
                raise ValueError("a dictionary in the header is malformed")
            return {k: _restore(v, arrays, device) for k, v in value}
        if kind == "__list__":
            return [_restore(v, arrays, device) for v in value]
        if kind == "__tuple__":
            return tuple(_restore(v, arrays, device) for v in value)
        raise ValueError(f"unexpected {kind!r} entry in the header")
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    raise ValueError(f"unexpected {type(node).__name__} in the header")


def _is_key(k):
    return isinstance(k, (str, int)) and not isinstance(k, bool)


def save(obj, path):
    """Write a state dict (nested dicts, lists, tensors, numbers) to ``path`` as .npz.

    The file appears complete or not at all: it is written to a temporary file in the
    same folder, flushed to disk, then renamed over ``path``.
    """
    arrays = {}
    skeleton = _flatten(obj, arrays)
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": skeleton})
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, __header__=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)


def _array_from_npy(raw, name):
    """An array from the bytes of one .npy member, its size checked against its header
    before anything is allocated (a damaged header must not ask for terabytes)."""
    fp = io.BytesIO(raw)
    version = np.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(fp)
    elif version == (2, 0):
        shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"member {name!r} has .npy version {version}")
    if dtype.hasobject:
        raise ValueError(f"member {name!r} holds Python objects")
    count = math.prod(shape)
    offset = fp.tell()
    if len(raw) - offset != count * dtype.itemsize:
        raise ValueError(f"member {name!r} holds {len(raw) - offset} bytes of data, its "
                         f"header says {count * dtype.itemsize}")
    flat = np.frombuffer(bytearray(memoryview(raw)[offset:]), dtype=dtype, count=count)
    return flat.reshape(shape[::-1]).T if fortran_order else flat.reshape(shape)


def _read_checkpoint(raw):
    """The header and the arrays of a checkpoint's bytes; raises on any damage."""
    if not raw.startswith(_ZIP_MAGIC):
        raise ValueError("not a zip archive")
    header = None
    arrays = {}
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        for info in archive.infolist():
            name = info.filename
            if not name.endswith(".npy"):
                raise ValueError(f"unexpected member {name!r}")
            with archive.open(info) as member:
                data = member.read()          # checks the member's CRC-32
            array = _array_from_npy(data, name)
            if name == "__header__.npy":
                header = json.loads(array.tobytes().decode())
            else:
                arrays[name[:-4]] = array
    if header is None:
        raise ValueError("no gpugrad header")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ValueError(f"format {header.get('format') if isinstance(header, dict) else None!r}"
                         f", not {FORMAT!r}")
    version = header.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"checkpoint format version {version!r}")
    if "tree" not in header:
        raise ValueError("the header has no tree")
    return header, arrays


def load(path, device=None):
    """Read what ``save`` wrote; tensors land on ``device`` (default: the default device).

    A file that is not a gpugrad checkpoint, or is damaged anywhere, raises ``ValueError``
    naming ``path``; a missing or unreadable file raises the ``OSError`` of opening it.
    """
    if device is not None:
        device = _device.device(device)   # a bad device is the caller's error, not the file's
    with open(path, "rb") as fh:
        raw = fh.read()
    try:
        header, arrays = _read_checkpoint(raw)
        if header["version"] > VERSION:
            raise _TooNew(header["version"])
        return _restore(header["tree"], arrays, device)
    except MemoryError:
        raise
    except _TooNew as err:
        raise ValueError(f"{path} has checkpoint format version {err.args[0]}; this "
                         f"gpugrad reads up to version {VERSION}") from None
    except Exception as err:   # every way a damaged file can fail to parse, one error
        raise ValueError(f"{path} is not a gpugrad checkpoint or is corrupt "
                         f"({type(err).__name__}: {err})") from None


class _TooNew(Exception):
    pass
