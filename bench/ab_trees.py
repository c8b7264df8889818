"""Time of the tiny MLP training step (64-128-128-10, batch 32, SGD) in two checkouts of
gpugrad, each in its own process, the two alternating: the ratio of the second to the
first, per pair, and its median. For before/after comparisons of a change to the hot paths
(check out the old commit beside this one with ``git worktree add``).

    python bench/ab_trees.py OLD_TREE NEW_TREE [--pairs 7]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
import gpugrad as gg
import gpugrad.nn.functional as F
gg.manual_seed(0)
model = gg.nn.MLP([64, 128, 128, 10], device="cpu")
opt = gg.optim.SGD(model.parameters(), lr=0.01)
x = gg.randn(32, 64)
y = gg.tensor(np.arange(32) % 10)
def step():
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
for _ in range(100):
    step()
blocks = []
for _ in range(21):
    start = time.perf_counter()
    for _ in range(100):
        step()
    blocks.append((time.perf_counter() - start) / 100)
print(sorted(blocks)[10])
"""

_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def step_seconds(tree):
    """The median time of a tiny step in ``tree``'s gpugrad, in a fresh process."""
    env = dict(os.environ, **_ONE_THREAD, GPUGRAD_DEVICE="cpu")
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree)], env=env,
                         check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--pairs", type=int, default=7)
    args = parser.parse_args()
    for tree in (args.old, args.new):
        if not os.path.isdir(os.path.join(tree, "gpugrad")):
            parser.error(f"{tree} is not a gpugrad checkout (no gpugrad/ in it)")
    ratios = []
    for i in range(args.pairs):
        old, new = step_seconds(args.old), step_seconds(args.new)
        ratios.append(new / old)
        print(f"pair {i + 1}: old {old * 1e6:6.0f} us  new {new * 1e6:6.0f} us  "
              f"new/old {new / old:.3f}", flush=True)
    median = statistics.median(ratios)
    print(f"median new/old over {args.pairs} pairs: {median:.3f}")
    print(json.dumps({"pairs": args.pairs, "median_new_over_old": median}))


if __name__ == "__main__":
    main()
