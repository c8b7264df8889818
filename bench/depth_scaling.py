"""Time per training step against depth (width 256, batch 64, depth 2 to 32), and the
ratio of backward to forward time.

    python bench/depth_scaling.py [--depths 2,4,8,16,32]

Time per step should grow linearly with depth; the backward should cost at most 2.5
forwards. One thread, one process per depth.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import _harness
import numpy as np

WIDTH, BATCH = 256, 64


def measure(depth, steps):
    import gpugrad as gg
    import gpugrad.nn.functional as F
    gg.manual_seed(0)
    model = gg.nn.MLP([WIDTH] * (depth + 1), device="cpu")
    opt = gg.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = gg.tensor(rng.standard_normal((BATCH, WIDTH)).astype(np.float32), device="cpu")
    y = gg.tensor(rng.integers(0, WIDTH, size=BATCH), device="cpu")
    fwd, bwd = [], []
    for i in range(steps + 3):
        t0 = time.perf_counter()
        loss = F.cross_entropy(model(x), y)
        t1 = time.perf_counter()
        opt.zero_grad()
        loss.backward()
        t2 = time.perf_counter()
        opt.step()
        if i >= 3:
            fwd.append(t1 - t0)
            bwd.append(t2 - t1)
    return statistics.median(fwd), statistics.median(bwd)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="2,4,8,16,32")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        f, b = measure(args.child, args.steps)
        print(json.dumps({"forward": f, "backward": b}))
        return
    rows = []
    for depth in (int(d) for d in args.depths.split(",")):
        out = subprocess.run([sys.executable, __file__, "--child", str(depth), "--steps",
                              str(args.steps)], env=_harness.child_env({"GPUGRAD_DEVICE": "cpu"}),
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((depth, r["forward"], r["backward"]))
    print(f"MLP width {WIDTH}, batch {BATCH}, one thread, median ms")
    print(f"{'depth':>5} {'forward':>9} {'backward':>9} {'step/depth':>11} {'bwd/fwd':>8}")
    for depth, f, b in rows:
        print(f"{depth:5d} {f * 1e3:9.3f} {b * 1e3:9.3f} {(f + b) / depth * 1e3:11.3f} "
              f"{b / f:8.2f}")
    depths = np.array([r[0] for r in rows], dtype=float)
    totals = np.array([r[1] + r[2] for r in rows])
    slope, intercept = np.polyfit(depths, totals, 1)
    fit = slope * depths + intercept
    r2 = 1 - ((totals - fit) ** 2).sum() / ((totals - totals.mean()) ** 2).sum()
    print(f"linear fit: {slope * 1e3:.3f} ms per layer + {intercept * 1e3:.3f} ms, R^2 = {r2:.4f}")
    _harness.write_json("bench/depth_scaling.json", dict(
        _harness.machine(), rows=[{"depth": d, "forward_ms": f * 1e3, "backward_ms": b * 1e3}
                                  for d, f, b in rows], r2=r2))


if __name__ == "__main__":
    main()
