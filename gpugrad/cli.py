"""The ``gpugrad`` command: train, profile, graph, info."""
from __future__ import annotations

import argparse
import json
import platform
import sys


def _cmd_train(args):
    from .training import train
    hidden = tuple(int(h) for h in args.hidden.split(",") if h.strip()) if args.hidden else ()
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    summary = train(hidden=hidden, epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                    optimizer=args.optimizer, device=args.device, data_dir=args.data,
                    save_path=args.save, seed=args.seed, progress=not args.no_progress,
                    log=log)
    if args.json:
        print(json.dumps(summary))
    return 0


def _cmd_info(args):
    import numpy as np

    from . import __version__, _device
    print(f"gpugrad {__version__}")
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    print(f"default device: {_device.default_device()}")
    if _device.cuda_available():
        from . import _cuda
        for line in _cuda.describe():
            print(line)
    else:
        print("cuda: not available (CuPy missing, no driver, or GPUGRAD_DEVICE=cpu)")
    return 0


def _cmd_profile(args):
    from . import _device, data, nn, optim, profiler
    from .nn import functional as F
    dev = _device.device(args.device) if args.device else _device.default_device()
    train, _ = data.mnist()
    hidden = [int(h) for h in args.hidden.split(",") if h.strip()]
    model = nn.MLP([train.images.shape[1], *hidden, 10], device=dev)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loader = iter(data.DataLoader(train, args.batch_size, device=dev))

    def step():
        x, y = next(loader)
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    step()                      # warm-up: kernel compilation, first allocations
    dev.synchronize()
    with profiler.profile() as prof:
        for _ in range(args.steps):
            step()
    print(f"{args.steps} training steps of MLP {model.sizes}, batch {args.batch_size}, on {dev}")
    print(prof.table(sort_by=args.sort_by, top=args.top))
    if args.trace:
        prof.export_chrome_trace(args.trace)
        print(f"wrote trace {args.trace} (open in https://ui.perfetto.dev or chrome://tracing)")
    if args.roofline:
        from .roofline import plot_roofline
        plot_roofline(prof, args.roofline)
        print(f"wrote roofline {args.roofline}")
    return 0


def _cmd_graph(args):
    import shutil
    import subprocess

    from . import creation, viz
    from .nn import functional as F
    x = creation.randn(4, 3)
    w = creation.randn(2, 3, requires_grad=True)
    b = creation.zeros(2, requires_grad=True)
    loss = F.cross_entropy(F.linear(x, w, b, "tanh"), creation.tensor([0, 1, 1, 0]))
    dot = viz.to_dot(loss, backward=args.backward)
    if args.output.endswith(".dot") or not shutil.which("dot"):
        path = args.output if args.output.endswith(".dot") else args.output + ".dot"
        with open(path, "w") as fh:
            fh.write(dot)
        note = "" if shutil.which("dot") else " (Graphviz's dot is not installed: wrote DOT)"
        print(f"wrote {path}{note}")
        return 0
    subprocess.run(["dot", "-Tsvg", "-o", args.output], input=dot, text=True, check=True)
    print(f"wrote {args.output}")
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="gpugrad", description="gpugrad command line")
    sub = parser.add_subparsers(dest="command", required=True)

    tr = sub.add_parser("train", help="train an MLP on MNIST (bundled 5k subset by default)")
    tr.add_argument("--hidden", default="256,128", help="hidden sizes, comma separated")
    tr.add_argument("--epochs", type=int, default=15)
    tr.add_argument("--batch-size", type=int, default=128)
    tr.add_argument("--lr", type=float, default=1e-3)
    tr.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    tr.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: best)")
    tr.add_argument("--data", default=None, metavar="DIR", help="folder with MNIST IDX files")
    tr.add_argument("--save", default=None, metavar="PATH", help="write a checkpoint here")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--json", action="store_true", help="print a JSON summary as last line")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.set_defaults(fn=_cmd_train)

    pr = sub.add_parser("profile", help="profile a few training steps of the default MLP")
    pr.add_argument("--steps", type=int, default=5)
    pr.add_argument("--hidden", default="256,128")
    pr.add_argument("--batch-size", type=int, default=128)
    pr.add_argument("--device", default=None)
    pr.add_argument("--sort-by", default="total", choices=["total", "calls", "flops", "bytes",
                                                          "mean"])
    pr.add_argument("--top", type=int, default=20)
    pr.add_argument("--trace", default=None, metavar="PATH", help="write a Chrome trace")
    pr.add_argument("--roofline", default=None, metavar="PATH", help="draw a roofline PNG")
    pr.set_defaults(fn=_cmd_profile)

    gr = sub.add_parser("graph", help="render an example graph (SVG with Graphviz)")
    gr.add_argument("--output", default="graph.svg")
    gr.add_argument("--backward", action="store_true", help="the backward graph")
    gr.set_defaults(fn=_cmd_graph)

    info = sub.add_parser("info", help="versions, devices and kernels")
    info.set_defaults(fn=_cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"gpugrad {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
