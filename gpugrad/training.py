"""Training an MLP classifier: the loop behind ``gpugrad train``."""
from __future__ import annotations

import math
import sys
import time

import numpy as np

from . import _device, _dtypes, data, nn, optim
from . import amp as amp_
from ._autograd.mode import no_grad
from ._compile import compile as compile_step
from .nn import functional as F
from .serialization import save

OPTIMIZERS = {"adam": optim.Adam, "adamw": optim.AdamW, "sgd": optim.SGD}
# SGD (momentum 0.9) needs a larger step than Adam's normalised one: measured in
# bench/RESULTS.md, "Default learning rates of gpugrad train"
DEFAULT_LR = {"adam": 1e-3, "adamw": 1e-3, "sgd": 0.05}
# --amp: the dtype matmuls run in under autocast (fp16 also scales the loss)
AMP_DTYPES = {None: None, "bf16": _dtypes.bfloat16, "fp16": np.dtype(np.float16)}


def _progress(iterable, total, desc, enabled):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


def evaluate(model, split, device, batch_size=1000, shard=None):
    """Accuracy of ``model`` on a split (no recording). With ``shard=(rank, world)`` each
    rank scores the rows rank::world of every batch and the counts are summed over ranks."""
    model.eval()
    correct = 0
    with no_grad():
        for x, y in data.DataLoader(split, batch_size, shuffle=False, device=device,
                                    shard=shard):
            pred = model(x)._data.argmax(axis=1)
            correct += int((pred == y._data).sum())
    model.train()
    if shard is not None:
        from . import distributed
        correct = int(distributed._host_all_reduce(np.array([correct], np.int64))[0])
    return correct / len(split)


def _check_arguments(hidden, epochs, batch_size, lr, optimizer, amp=None, compiled=False):
    if amp not in AMP_DTYPES:
        raise ValueError(f"unknown amp mode '{amp}': expected bf16 or fp16 (or None)")
    if amp == "fp16" and compiled:
        raise ValueError("amp 'fp16' needs a GradScaler, whose steps gg.compile cannot record "
                         "yet: use amp 'bf16' with compile, or fp16 without it")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer '{optimizer}': expected one of "
                         f"{', '.join(OPTIMIZERS)}")
    for name, value in (("epochs", epochs), ("batch_size", batch_size)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if not all(isinstance(h, int) and h > 0 for h in hidden):
        raise ValueError(f"hidden sizes must be positive integers, got {tuple(hidden)}")
    if lr is not None and not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a positive finite number, got {lr!r}")


def train(hidden=(256, 128), epochs=15, batch_size=128, lr=None, optimizer="adam",
          device=None, data_dir=None, save_path=None, seed=0, progress=True, log=print,
          amp=None, compiled=False, distributed=False):
    """Train an MLP on MNIST (the bundled subset unless ``data_dir``); returns a summary.
    ``lr=None`` takes the optimizer's default (``DEFAULT_LR``). ``amp``: None, "bf16" or
    "fp16" (mixed precision under autocast; fp16 scales the loss with a GradScaler).
    ``compiled=True`` runs the step through ``gg.compile``: recorded once per batch shape,
    then replayed.

    ``distributed=True``: one of the processes an MPI launcher started (the process group
    is joined if it is not yet). ``batch_size`` stays the global batch: rank r computes
    rows r::world of each one, and the gradients are averaged across ranks, so any
    number of ranks follows the loss curve of one process. Only rank 0 logs, shows
    progress and writes the checkpoint; a failure on any rank aborts the job."""
    _check_arguments(hidden, epochs, batch_size, lr, optimizer, amp, compiled)
    if compiled and distributed:
        # a replay runs the recorded kernels only: DDP's all-reduces, started by engine
        # hooks, would not run, and each rank would train on its own gradients
        raise ValueError("compiled and distributed training cannot be combined yet: a "
                         "compiled step would skip the gradient all-reduces")
    if amp is not None and distributed:
        raise ValueError("mixed precision and distributed training cannot be combined yet: "
                         "the distributed step has no autocast or GradScaler")
    if lr is None:
        lr = DEFAULT_LR[optimizer]
    args = (hidden, epochs, batch_size, lr, optimizer, device, data_dir, save_path, seed,
            progress, log, amp, compiled)
    if not distributed:
        return _train(*args, None)
    from . import distributed as dist
    if not dist.is_initialized():
        dist.init_process_group()
    try:
        return _train(*args, dist)
    except BaseException as err:
        if dist.get_world_size() > 1:
            # the other ranks would wait for this one in their next collective: end the job
            print(f"gpugrad train: rank {dist.get_rank()}: error: {err}", file=sys.stderr)
            dist.abort(2)
        raise


def _train(hidden, epochs, batch_size, lr, optimizer, device, data_dir, save_path, seed,
           progress, log, amp, compiled, dist):
    from ._device import manual_seed
    rank, world = (dist.get_rank(), dist.get_world_size()) if dist is not None else (0, 1)
    dev = _device.device(device) if device is not None else _device.default_device()
    if dist is not None:
        dev = dev.for_local_rank(dist.get_local_rank())     # one GPU per rank, or the CPU
    if rank != 0:
        log, progress = (lambda msg: None), False
    manual_seed(seed)
    train_split, test_split = data.mnist(data_dir)
    n_classes = int(train_split.labels.max()) + 1
    sizes = [train_split.images.shape[1], *hidden, n_classes]
    model = nn.MLP(sizes, activation="relu", device=dev)
    opt_cls = OPTIMIZERS[optimizer]
    opt = opt_cls(model.parameters(), lr=lr, momentum=0.9) if optimizer == "sgd" \
        else opt_cls(model.parameters(), lr=lr)
    shard = (rank, world) if dist is not None else None
    if dist is not None:
        from .nn.parallel import DistributedDataParallel
        ddp = DistributedDataParallel(model)
    autocast = amp_.autocast(dtype=AMP_DTYPES[amp] or np.float16, enabled=amp is not None)
    scaler = amp_.GradScaler(enabled=amp == "fp16")
    # every rank draws the same global batches and keeps its rows of each
    loader = data.DataLoader(train_split, batch_size, shuffle=True, seed=seed, device=dev,
                             shard=shard)
    n_train = len(train_split)

    def train_step(x, y):
        opt.zero_grad()
        with autocast:
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        return loss
    if compiled:
        train_step = compile_step(train_step)

    def distributed_step(x, y, rows):
        """This rank's share of a global batch of ``rows``; returns its part of the mean
        loss (the parts sum to the global batch's mean over ranks)."""
        opt.zero_grad()
        total = F.cross_entropy(ddp(x), y, reduction="sum")
        # scaled so that the average over ranks that DDP takes of its gradient is the
        # gradient of the global batch's mean loss
        (total * (world / rows)).backward()
        opt.step()
        return total.detach() * (1.0 / rows)
    history = []
    train_seconds = 0.0
    total_samples = 0
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        losses = []
        seen = 0
        batches = _progress(loader, len(loader), f"epoch {epoch}/{epochs}", progress)
        for step, (x, y) in enumerate(batches):
            if dist is None:
                losses.append(train_step(x, y))
                seen += x.shape[0]
            else:
                rows = min(batch_size, n_train - step * batch_size)
                losses.append(distributed_step(x, y, rows))
                seen += rows
        # one device-to-host transfer per epoch, not per step
        step_losses = np.array([float(v.item()) for v in losses])
        if dist is not None:
            step_losses = dist._host_all_reduce(step_losses)   # global mean of each step
        mean_loss = float(np.mean(step_losses))
        dev.synchronize()
        elapsed = time.perf_counter() - start
        train_seconds += elapsed
        total_samples += seen
        train_acc = evaluate(model, train_split, dev, shard=shard)
        history.append({"epoch": epoch, "loss": mean_loss, "train_accuracy": train_acc,
                        "samples_per_second": seen / elapsed})
        log(f"epoch {epoch}/{epochs}  loss {mean_loss:.4f}  train acc {train_acc:.4f}  "
            f"{seen / elapsed:,.0f} samples/s")
    test_acc = evaluate(model, test_split, dev, shard=shard)
    log(f"test accuracy {test_acc:.4f}")
    if save_path and rank == 0:
        save({"model": model.state_dict(), "optimizer": opt.state_dict(),
              "sizes": sizes, "epochs": epochs}, save_path)
        log(f"saved checkpoint to {save_path}")
    summary = {
        "test_accuracy": test_acc,
        "train_seconds": train_seconds,
        "samples_per_second": total_samples / train_seconds if train_seconds else 0.0,
        "device": str(dev),
        "epochs": epochs,
        "sizes": sizes,
        "optimizer": optimizer,
        "lr": lr,
        "amp": amp,
        "compiled": bool(compiled),
        "history": history,
    }
    if dist is not None:
        summary.update(rank=rank, world_size=world)
    return summary
