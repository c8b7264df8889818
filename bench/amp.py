"""Mixed precision on the large MLP (1024-1536-1536-1024, batch 512): step throughput in
bfloat16 (and float16) under autocast against float32 on the same device, and the loss
curve over 200 SGD steps against float32's.

    python bench/amp.py [--device cuda] [--steps 50] [--curve-steps 200] [--json PATH]

Goals on a GPU: bf16 >= 2.5x float32's throughput; loss curve within 2% at every step.
On the CPU the GEMM runs in float32 on bf16-rounded operands (no speed-up to expect):
the curve is the check there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import gpugrad as gg  # noqa: E402
from gpugrad.nn import functional as F  # noqa: E402

SIZES = [1024, 1536, 1536, 1024]
BATCH = 512


def _setup(device, seed=0):
    gg.manual_seed(seed)
    model = gg.nn.MLP(SIZES, device=device)
    opt = gg.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, opt


def _batches(device, n, seed=0):
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal((SIZES[0], SIZES[-1])).astype(np.float32)
    for _ in range(n):
        x = rng.standard_normal((BATCH, SIZES[0])).astype(np.float32)
        y = (x @ teacher).argmax(1)
        flip = rng.random(BATCH) < 0.3
        y[flip] = rng.integers(0, SIZES[-1], int(flip.sum()))
        yield gg.tensor(x, device=device), gg.tensor(y, device=device)


def _step(model, opt, x, y, dtype, scaler=None):
    with gg.autocast(dtype=dtype or gg.bfloat16, enabled=dtype is not None):
        loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    if scaler is None:
        loss.backward()
        opt.step()
    else:
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    return loss


def throughput(device, dtype, steps, rounds=3):
    model, opt = _setup(device)
    x, y = next(_batches(device, 1))
    scaler = gg.amp.GradScaler() if dtype == np.float16 else None
    dev = gg.device(device)
    for _ in range(5):
        _step(model, opt, x, y, dtype, scaler)
    dev.synchronize()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            _step(model, opt, x, y, dtype, scaler)
        dev.synchronize()
        times.append((time.perf_counter() - start) / steps)
    return BATCH / statistics.median(times)


def curve(device, dtype, steps):
    model, opt = _setup(device)
    losses = [_step(model, opt, x, y, dtype) for x, y in _batches(device, steps)]
    return np.array([float(v.item()) for v in losses])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--steps", type=int, default=50, help="timed steps per round")
    parser.add_argument("--curve-steps", type=int, default=200)
    parser.add_argument("--no-timing", action="store_true")
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    device = args.device or str(gg.default_device())
    result = {"device": device, "sizes": SIZES, "batch": BATCH}
    if not args.no_timing:
        rates = {name: throughput(device, dt, args.steps)
                 for name, dt in (("float32", None), ("bf16", gg.bfloat16),
                                  ("fp16", np.float16))}
        result["samples_per_second"] = rates
        print(f"large MLP step on {device}, samples/s (median of 3 x {args.steps} steps)")
        for name, rate in rates.items():
            print(f"  {name:8s} {rate:12,.0f}   {rate / rates['float32']:.2f}x float32")
        print(f"  goal: bf16 >= 2.5x float32 -> {rates['bf16'] / rates['float32']:.2f}x")
    reference = curve(device, None, args.curve_steps)
    low = curve(device, gg.bfloat16, args.curve_steps)
    worst = float(np.max(np.abs(low - reference) / reference))
    result.update(curve_steps=args.curve_steps, loss_first=float(reference[0]),
                  loss_last_f32=float(reference[-1]), loss_last_bf16=float(low[-1]),
                  worst_relative_difference=worst)
    print(f"loss over {args.curve_steps} steps: float32 {reference[0]:.4f} -> "
          f"{reference[-1]:.4f}, bf16 -> {low[-1]:.4f}; worst step differs by {worst:.2%} "
          f"(goal <= 2%)")
    if args.json:
        from gpugrad._atomic import write_atomic
        write_atomic(args.json, json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
