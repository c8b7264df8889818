"""Where a compiled step's time goes against the NumPy floor's: every launch of the
``gg.compile`` host replay and every matching segment of the floor of ``mlp_train.py``
timed on its own, the two steps interleaved in one process (so that both see the same
machine moment), medians per launch or segment over ``--reps`` steps.

    python bench/compile_segments.py [--config medium] [--reps 200]

A diagnosis, not a ratio to quote: timing every launch adds a clock read to each, and one
process shares its caches between the two steps. ``compile.py`` gives the ratios.
"""
from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"         # before NumPy loads its BLAS

import argparse  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import _harness  # noqa: E402
import compile as compile_bench  # noqa: E402
import mlp_train  # noqa: E402
import numpy as np  # noqa: E402


def floor_segments(sizes, batch):
    """The floor's step (``mlp_train.numpy_step``) cut into named segments: (name, fn)."""
    b = mlp_train.floor_buffers(sizes, batch)
    params, y, acts, grads_h = b.params, b.y, b.acts, b.grads_h
    dws, dbs, masks, rows, row_max, row_sum = b.dws, b.dbs, b.masks, b.rows, b.row_max, \
        b.row_sum
    n_layers, lr = len(params), mlp_train.LR
    segments = []

    def layer(i):
        w, b = params[i]
        h = acts[i + 1]
        np.matmul(acts[i], w.T, out=h)
        h += b
        if i < n_layers - 1:
            np.maximum(h, 0, out=h)

    def xent():
        logits, g = acts[-1], grads_h[-1]
        np.max(logits, axis=1, keepdims=True, out=row_max)
        np.subtract(logits, row_max, out=g)
        np.exp(g, out=g)
        np.sum(g, axis=1, keepdims=True, out=row_sum)
        g /= row_sum
        g[rows, y] -= 1
        g *= 1.0 / batch

    def mask(i):
        gin = grads_h[i - 1]
        np.greater(acts[i], 0, out=masks[i - 1])
        gin *= masks[i - 1]

    def update():
        for (w, b), dw, db in zip(params, dws, dbs):
            dw *= lr
            w -= dw
            db *= lr
            b -= db

    for i in range(n_layers):
        segments.append((f"linear {i}", lambda i=i: layer(i)))
    segments.append(("cross-entropy", xent))
    for i in range(n_layers - 1, -1, -1):
        g = grads_h[i]
        segments.append((f"weight grad {i}",
                         lambda g=g, i=i: np.matmul(g.T, acts[i], out=dws[i])))
        segments.append((f"bias grad {i}", lambda g=g, i=i: np.sum(g, axis=0, out=dbs[i])))
        if i:
            segments.append((f"input grad {i}", lambda g=g, i=i: np.matmul(
                g, params[i][0], out=grads_h[i - 1])))
            segments.append((f"relu grad {i}", lambda i=i: mask(i)))
    segments.append(("sgd update", update))
    return segments


def replay_segments(sizes, batch):
    """The compiled step's replay calls: (name, fn), in replay order."""
    sys.path.insert(0, _harness.ROOT)
    step, _ = compile_bench.compiled_step(sizes, batch, "cpu")
    step()
    plan = compile_bench.compiled_step.plan
    names = [e.op.name if e is not None else "host work" for _, e in plan.profiled_calls]
    return list(zip(names, plan.calls))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="medium", choices=sorted(mlp_train.CONFIGS))
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    sizes, batch = mlp_train.CONFIGS[args.config]
    mlp_train.CONFIG_BATCH[0] = batch
    steps = {"compiled": replay_segments(sizes, batch), "floor": floor_segments(sizes, batch)}
    times = {k: [[] for _ in v] for k, v in steps.items()}
    for _ in range(5):
        for segments in steps.values():
            for _, fn in segments:
                fn()
    clock = time.perf_counter
    for _ in range(args.reps):
        for kind, segments in steps.items():
            for at, (_, fn) in enumerate(segments):
                start = clock()
                fn()
                times[kind][at].append(clock() - start)
    totals = {}
    for kind, segments in steps.items():
        print(f"{kind} step, {args.config}: median us per launch or segment")
        total = 0.0
        for (name, _), samples in zip(segments, times[kind]):
            us = statistics.median(samples) * 1e6
            total += us
            print(f"  {name:24s} {us:9.1f}")
        totals[kind] = total
        print(f"  {'sum':24s} {total:9.1f}\n")
    print(f"compiled / floor, summed medians: {totals['compiled'] / totals['floor']:.3f}")


if __name__ == "__main__":
    main()
