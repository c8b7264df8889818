"""gg.save and gg.load: state dicts as .npz files with a format version, written atomically."""
from __future__ import annotations

import io
import json
import zipfile

import numpy as np

from ._atomic import atomic_path
from ._tensor import Tensor

FORMAT = "gpugrad-checkpoint"
VERSION = 1


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
        if not all(isinstance(k, (str, int)) and not isinstance(k, bool) for k in obj):
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
    if isinstance(node, dict):
        if "__tensor__" in node:
            return Tensor(arrays[node["__tensor__"]], device=device)
        if "__ndarray__" in node:
            return arrays[node["__ndarray__"]]
        if "__dict__" in node:
            return {k: _restore(v, arrays, device) for k, v in node["__dict__"]}
        if "__list__" in node:
            return [_restore(v, arrays, device) for v in node["__list__"]]
        if "__tuple__" in node:
            return tuple(_restore(v, arrays, device) for v in node["__tuple__"])
    return node


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


def load(path, device=None):
    """Read what ``save`` wrote; tensors land on ``device`` (default: the default device)."""
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            if "__header__" not in data.files:
                raise ValueError("no gpugrad header")
            header = json.loads(bytes(data["__header__"]).decode())
            arrays = {k: data[k] for k in data.files if k != "__header__"}
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError,
            UnicodeDecodeError, EOFError) as err:
        raise ValueError(f"{path} is not a gpugrad checkpoint or is corrupt: {err}") from None
    if header.get("format") != FORMAT:
        raise ValueError(f"{path} is not a gpugrad checkpoint (format {header.get('format')!r})")
    if header.get("version", 0) > VERSION:
        raise ValueError(f"{path} has checkpoint format version {header['version']}; this "
                         f"gpugrad reads up to version {VERSION}")
    return _restore(header["tree"], arrays, device)
