"""Peak memory added by one training step (large MLP 1024-1536-1536-1024, batch 512):
gpugrad against the hand-written NumPy floor and PyTorch, and against the analytic
minimum (gradients plus the activations backward must keep).

    python bench/memory.py [--config large]
    python bench/memory.py --checkpoint [--device cpu|cuda]

``--checkpoint``: where activations dominate (a 32-layer MLP 128 wide, batch 4096), the
peak of a forward + backward + SGD step by gpugrad's own accounting (gg.memory.stats) and
the step time, unchecked against ``MLP(checkpoint_every=4)``, in one process, alternating.

Each implementation runs in its own process, one thread. Once it is set up, the
process's peak resident set is reset (/proc/self/clear_refs) and three steps run; the
peak above the resident set before them is what a step added (the NumPy floor's
preallocated buffers count: their pages are first touched in a step). With glibc's mmap
threshold fixed at 64 KiB, every large array is its own mapping and leaves the resident
set when freed.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics

import _harness
import mlp_train


def _rss(field):
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure(impl, config):
    sizes, batch = mlp_train.CONFIGS[config]
    mlp_train.CONFIG_BATCH[0] = batch
    step, sync = mlp_train.IMPLS[impl](sizes, batch, "cpu")
    before = _rss("VmRSS")
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
    gg_before = None
    if impl == "gpugrad":
        import gpugrad as gg
        gg.memory.reset_peak("cpu")
        gg_before = gg.memory.stats("cpu")["current_bytes"]
    for _ in range(3):
        step()
    # the floor's buffers came from np.empty: their pages are first touched here, so the
    # resident set counts them as step memory too
    result = {"added": _rss("VmHWM") - before}
    if impl == "gpugrad":
        result["tracked_added"] = gg.memory.stats("cpu")["peak_bytes"] - gg_before
    return result


def analytic_minimum(config):
    sizes, batch = mlp_train.CONFIGS[config]
    params = sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    activations = batch * sum(sizes[1:])           # each layer's output, kept for backward
    return 4 * (params + activations)


def checkpoint_case(device, depth=32, width=128, batch=4096, every=4, rounds=5):
    """Peak bytes of a forward + backward + step and median step time, plain and
    checkpointed (the first round warms up)."""
    import sys
    import time

    import numpy as np
    sys.path.insert(0, _harness.ROOT)
    import gpugrad as gg
    dev = gg.device(device)
    gg.manual_seed(0)
    model = gg.nn.MLP([width] * (depth + 1), device=dev)
    opt = gg.optim.SGD(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    x = gg.tensor(rng.standard_normal((batch, width)).astype(np.float32), device=dev)
    y = gg.tensor(rng.integers(0, width, batch), device=dev)
    samples = {None: [], every: []}
    peaks = {}
    for r in range(rounds + 1):
        for setting in (None, every):
            model.checkpoint_every = setting
            opt.zero_grad()
            dev.synchronize()
            gg.memory.reset_peak(dev)
            base = gg.memory.stats(dev)["current_bytes"]
            start = time.perf_counter()
            loss = gg.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            dev.synchronize()
            elapsed = time.perf_counter() - start
            peak = gg.memory.stats(dev)["peak_bytes"] - base
            del loss
            if r:
                samples[setting].append(elapsed)
                peaks[setting] = peak
    result = {}
    for setting in (None, every):
        key = "plain" if setting is None else f"checkpoint_every_{every}"
        result[key] = {"peak_bytes": peaks[setting],
                       "step_seconds": statistics.median(samples[setting])}
    result["peak_ratio"] = peaks[every] / peaks[None]
    result["time_ratio"] = (result[f"checkpoint_every_{every}"]["step_seconds"]
                            / result["plain"]["step_seconds"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", action="store_true",
                        help="the checkpointing case (32 x 128 MLP, batch 4096)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", default="large")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.config)))
        return
    if args.checkpoint:
        res = checkpoint_case(args.device, rounds=args.rounds)
        mb = 2 ** 20
        print(f"32-layer MLP 128 wide, batch 4096, on {args.device}: forward + backward + "
              f"step peak (gg.memory.stats) and step time, median of {args.rounds}")
        for key in ("plain", "checkpoint_every_4"):
            print(f"  {key:20s} peak {res[key]['peak_bytes'] / mb:8.1f} MB   step "
                  f"{res[key]['step_seconds'] * 1e3:8.1f} ms")
        print(f"  peak ratio {res['peak_ratio']:.2f} (goal <= 0.5)   time ratio "
              f"{res['time_ratio']:.2f} (goal <= 1.4)")
        _harness.write_json(f"bench/memory_checkpoint_{args.device.split(':')[0]}.json",
                            dict(_harness.machine(), device=args.device, **res))
        return
    if not os.path.exists("/proc/self/clear_refs"):
        print("bench/memory.py needs Linux's /proc/self/clear_refs")
        return
    impls = ["gpugrad", "numpy"] + (["torch"] if _harness.has_module("torch") else [])
    # a fixed mmap threshold: glibc otherwise raises it after the first large free and then
    # keeps freed arrays in its heap, where the resident set cannot see them come and go
    samples = _harness.alternate(__file__, impls, ["--config", args.config], args.rounds,
                                 {"GPUGRAD_DEVICE": "cpu", "MALLOC_MMAP_THRESHOLD_": "65536"})
    added = {impl: statistics.median(r["added"] for r in rs) for impl, rs in samples.items()}
    tracked = statistics.median(r["tracked_added"] for r in samples["gpugrad"])
    minimum = analytic_minimum(args.config)
    mb = 2 ** 20
    print(f"peak memory added by one training step, {args.config} MLP, median of "
          f"{args.rounds} processes")
    print(f"  analytic minimum (gradients + kept activations) {minimum / mb:8.1f} MB")
    for impl, v in added.items():
        print(f"  {impl:8s} {v / mb:8.1f} MB   {v / added['numpy']:.2f}x NumPy floor   "
              f"{v / minimum:.2f}x minimum")
    print(f"  gpugrad's own accounting (gg.memory.stats peak) {tracked / mb:8.1f} MB")
    _harness.write_json("bench/memory.json", dict(_harness.machine(), config=args.config,
                                                  added_bytes=added, tracked_bytes=tracked,
                                                  analytic_minimum=minimum))


if __name__ == "__main__":
    main()
