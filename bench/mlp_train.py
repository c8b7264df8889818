"""Time of one MLP training step: gpugrad against PyTorch eager and a hand-written
NumPy floor (CPU), or against PyTorch on the same card (GPU).

    python bench/mlp_train.py [--device cpu|cuda] [--configs tiny,medium,large] [--rounds 5]

A step is forward, softmax cross-entropy, backward and a plain SGD update. Each
implementation runs in its own process with every library on one thread; processes
alternate and medians are compared. The NumPy floor preallocates every buffer and
works with in-place ufuncs: what an engine could at best do with NumPy.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
import types

import _harness
import numpy as np

CONFIGS = {
    "tiny": ([64, 128, 128, 10], 32),
    "medium": ([784, 512, 512, 10], 128),
    "large": ([1024, 1536, 1536, 1024], 512),
}
LR = 0.01


def _init(sizes, seed=0):
    rng = np.random.default_rng(seed)
    params = []
    for a, b in zip(sizes[:-1], sizes[1:]):
        bound = 1 / np.sqrt(a)
        params.append((rng.uniform(-bound, bound, (b, a)).astype(np.float32),
                       rng.uniform(-bound, bound, b).astype(np.float32)))
    x = rng.standard_normal((CONFIG_BATCH[0], sizes[0])).astype(np.float32)
    y = rng.integers(0, sizes[-1], size=CONFIG_BATCH[0])
    return params, x, y


CONFIG_BATCH = [0]


def gpugrad_step(sizes, batch, device):
    import gpugrad as gg
    import gpugrad.nn.functional as F
    params, x, y = _init(sizes)
    model = gg.nn.MLP(sizes, device=device)
    for layer, (w, b) in zip([m for m in model if isinstance(m, gg.nn.Linear)], params):
        layer.weight.data[...] = w if device == "cpu" else gg.tensor(w, device=device).data
        layer.bias.data[...] = b if device == "cpu" else gg.tensor(b, device=device).data
    opt = gg.optim.SGD(model.parameters(), lr=LR)
    xt, yt = gg.tensor(x, device=device), gg.tensor(y, device=device)
    dev = gg.device(device)

    def step():
        loss = F.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return step, dev.synchronize


def torch_step(sizes, batch, device):
    import torch
    torch.set_num_threads(1)
    params, x, y = _init(sizes)
    layers = []
    for i, (w, b) in enumerate(params):
        lin = torch.nn.Linear(w.shape[1], w.shape[0])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(w))
            lin.bias.copy_(torch.from_numpy(b))
        layers.append(lin)
        if i < len(params) - 1:
            layers.append(torch.nn.ReLU())
    model = torch.nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    xt = torch.from_numpy(x).to(device)
    yt = torch.from_numpy(y).to(device)

    def step():
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync = torch.cuda.synchronize if device != "cpu" else (lambda: None)
    return step, sync


def floor_buffers(sizes, batch):
    """The NumPy floor's parameters, data and every buffer it preallocates."""
    params, x, y = _init(sizes)
    return types.SimpleNamespace(
        params=params, y=y,
        acts=[x] + [np.empty((batch, s), np.float32) for s in sizes[1:]],
        grads_h=[np.empty((batch, s), np.float32) for s in sizes[1:]],
        dws=[np.empty_like(w) for w, _ in params],
        dbs=[np.empty_like(b) for _, b in params],
        masks=[np.empty((batch, s), bool) for s in sizes[1:-1]],
        rows=np.arange(batch),
        row_max=np.empty((batch, 1), np.float32),
        row_sum=np.empty((batch, 1), np.float32))


def numpy_step(sizes, batch, device):
    b = floor_buffers(sizes, batch)
    params, y, acts, grads_h = b.params, b.y, b.acts, b.grads_h
    dws, dbs, masks, rows, row_max, row_sum = b.dws, b.dbs, b.masks, b.rows, b.row_max, \
        b.row_sum
    n_layers = len(params)

    def step():
        for i, (w, b) in enumerate(params):
            h = acts[i + 1]
            np.matmul(acts[i], w.T, out=h)
            h += b
            if i < n_layers - 1:
                np.maximum(h, 0, out=h)
        logits, g = acts[-1], grads_h[-1]
        np.max(logits, axis=1, keepdims=True, out=row_max)
        np.subtract(logits, row_max, out=g)
        np.exp(g, out=g)
        np.sum(g, axis=1, keepdims=True, out=row_sum)
        g /= row_sum
        g[rows, y] -= 1
        g *= 1.0 / batch
        for i in range(n_layers - 1, -1, -1):
            w, _ = params[i]
            g = grads_h[i]
            np.matmul(g.T, acts[i], out=dws[i])
            np.sum(g, axis=0, out=dbs[i])
            if i:
                gin = grads_h[i - 1]
                np.matmul(g, w, out=gin)
                np.greater(acts[i], 0, out=masks[i - 1])
                gin *= masks[i - 1]
        for (w, b), dw, db in zip(params, dws, dbs):
            dw *= LR
            w -= dw
            db *= LR
            b -= db
    return step, lambda: None


IMPLS = {"gpugrad": gpugrad_step, "torch": torch_step, "numpy": numpy_step}


def measure(impl, config, device, steps):
    sizes, batch = CONFIGS[config]
    CONFIG_BATCH[0] = batch
    step, sync = IMPLS[impl](sizes, batch, device)
    for _ in range(3):
        step()
    sync()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default="tiny,medium,large")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"seconds": measure(args.child, args.config, args.device,
                                             args.steps)}))
        return
    impls = ["gpugrad"] + (["torch"] if _harness.has_module("torch") else [])
    if args.device == "cpu":
        impls.append("numpy")
    table = {}
    for config in args.configs.split(","):
        samples = _harness.alternate(__file__, impls,
                                     ["--config", config, "--device", args.device,
                                      "--steps", str(args.steps)], args.rounds,
                                     {"GPUGRAD_DEVICE": args.device.split(":")[0]})
        table[config] = _harness.median_of(samples, "seconds")
    print(f"MLP training step on {args.device}, median ms of {args.rounds} alternating "
          f"processes x {args.steps} steps, one thread each")
    header = f"{'config':8s}" + "".join(f"{i:>10s}" for i in impls)
    ref = "numpy" if args.device == "cpu" else "torch"
    if ref in impls:
        header += f"  gpugrad/{ref}"
    if args.device == "cpu" and "torch" in impls:
        header += "  gpugrad/torch"
    print(header)
    for config, med in table.items():
        line = f"{config:8s}" + "".join(f"{med[i] * 1e3:10.3f}" for i in impls)
        if ref in med:
            line += f"  {med['gpugrad'] / med[ref]:13.2f}"
        if args.device == "cpu" and "torch" in med:
            line += f"  {med['gpugrad'] / med['torch']:13.2f}"
        print(line)
    _harness.write_json(args.json or f"bench/mlp_train_{args.device.split(':')[0]}.json",
                        dict(_harness.machine(), device=args.device,
                             ms={c: {k: v * 1e3 for k, v in m.items()}
                                 for c, m in table.items()}))


if __name__ == "__main__":
    main()
