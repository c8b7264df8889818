"""Weak scaling of DistributedDataParallel on this CPU: MLP 784-512-512-10, batch 128 per
rank, SGD, one thread per rank (OMP/OpenBLAS threads = 1).

    python bench/distributed.py [--steps 100] [--rounds 3]

Runs, interleaved over several rounds (best of each kept):
  plain      one ordinary process, no process group (the 1-rank figure beside DDP's)
  ddp x1     mpiexec -n 1, DistributedDataParallel
  ddp x2     mpiexec -n 2, DistributedDataParallel (bucketed all-reduce overlapping backward)
  block x2   mpiexec -n 2, one blocking all-reduce of all gradients after backward
  plain x2   two ordinary processes side by side, no communication: what 2 cores give
and prints samples/s, the weak-scaling efficiency, samples/s(x2) / (2 * samples/s(x1)), and
for ddp x2 where one backward's all-reduces fall (from the profiler).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZES = [784, 512, 512, 10]
BATCH = 128


def worker(mode, steps, warmup):
    import numpy as np

    import gpugrad as gg
    import gpugrad.nn.functional as F
    from gpugrad._tensor import wrap
    cpu = gg.device("cpu")
    dist = None
    if mode != "plain":
        import gpugrad.distributed as dist
        dist.init_process_group(backend="mpi")
    rank = dist.get_rank() if dist else 0
    world = dist.get_world_size() if dist else 1
    gg.manual_seed(0)
    model = gg.nn.MLP(SIZES, device="cpu")
    forward = model
    if mode == "ddp":
        forward = gg.nn.parallel.DistributedDataParallel(model)
    params = list(model.parameters())
    opt = gg.optim.SGD(params, lr=1e-3)
    rng = np.random.default_rng(rank)
    x = gg.tensor(rng.standard_normal((BATCH, SIZES[0])).astype(np.float32), device="cpu")
    y = gg.tensor(rng.integers(0, SIZES[-1], BATCH), device="cpu")

    def blocking_all_reduce():
        flat = np.concatenate([p._grad._data.reshape(-1) for p in params])
        flat *= np.float32(1.0 / world)
        dist.all_reduce(wrap(flat, cpu), op="sum")     # in place on flat
        offset = 0
        for p in params:
            p._grad._data[...] = flat[offset:offset + p.numel()].reshape(p.shape)
            offset += p.numel()

    def step():
        loss = F.cross_entropy(forward(x), y)
        opt.zero_grad()
        loss.backward()
        if mode == "block":
            blocking_all_reduce()
        opt.step()

    for _ in range(warmup):
        step()
    if dist:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    elapsed = time.perf_counter() - start
    if dist:
        elapsed = float(dist._host_all_reduce(np.array([elapsed]), op="max")[0])
    result = {"mode": mode, "world": world, "step_ms": elapsed / steps * 1e3,
              "samples_per_s": BATCH * world * steps / elapsed}
    if mode == "ddp":
        result["overlap"] = overlap(forward, x, y, dist)
    if rank == 0:
        print(json.dumps(result), flush=True)


def overlap(ddp, x, y, dist):
    """Where the all-reduces of one backward fall, from the profiler (ms from the start of
    backward's first op, the median over 5 steps): the first one's start, the end of
    backward's last op, and when the last all-reduce completed."""
    import numpy as np

    import gpugrad as gg
    import gpugrad.nn.functional as F
    rows = []
    for _ in range(5):
        loss = F.cross_entropy(ddp(x), y)
        ddp.module.zero_grad()
        dist.barrier()
        with gg.profiler.profile() as prof:
            loss.backward()
        comm = [e for e in prof.events if e.phase == "communication"]
        back = [e for e in prof.events if e.phase == "backward"]
        t0 = min(e.start for e in back)
        rows.append((min(e.start for e in comm) - t0,
                     max(e.start + e.duration for e in back) - t0,
                     max(e.start + e.duration for e in comm) - t0))
    first, back_end, comm_end = (float(v) * 1e3 for v in np.median(rows, axis=0))
    return {"first_all_reduce_ms": first, "backward_end_ms": back_end,
            "last_all_reduce_end_ms": comm_end, "buckets_bytes": ddp.bucket_sizes}


def _mpiexec():
    local = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    return local if os.access(local, os.X_OK) else shutil.which("mpiexec")


def _run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if out.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stdout}{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.steps, args.warmup)
        return
    mpiexec = _mpiexec()
    if mpiexec is None:
        raise SystemExit("mpiexec not found: pip install '.[distributed]'")
    env = dict(os.environ, PYTHONPATH=ROOT, GPUGRAD_DEVICE="cpu", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    me = [sys.executable, os.path.abspath(__file__), "--steps", str(args.steps), "--warmup",
          str(args.warmup), "--worker"]
    runs = {
        "plain": lambda: _run(me + ["plain"], env),
        "ddp x1": lambda: _run([mpiexec, "-n", "1", *me, "ddp"], env),
        "ddp x2": lambda: _run([mpiexec, "-n", "2", *me, "ddp"], env),
        "block x2": lambda: _run([mpiexec, "-n", "2", *me, "block"], env),
        "plain x2": lambda: _run([mpiexec, "-n", "2", *me, "none"], env),
    }
    best = {}
    for _ in range(args.rounds):
        for name, run in runs.items():
            result = run()
            if name not in best or result["samples_per_s"] > best[name]["samples_per_s"]:
                best[name] = result
    print(f"MLP {'-'.join(map(str, SIZES))}, batch {BATCH} per rank, SGD, 1 thread per rank, "
          f"{args.steps} steps, best of {args.rounds} rounds")
    print(f"{'run':10s} {'ms/step':>8s} {'samples/s':>10s}")
    for name, r in best.items():
        print(f"{name:10s} {r['step_ms']:8.2f} {r['samples_per_s']:10,.0f}")
    ov = best["ddp x2"]["overlap"]
    print(f"ddp x2, one backward (rank 0, median of 5; ms from its first op): first "
          f"all-reduce starts {ov['first_all_reduce_ms']:.2f}, backward's last op ends "
          f"{ov['backward_end_ms']:.2f}, last all-reduce done {ov['last_all_reduce_end_ms']:.2f}"
          f"; buckets {[round(b / 2**20, 2) for b in ov['buckets_bytes']]} MiB")
    one = best["ddp x1"]["samples_per_s"]
    for name in ("ddp x2", "block x2", "plain x2"):
        print(f"weak-scaling efficiency {name}: {best[name]['samples_per_s'] / (2 * one):.3f}"
              f" (vs plain 1-process: "
              f"{best[name]['samples_per_s'] / (2 * best['plain']['samples_per_s']):.3f})")


if __name__ == "__main__":
    main()
