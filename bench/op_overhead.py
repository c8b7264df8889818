"""Per-op overhead: forward + backward time per op on tiny tensors.

A chain of elementwise ops on shape (4,), then sum and backward, timed for gpugrad
and (when installed) PyTorch on the CPU. Each implementation runs in its own process,
pinned to one thread; the processes alternate and the medians are compared.

    python bench/op_overhead.py [--ops 300] [--rounds 7]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time

PIN = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


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


def _child(lib, n_ops, reps):
    print(json.dumps({"lib": lib, "seconds_per_op": chain(lib, n_ops, reps)}))


def _has_torch():
    try:
        import torch  # noqa: F401
        return True
    except ImportError:
        return False


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--json", default="bench/op_overhead.json")
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.ops, args.reps)
        return
    libs = ["gpugrad"] + (["torch"] if _has_torch() else [])
    env = dict(os.environ, **PIN, GPUGRAD_DEVICE="cpu")
    env["PYTHONPATH"] = os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
        + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    samples = {lib: [] for lib in libs}
    for _ in range(args.rounds):
        for lib in libs:
            out = subprocess.run([sys.executable, __file__, "--child", lib, "--ops",
                                  str(args.ops), "--reps", str(args.reps)], env=env,
                                 capture_output=True, text=True, check=True)
            samples[lib].append(json.loads(out.stdout.strip().splitlines()[-1])["seconds_per_op"])
    medians = {lib: statistics.median(v) for lib, v in samples.items()}
    print(f"forward+backward per op, chain of {args.ops} ops on shape (4,), "
          f"median of {args.rounds} alternating processes, one thread each")
    for lib, m in medians.items():
        print(f"  {lib:8s} {m * 1e6:7.2f} us/op")
    result = {"machine": platform.node(), "python": platform.python_version(),
              "us_per_op": {k: v * 1e6 for k, v in medians.items()}}
    if "torch" in medians:
        ratio = medians["gpugrad"] / medians["torch"]
        result["ratio_gpugrad_over_torch"] = ratio
        print(f"  gpugrad / torch = {ratio:.2f}  (goal <= 0.70)")
    os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(result, fh, indent=2)
    os.replace(tmp, args.json)


if __name__ == "__main__":
    main()
