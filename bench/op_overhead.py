"""Per-op overhead: forward + backward time per op on tiny tensors.

A chain of elementwise ops on shape (4,), then sum and backward, timed for gpugrad
and (when installed) PyTorch on the CPU. Each implementation runs in its own process,
pinned to one thread; the processes alternate and the medians are compared.

    python bench/op_overhead.py [--ops 300] [--rounds 9]
"""
from __future__ import annotations

import argparse
import json
import time

import _harness


def chain(lib, n_ops, reps):
    """Seconds per op (forward + backward), the best of ``reps`` passes."""
    if lib == "gpugrad":
        import gpugrad as gg
        x = gg.tensor([0.1, 0.2, 0.3, 0.4], device="cpu", requires_grad=True)
        w = gg.tensor([0.9, 1.1, 0.8, 1.2], device="cpu", requires_grad=True)
        b = gg.tensor([0.01, -0.02, 0.03, -0.01], device="cpu", requires_grad=True)
        tanh, sin = gg.tanh, gg.sin
    else:
        import torch
        torch.set_num_threads(1)
        x = torch.tensor([0.1, 0.2, 0.3, 0.4], requires_grad=True)
        w = torch.tensor([0.9, 1.1, 0.8, 1.2], requires_grad=True)
        b = torch.tensor([0.01, -0.02, 0.03, -0.01], requires_grad=True)
        tanh, sin = torch.tanh, torch.sin

    def once():
        y = x
        for i in range(n_ops // 4):
            y = y * w
            y = y + b
            y = tanh(y)
            y = sin(y) if i % 2 else y * 0.5
        y.sum().backward()

    once()
    best = float("inf")
    for _ in range(reps):
        start = time.perf_counter()
        once()
        best = min(best, time.perf_counter() - start)
    return best / (n_ops + 2)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", default="bench/op_overhead.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"seconds_per_op": chain(args.child, args.ops, args.reps)}))
        return
    libs = ["gpugrad"] + (["torch"] if _harness.has_module("torch") else [])
    samples = _harness.alternate(__file__, libs, ["--ops", str(args.ops), "--reps",
                                                  str(args.reps)], args.rounds,
                                 {"GPUGRAD_DEVICE": "cpu"})
    medians = _harness.median_of(samples, "seconds_per_op")
    print(f"forward+backward per op, chain of {args.ops} ops on shape (4,), "
          f"median of {args.rounds} alternating processes, one thread each")
    for lib, m in medians.items():
        print(f"  {lib:8s} {m * 1e6:7.2f} us/op")
    result = dict(_harness.machine(), us_per_op={k: v * 1e6 for k, v in medians.items()})
    if "torch" in medians:
        ratio = medians["gpugrad"] / medians["torch"]
        result["ratio_gpugrad_over_torch"] = ratio
        print(f"  gpugrad / torch = {ratio:.2f}  (goal <= 0.70)")
    _harness.write_json(args.json, result)


if __name__ == "__main__":
    main()
