"""Data parallelism over processes: ``DistributedDataParallel``.

The design follows PyTorch's DDP reducer and ChainerMN's pure-NCCL communicator:
gradients travel in flat buckets (parameters in reverse registration order, which is
roughly the order backward produces them); a bucket's all-reduce starts from the hook
that accumulates its last gradient, so communication overlaps the rest of backward, and
buckets start in index order on every rank, which keeps the collectives matched.
"""
import contextlib
import weakref

from .. import _tensor, autograd
from .. import distributed as dist
from . import modules

__all__ = ["DistributedDataParallel"]

# PyTorch's DDP also gives the first bucket (the last layers' gradients, ready first) a
# small cap, so the first all-reduce starts early in backward
_FIRST_BUCKET_BYTES = 1 << 20


class _Bucket:
    __slots__ = ("params", "offsets", "numel", "dtype", "device")

    def __init__(self, params):
        self.params = params
        self.offsets = []
        n = 0
        for p in params:
            self.offsets.append(n)
            n += p.numel()
        self.numel = n
        self.dtype = params[0].dtype
        self.device = params[0].device


class DistributedDataParallel(modules.Module):
    """Wraps ``module`` so that backward leaves every rank with the same gradients, the
    average over ranks of each rank's own.

    On wrapping, rank 0's parameters are broadcast to all ranks. During backward each
    parameter's gradient is copied (scaled by 1/world size) into its bucket as soon as it
    is accumulated; a full bucket is all-reduced without blocking, and outstanding
    reductions are polled as later gradients arrive (many MPI builds progress a
    non-blocking collective only when polled). When the backward pass ends the engine
    calls back: every bucket is completed and each ``.grad`` becomes a view of its
    bucket's averaged values (as PyTorch's ``gradient_as_bucket_view``: the next pass
    overwrites them, so copy a ``.grad`` you want to keep across steps). A parameter
    that received no gradient on a rank counts as zeros there (it still gets the average
    of the others). On a GPU the reductions run on the process group's own stream,
    ordered by events.

    >>> import gpugrad as gg
    >>> import gpugrad.distributed as dist
    >>> dist.init_process_group()                         # doctest: +SKIP
    >>> model = gg.nn.parallel.DistributedDataParallel(gg.nn.MLP([784, 256, 10]))
    ... # doctest: +SKIP
    """

    def __init__(self, module, bucket_cap_mb=25):
        super().__init__()
        if not isinstance(module, modules.Module):
            raise TypeError(f"DistributedDataParallel wraps a Module, got "
                            f"{type(module).__name__}")
        if not dist.is_initialized():
            raise RuntimeError("DistributedDataParallel needs the default process group: call "
                               "gpugrad.distributed.init_process_group() first")
        if not bucket_cap_mb > 0:
            raise ValueError(f"bucket_cap_mb must be positive, got {bucket_cap_mb}")
        self.module = module
        self.bucket_cap_mb = bucket_cap_mb
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        if not named:
            raise ValueError("DistributedDataParallel: the module has no parameter that "
                             "requires grad")
        _check_same_parameters(named)
        for _, p in module.named_parameters():
            dist.broadcast(p, src=0)
        self._names = [name for name, _ in named]
        self._params = [p for _, p in named]
        self._world = dist.get_world_size()
        self._buckets, self._slots = _make_buckets(self._params, int(bucket_cap_mb * 2**20))
        self._bucket_arrays = [None] * len(self._buckets)
        self._sync = True
        self._round = None
        me = weakref.ref(self)
        self._handles = [p.register_post_accumulate_grad_hook(_hook(me, i))
                         for i, p in enumerate(self._params)]

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def to(self, *args, **kwargs):
        raise RuntimeError("DistributedDataParallel: move or cast the module before wrapping "
                           "it (the gradient buckets are laid out for its parameters' devices "
                           "and dtypes)")

    @contextlib.contextmanager
    def no_sync(self):
        """Inside, backward accumulates gradients locally without communicating; the
        first backward outside reduces what was accumulated."""
        previous = self._sync
        self._sync = False
        try:
            yield
        finally:
            self._sync = previous

    @property
    def bucket_sizes(self):
        """Bytes of each bucket, in the order they are reduced."""
        return [b.numel * b.dtype.itemsize for b in self._buckets]

    # -- the reducer ------------------------------------------------------------------------
    def _grad_ready(self, index):
        if not self._sync:
            return
        state = self._round
        if state is None:
            state = self._round = _Round(self)
            autograd.queue_callback(self._finish_round)
        b, offset = self._slots[index]
        p = self._params[index]
        bucket = self._buckets[b]
        if p._data.dtype != bucket.dtype or p.device is not bucket.device:
            raise RuntimeError(
                f"DistributedDataParallel: parameter '{self._names[index]}' is now "
                f"{p.dtype} on {p.device}, but was {bucket.dtype} on {bucket.device} when the "
                "module was wrapped: move or cast the module before wrapping it")
        if state.arrived[index]:
            if state.works[b] is not None:
                raise RuntimeError(
                    f"DistributedDataParallel: parameter '{self._names[index]}' received a "
                    "second gradient in one backward pass after its bucket was sent; use "
                    "one graph per backward (or no_sync() to accumulate)")
        else:
            state.arrived[index] = True
            state.pending[b] -= 1
        buf = state.buffer(b)
        xp = p.device.xp
        with p.device.context():
            xp.multiply(p._grad._data.reshape(-1), self._scale(p),
                        out=buf[offset:offset + p.numel()])
        if state.pending[b] == 0:
            state.launch_ready()
        state.poll()

    def _scale(self, p):
        return p.dtype.type(1.0 / self._world)

    def _bucket_buffer(self, b):
        """Bucket b's flat buffer, made once and reused by every pass (a fresh one each
        pass costs page faults worth a fifth of the copy into it)."""
        buf = self._bucket_arrays[b]
        if buf is None:
            bucket = self._buckets[b]
            dev = bucket.device
            buf = self._bucket_arrays[b] = dev.allocate(dev.xp.empty, (bucket.numel,), bucket.dtype)
        return buf

    def _finish_round(self):
        state = self._round
        self._round = None
        if state is None:
            return
        state.fill_missing()
        state.launch_ready()
        for work in state.works:
            work.wait()
        for bucket, buf in zip(self._buckets, state.buffers):
            dev = bucket.device
            for p, offset in zip(bucket.params, bucket.offsets):
                p._grad = _tensor.wrap(buf[offset:offset + p.numel()].reshape(p.shape), dev)


def _hook(ddp_ref, index):
    # a weak reference: the parameters (their gradient sinks hold the hook) must not keep
    # the wrapper alive
    def hook(_param):
        ddp = ddp_ref()
        if ddp is not None:
            ddp._grad_ready(index)
    return hook


class _Round:
    """One backward pass of the reducer: gradients arrived, buffers, reductions started."""

    __slots__ = ("ddp", "pending", "arrived", "buffers", "works", "next")

    def __init__(self, ddp):
        self.ddp = ddp
        self.pending = [len(b.params) for b in ddp._buckets]
        self.arrived = [False] * len(ddp._params)
        self.buffers = [None] * len(ddp._buckets)
        self.works = [None] * len(ddp._buckets)
        self.next = 0

    def buffer(self, b):
        buf = self.buffers[b]
        if buf is None:
            buf = self.buffers[b] = self.ddp._bucket_buffer(b)
        return buf

    def launch_ready(self):
        """Start the ready buckets in index order: every rank issues the same sequence
        of collectives, whatever order its gradients arrived in."""
        buckets = self.ddp._buckets
        while self.next < len(buckets) and self.pending[self.next] == 0:
            b = self.next
            self.works[b] = dist._all_reduce_async(buckets[b].device, self.buffers[b], "sum")
            self.next += 1

    def poll(self):
        for work in self.works[:self.next]:
            if not work.test():
                return        # one MPI progress call moves all of them along

    def fill_missing(self):
        ddp = self.ddp
        for index, arrived in enumerate(self.arrived):
            if not arrived:
                b, offset = ddp._slots[index]
                p = ddp._params[index]
                self.buffer(b)[offset:offset + p.numel()] = 0
                self.arrived[index] = True
                self.pending[b] -= 1


def _make_buckets(params, cap_bytes):
    """Buckets of parameters in reverse registration order, each closed once it reaches
    its cap (the first one at most _FIRST_BUCKET_BYTES) or when dtype or device changes;
    also each parameter's (bucket, offset)."""
    buckets, current, size = [], [], 0
    limit = min(_FIRST_BUCKET_BYTES, cap_bytes)
    for p in reversed(params):
        if current and (p.dtype != current[0].dtype or p.device is not current[0].device):
            buckets.append(_Bucket(current))
            current, size = [], 0
        current.append(p)
        size += p.numel() * p.dtype.itemsize
        if size >= limit:
            buckets.append(_Bucket(current))
            current, size, limit = [], 0, cap_bytes
    if current:
        buckets.append(_Bucket(current))
    slots = {}
    for b, bucket in enumerate(buckets):
        for p, offset in zip(bucket.params, bucket.offsets):
            slots[id(p)] = (b, offset)
    return buckets, [slots[id(p)] for p in params]


def _check_same_parameters(named):
    """Every rank must wrap the same parameters (names, shapes, dtypes): otherwise the
    buckets would not line up and the averages would mix unrelated numbers."""
    mine = [(name, tuple(p.shape), str(p.dtype)) for name, p in named]
    everyone = dist.all_gather_object(mine)
    for rank, theirs in enumerate(everyone):
        if theirs != everyone[0]:
            diff = next((f"{a} vs {b}" for a, b in zip(everyone[0], theirs) if a != b),
                        f"{len(everyone[0])} vs {len(theirs)} parameters")
            raise ValueError(f"DistributedDataParallel: rank {rank} wraps other parameters "
                             f"than rank 0 ({diff})")
