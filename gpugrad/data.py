"""Data: the bundled 5,000-digit MNIST subset, MNIST IDX files, and a batch iterator."""
import dataclasses
import gzip
import os

import numpy as np

from . import _device, _tensor

__all__ = ["mnist", "read_idx", "Split", "DataLoader", "DistributedSampler", "MNIST_MEAN",
           "MNIST_STD"]

_BUNDLED = os.path.join(os.path.dirname(__file__), "data", "mnist-5k.npz")
MNIST_MEAN, MNIST_STD = 0.1307, 0.3081
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclasses.dataclass
class Split:
    """Images as float32 rows of 784 normalised pixels, labels as int64 classes."""
    images: np.ndarray
    labels: np.ndarray

    def __len__(self):
        return len(self.labels)


def _normalise(images):
    flat = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return (flat - MNIST_MEAN) / MNIST_STD


def read_idx(path):
    """Parse one IDX file (gzipped or not) into a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise ValueError(f"cannot read IDX file {path}: {err}") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header is truncated")
    dims = tuple(int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(f"{path}: IDX header promises {dims} ({expected} bytes of data) but "
                         f"the file holds {len(raw) - header}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims).astype(
        dtype.newbyteorder("="), copy=False)


def _find(folder, stem):
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                 stem.replace("-idx", ".idx") + ".gz"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError(f"MNIST file {stem}[.gz] not found in {folder}")


def _load_idx_split(folder, prefix):
    images = read_idx(_find(folder, f"{prefix}-images-idx3-ubyte"))
    labels = read_idx(_find(folder, f"{prefix}-labels-idx1-ubyte"))
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise ValueError(f"MNIST {prefix} files in {folder} do not match: images "
                         f"{images.shape}, labels {labels.shape}")
    return Split(_normalise(images), labels.astype(np.int64))


def mnist(path=None):
    """(train, test) splits of MNIST.

    With no path: the 5,000-digit subset shipped with gpugrad, split 4,000/1,000 by a
    fixed permutation. With a folder: the standard IDX files (train-images-idx3-ubyte,
    train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, gzipped or not).
    """
    if path is not None:
        if not os.path.isdir(path):
            raise FileNotFoundError(f"MNIST folder {path} does not exist")
        return _load_idx_split(path, "train"), _load_idx_split(path, "t10k")
    with np.load(_BUNDLED) as data:
        images, labels = data["images"], data["labels"]
    order = np.random.default_rng(0).permutation(len(labels))
    images, labels = images[order], labels[order].astype(np.int64)
    return (Split(_normalise(images[:4000]), labels[:4000]),
            Split(_normalise(images[4000:]), labels[4000:]))


class DataLoader:
    """Batches of (images, labels) tensors on a device; a seeded shuffle each epoch.

    ``sampler``: an iterable of indices (a ``DistributedSampler``, say) that replaces the
    loader's own order. ``shard=(index, count)``: each batch keeps its rows
    ``index::count``, the share of one of ``count`` processes of a global batch.

    >>> import gpugrad as gg
    >>> train, test = gg.data.mnist()
    >>> x, y = next(iter(gg.data.DataLoader(train, 32, device="cpu")))
    >>> tuple(x.shape), tuple(y.shape)
    ((32, 784), (32,))
    """

    def __init__(self, split, batch_size, shuffle=True, seed=0, drop_last=False, device=None,
                 sampler=None, shard=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if shard is not None:
            index, count = shard
            if not (isinstance(count, (int, np.integer)) and count >= 1
                    and isinstance(index, (int, np.integer)) and 0 <= index < count):
                raise ValueError(f"shard must be (index, count) with 0 <= index < count, got "
                                 f"{shard}")
        self.split = split
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.device = _device.device(device) if device is not None else _device.default_device()
        self.sampler = sampler
        self.shard = shard
        self._rng = np.random.default_rng(seed)

    def __len__(self):
        n = len(self.split) if self.sampler is None else len(self.sampler)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        if self.sampler is not None:
            # the sampler decides order and share (a DistributedSampler shuffles by epoch)
            order = np.fromiter(iter(self.sampler), dtype=np.int64)
        else:
            n = len(self.split)
            order = self._rng.permutation(n) if self.shuffle else np.arange(n)
        dev = self.device
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                break
            if self.shard is not None:
                idx = idx[self.shard[0]::self.shard[1]]
            # one host-to-device copy per array per batch
            x = dev.asarray(np.ascontiguousarray(self.split.images[idx]))
            y = dev.asarray(self.split.labels[idx])
            dev.memory.track(x)
            yield _tensor.wrap(x, dev), _tensor.wrap(y, dev)


class DistributedSampler:
    """The indices of one rank's share of a dataset of ``n`` items (or of ``len(n)``),
    as PyTorch's ``DistributedSampler``: a permutation seeded by ``seed + epoch`` (the
    same on every rank; call ``set_epoch`` each epoch), padded by repeating its start so
    that every rank gets the same count, or with ``drop_last`` cut to a multiple of the
    rank count; rank r takes positions r, r + num_replicas, ...

    >>> import gpugrad as gg
    >>> list(gg.data.DistributedSampler(5, num_replicas=2, rank=1, shuffle=False))
    [1, 3, 0]
    """

    def __init__(self, n, num_replicas=None, rank=None, shuffle=True, seed=0, drop_last=False):
        if not isinstance(n, (int, np.integer)):
            if not hasattr(n, "__len__"):
                raise TypeError(f"DistributedSampler: expected a length or a sized dataset, "
                                f"got {type(n).__name__}")
            n = len(n)
        if n < 0:
            raise ValueError(f"DistributedSampler: dataset length must be >= 0, got {n}")
        if num_replicas is None or rank is None:
            from . import distributed
            if not distributed.is_initialized():
                raise RuntimeError("DistributedSampler: pass num_replicas and rank, or call "
                                   "gpugrad.distributed.init_process_group() first")
            num_replicas = distributed.get_world_size() if num_replicas is None \
                else num_replicas
            rank = distributed.get_rank() if rank is None else rank
        if not isinstance(num_replicas, (int, np.integer)) or num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be a positive integer, "
                             f"got {num_replicas}")
        if not isinstance(rank, (int, np.integer)) or not 0 <= rank < num_replicas:
            raise ValueError(f"DistributedSampler: invalid rank {rank}, rank should be in "
                             f"the interval [0, {num_replicas - 1}]")
        self.n = int(n)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = shuffle
        self.seed = int(seed)
        self.drop_last = drop_last
        self.epoch = 0
        if drop_last and self.n % self.num_replicas:
            self.num_samples = -(-(self.n - self.num_replicas) // self.num_replicas)
        else:
            self.num_samples = -(-self.n // self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch):
        """A different shuffle for each epoch (the same on every rank)."""
        self.epoch = int(epoch)

    def __len__(self):
        return self.num_samples

    def __iter__(self):
        if self.shuffle:
            indices = np.random.default_rng(self.seed + self.epoch).permutation(self.n)
        else:
            indices = np.arange(self.n)
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding > 0 and len(indices):
                indices = np.concatenate([indices, np.resize(indices, padding)])
        else:
            indices = indices[:self.total_size]
        return iter(indices[self.rank:self.total_size:self.num_replicas].tolist())
