"""Time of one MLP training step compiled with ``gg.compile`` (recorded once, replayed from
a static memory plan) against the same step eager and the hand-written NumPy floor of
``mlp_train.py``; and the medium step's memory plan.

    python bench/compile.py [--configs tiny,medium] [--rounds 5] [--steps 30]
    python bench/compile.py --device cuda [--memory-replays 10000]

On a GPU the references are PyTorch eager and PyTorch's own CUDA-graph replay of the same
step (``torch.cuda.graph``, whole-network capture, optimizer included), and the compiled
step's pool memory is read before and after ``--memory-replays`` further replays.

A step is forward, softmax cross-entropy, backward and a plain SGD update, as in
``mlp_train.py``. Each implementation runs in its own process with every library on one
thread; processes alternate and medians are compared, so the ratios come from one run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import _harness
import mlp_train

GOALS = {"tiny": 1.5, "medium": 1.0}     # compiled / NumPy floor, at most
GPU_GOALS = {"torch": 1 / 3, "torch_graph": 1.2}   # compiled / reference on a GPU, at most


def compiled_step(sizes, batch, device):
    import gpugrad as gg
    import gpugrad.nn.functional as F
    params, x, y = mlp_train._init(sizes)
    model = gg.nn.MLP(sizes, device=device)
    for layer, (w, b) in zip([m for m in model if isinstance(m, gg.nn.Linear)], params):
        layer.weight.data[...] = w if device == "cpu" else gg.tensor(w, device=device).data
        layer.bias.data[...] = b if device == "cpu" else gg.tensor(b, device=device).data
    opt = gg.optim.SGD(model.parameters(), lr=mlp_train.LR)
    xt, yt = gg.tensor(x, device=device), gg.tensor(y, device=device)

    @gg.compile
    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    train_step(xt, yt)      # the recording
    compiled_step.plan = train_step.plan

    def step():
        train_step(xt, yt)
    return step, gg.device(device).synchronize


def torch_graph_step(sizes, batch, device):
    """PyTorch's whole-network CUDA-graph capture of the same step (its documented recipe:
    warm-up on a side stream, then capture forward, backward and optimizer.step)."""
    import torch
    params, x, y = mlp_train._init(sizes)
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
    opt = torch.optim.SGD(model.parameters(), lr=mlp_train.LR)
    xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            torch.nn.functional.cross_entropy(model(xt), yt).backward()
            opt.step()
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    with torch.cuda.graph(graph):
        loss = torch.nn.functional.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
    return graph.replay, torch.cuda.synchronize


IMPLS = {"compiled": compiled_step, "eager": mlp_train.gpugrad_step,
         "numpy": mlp_train.numpy_step, "torch": mlp_train.torch_step,
         "torch_graph": torch_graph_step}


def measure(impl, config, device, steps, memory_replays=0):
    sizes, batch = mlp_train.CONFIGS[config]
    mlp_train.CONFIG_BATCH[0] = batch
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
    result = {"seconds": statistics.median(times)}
    if impl == "compiled":
        plan = compiled_step.plan
        result.update(plan=str(plan), arena_bytes=plan.arena_bytes,
                      lower_bound_bytes=plan.lower_bound_bytes,
                      peak_eager_bytes=plan.peak_eager_bytes, kernels=plan.kernels,
                      graphs=getattr(plan, "graphs", 0))
        if memory_replays:
            import gpugrad as gg
            before = gg.memory.stats(device)["current_bytes"]
            for _ in range(memory_replays):
                step()
            sync()
            result.update(memory_before=before, memory_replays=memory_replays,
                          memory_after=gg.memory.stats(device)["current_bytes"])
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--configs", default="tiny,medium")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--config", help=argparse.SUPPRESS)
    parser.add_argument("--memory-replays", type=int, default=0)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.child, args.config, args.device, args.steps,
                                 args.memory_replays if args.child == "compiled" else 0)))
        return
    gpu = args.device != "cpu"
    impls = ["compiled", "eager"]
    if gpu:
        impls += ["torch", "torch_graph"] if _harness.has_module("torch") else []
    else:
        impls.append("numpy")
    ref = "numpy" if not gpu else ("torch" if "torch" in impls else "eager")
    table, plans = {}, {}
    for config in args.configs.split(","):
        samples = _harness.alternate(__file__, impls,
                                     ["--config", config, "--device", args.device,
                                      "--steps", str(args.steps),
                                      "--memory-replays", str(args.memory_replays)],
                                     args.rounds,
                                     {"GPUGRAD_DEVICE": args.device.split(":")[0]})
        table[config] = _harness.median_of(samples, "seconds")
        plans[config] = samples["compiled"][0]
    print(f"MLP training step on {args.device}, median ms of {args.rounds} alternating "
          f"processes x {args.steps} steps, one thread each")
    print(f"{'config':8s}" + "".join(f"{i:>10s}" for i in impls)
          + f"  compiled/{ref}  eager/{ref}  goal")
    for config, med in table.items():
        goal = GOALS.get(config) if ref == "numpy" else GPU_GOALS.get(ref)
        ratio = med["compiled"] / med[ref]
        verdict = "" if goal is None else f"<= {goal:.2f}: {'met' if ratio <= goal else 'NOT met'}"
        print(f"{config:8s}" + "".join(f"{med[i] * 1e3:10.3f}" for i in impls)
              + f"  {ratio:12.2f}  {med['eager'] / med[ref]:9.2f}  {verdict}")
        if "torch_graph" in med:
            graph_ratio = med["compiled"] / med["torch_graph"]
            print(f"{'':8s}  compiled / torch CUDA graph = {graph_ratio:.2f} (goal <= 1.2: "
                  f"{'met' if graph_ratio <= 1.2 else 'NOT met'})")
    for config, plan in plans.items():
        bound = plan["lower_bound_bytes"]
        print(f"\n{config}: {plan['plan']}")
        if gpu:
            print(f"{config}: {plan['graphs']} CUDA graph launch(es) per replay")
        if plan.get("memory_replays"):
            print(f"{config}: pool bytes {plan['memory_before']} before and "
                  f"{plan['memory_after']} after {plan['memory_replays']} more replays")
        if bound:
            print(f"{config}: arena / liveness lower bound = {plan['arena_bytes'] / bound:.3f} "
                  "(goal <= 1.2 for medium)")
    _harness.write_json(args.json or f"bench/compile_{args.device.split(':')[0]}.json",
                        dict(_harness.machine(), device=args.device,
                             ms={c: {k: v * 1e3 for k, v in m.items()}
                                 for c, m in table.items()},
                             plans={c: {k: v for k, v in p.items() if k != "seconds"}
                                    for c, p in plans.items()}))


if __name__ == "__main__":
    main()
