"""Costs of the functional transforms on the CPU.

    python bench/transforms.py [--repeat 20]

1. One Hessian-vector product against one gradient of the same loss (an MLP,
   784-256-128-10 on a batch of 128): forward over reverse and reverse over reverse.
2. Jacobians of a wide function (R^512 -> R^8) and a tall one (R^8 -> R^512) in forward
   and reverse mode: each mode's cost grows with the dimension it iterates over.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _harness  # noqa: E402

import gpugrad as gg  # noqa: E402
import gpugrad.nn.functional as F  # noqa: E402


def _median_time(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def hvp_vs_grad(repeat):
    gg.manual_seed(0)
    model = gg.nn.MLP([784, 256, 128, 10])
    params = [p.detach() for p in model.parameters()]
    rng = np.random.default_rng(0)
    x = gg.tensor(rng.standard_normal((128, 784)).astype(np.float32))
    y = gg.tensor(rng.integers(0, 10, size=128))

    def loss(w1, b1, w2, b2, w3, b3):
        h = F.linear(x, w1, b1, "tanh")
        h = F.linear(h, w2, b2, "tanh")
        return F.cross_entropy(F.linear(h, w3, b3), y)
    vs = tuple(gg.randn(*p.shape) for p in params)
    argnums = tuple(range(len(params)))
    t_grad = _median_time(lambda: gg.grad(loss, argnums)(*params), repeat)
    t_fwd = _median_time(lambda: gg.hvp(loss, params, vs), repeat)
    t_rev = _median_time(lambda: gg.hvp(loss, params, vs, mode="rev"), repeat)
    return t_grad, t_fwd, t_rev


def jacobian_modes(repeat):
    rng = np.random.default_rng(1)
    w_wide = gg.tensor(rng.standard_normal((8, 512)).astype(np.float32))
    w_tall = gg.tensor(rng.standard_normal((512, 8)).astype(np.float32))

    def wide(x):
        return gg.matmul(w_wide, x.tanh())

    def tall(x):
        return gg.matmul(w_tall, x).tanh()
    rows = []
    for name, fn, n in (("wide R^512 -> R^8", wide, 512), ("tall R^8 -> R^512", tall, 8)):
        x = gg.tensor(rng.standard_normal(n).astype(np.float32))
        rows.append((name,
                     _median_time(lambda fn=fn, x=x: gg.jacobian(fn, x, "fwd"), repeat),
                     _median_time(lambda fn=fn, x=x: gg.jacobian(fn, x, "rev"), repeat)))
    return rows


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    t_grad, t_fwd, t_rev = hvp_vs_grad(args.repeat)
    print("HVP against gradient, MLP 784-256-128-10 (tanh), batch 128, median ms")
    print(f"  gradient                   {t_grad * 1e3:8.2f}")
    print(f"  HVP forward over reverse   {t_fwd * 1e3:8.2f}   {t_fwd / t_grad:.2f}x  (goal <= 3)")
    print(f"  HVP reverse over reverse   {t_rev * 1e3:8.2f}   {t_rev / t_grad:.2f}x")
    print("Jacobian modes, median ms")
    rows = jacobian_modes(max(3, args.repeat // 4))
    for name, tf, tr in rows:
        print(f"  {name:20s} fwd {tf * 1e3:8.2f}   rev {tr * 1e3:8.2f}")
    _harness.write_json("bench/transforms.json", dict(
        _harness.machine(), grad_ms=t_grad * 1e3, hvp_fwd_ms=t_fwd * 1e3, hvp_rev_ms=t_rev * 1e3,
        jacobian_ms={name: {"fwd": tf * 1e3, "rev": tr * 1e3} for name, tf, tr in rows}))


if __name__ == "__main__":
    main()
