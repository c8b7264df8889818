"""Time of an MLP training step (SGD; tiny: 64-128-128-10, batch 32; medium: 784-512-512-10,
batch 128), eager or compiled with ``gg.compile``, in two checkouts of gpugrad, each in its
own process, the two alternating: the ratio of the second to the first, per pair, and its
median. For before/after comparisons of a change to the hot paths (check out the old
commit beside this one with ``git worktree add``).

    python bench/ab_trees.py OLD_TREE NEW_TREE [--pairs 7] [--config tiny] [--compiled]
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
sizes, batch = {"tiny": ([64, 128, 128, 10], 32),
                "medium": ([784, 512, 512, 10], 128)}[sys.argv[2]]
gg.manual_seed(0)
model = gg.nn.MLP(sizes, device="cpu")
opt = gg.optim.SGD(model.parameters(), lr=0.01)
x = gg.randn(batch, sizes[0])
y = gg.tensor(np.arange(batch) % sizes[-1])
def step(x, y):
    opt.zero_grad()
    loss = F.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss
if sys.argv[3] == "compiled":
    step = gg.compile(step)
per_block = 100 if sys.argv[2] == "tiny" else 10
for _ in range(per_block):
    step(x, y)
blocks = []
for _ in range(21):
    start = time.perf_counter()
    for _ in range(per_block):
        step(x, y)
    blocks.append((time.perf_counter() - start) / per_block)
print(sorted(blocks)[10])
"""

_ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}


def step_seconds(tree, config, mode):
    """The median time of a step in ``tree``'s gpugrad, in a fresh process."""
    env = dict(os.environ, **_ONE_THREAD, GPUGRAD_DEVICE="cpu")
    out = subprocess.run([sys.executable, "-c", CHILD, os.path.abspath(tree), config, mode],
                         env=env, check=True, capture_output=True, text=True).stdout
    return float(out.split()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old")
    parser.add_argument("new")
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--config", choices=("tiny", "medium"), default="tiny")
    parser.add_argument("--compiled", action="store_true",
                        help="the step compiled with gg.compile (replays), not eager")
    args = parser.parse_args()
    for tree in (args.old, args.new):
        if not os.path.isdir(os.path.join(tree, "gpugrad")):
            parser.error(f"{tree} is not a gpugrad checkout (no gpugrad/ in it)")
    ratios = []
    for i in range(args.pairs):
        mode = "compiled" if args.compiled else "eager"
        old, new = (step_seconds(tree, args.config, mode) for tree in (args.old, args.new))
        ratios.append(new / old)
        print(f"pair {i + 1}: old {old * 1e6:6.0f} us  new {new * 1e6:6.0f} us  "
              f"new/old {new / old:.3f}", flush=True)
    median = statistics.median(ratios)
    print(f"median new/old over {args.pairs} pairs: {median:.3f}")
    print(json.dumps({"pairs": args.pairs, "median_new_over_old": median}))


if __name__ == "__main__":
    main()
