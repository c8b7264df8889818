"""The ``gpugrad`` command: train, profile, graph, info."""
from __future__ import annotations

import argparse
import contextlib
import itertools
import json
import math
import os
import platform
import sys

# -- argument types: a bad value is refused by the parser, naming the flag and what it wants


def _int_at_least(minimum, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"expected {what}, got '{text}'")
        return value
    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "a non-negative integer")


def _positive_float(text):
    try:
        value = float(text)
    except ValueError:
        value = None
    if value is None or not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got '{text}'")
    return value


def _layer_sizes(text):
    """'256,128' -> (256, 128); '' -> () (no hidden layer)."""
    parts = [p.strip() for p in text.split(",")] if text.strip() else []
    if not all(p.isdigit() and int(p) > 0 for p in parts):
        raise argparse.ArgumentTypeError(
            f"expected positive integers separated by commas (e.g. 256,128), got '{text}'")
    return tuple(int(p) for p in parts)


def _existing_folder(text):
    if not os.path.exists(text):
        raise argparse.ArgumentTypeError(f"folder '{text}' does not exist")
    if not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"'{text}' is a file; expected a folder")
    return text


def _output_file(text):
    """A path a file can be written to: checked before any work, so that a long run does
    not end in an error about where its result should go."""
    folder = os.path.dirname(os.path.abspath(text))
    if not text or os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"'{text}' is a folder; expected a file path")
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(
            f"cannot write '{text}': folder '{folder}' does not exist")
    if not os.access(folder, os.W_OK):
        raise argparse.ArgumentTypeError(f"cannot write '{text}': folder '{folder}' is not "
                                         "writable")
    return text


def _blas_threads(n):
    """Limit the BLAS library's threads inside the block (0: leave its own choice). On the
    small matrices of these MLPs, BLAS threads cost more than they give (bench/RESULTS.md,
    "BLAS threads for gpugrad train")."""
    if not n:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=n, user_api="blas")


def _cmd_train(args):
    from .training import train
    log = (lambda msg: print(msg, file=sys.stderr)) if args.json else print
    with _blas_threads(args.threads):
        summary = train(hidden=args.hidden, epochs=args.epochs, batch_size=args.batch_size,
                        lr=args.lr, optimizer=args.optimizer, device=args.device,
                        data_dir=args.data, save_path=args.save, seed=args.seed,
                        progress=not args.no_progress, log=log, amp=args.amp,
                        compiled=args.compile, distributed=args.distributed)
    if args.json and summary.get("rank", 0) == 0:
        print(json.dumps(summary))
    return 0


def _cmd_info(args):
    import numpy as np

    from . import __version__, _device
    print(f"gpugrad {__version__}")
    print(f"python {platform.python_version()}, numpy {np.__version__}")
    from . import _cuda
    count, why_none = _cuda.availability()
    try:
        print(f"default device: {_device.default_device()}")
    except (ValueError, RuntimeError):
        asked = os.environ.get("GPUGRAD_DEVICE", "")
        print(f"default device: none usable (GPUGRAD_DEVICE={asked} asks for a device that "
              "is not available; see below)")
    if count:
        for line in _cuda.describe():
            print(line)
    else:
        print(f"cuda: not available ({why_none})")
    return 0


def _cmd_profile(args):
    from . import _device, data, nn, optim, profiler
    from .nn import functional as F
    if args.roofline:
        from .roofline import require_matplotlib
        require_matplotlib()    # before the run, not after it
    dev = _device.device(args.device) if args.device else _device.default_device()
    train, _ = data.mnist()
    model = nn.MLP([train.images.shape[1], *args.hidden, 10], device=dev)
    opt = optim.Adam(model.parameters(), lr=1e-3)
    loader = data.DataLoader(train, args.batch_size, device=dev)
    batches = (batch for _ in itertools.count() for batch in loader)    # epoch after epoch

    def train_step(x, y):
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        return loss
    if args.compile:
        from ._compile import compile as compile_step
        train_step = compile_step(train_step)     # the warm-up records; the profile replays

    def step():
        train_step(*next(batches))
    # the table's ceilings are calibrated with as many BLAS threads as the steps ran with
    with _blas_threads(args.threads):
        step()                  # warm-up: kernel compilation, first allocations
        dev.synchronize()
        with profiler.profile() as prof:
            for _ in range(args.steps):
                step()
        print(f"{args.steps} training steps of MLP {model.sizes}, batch {args.batch_size}, "
              f"on {dev}" + (", compiled (replays of one recording)" if args.compile else ""))
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
    from ._atomic import write_atomic
    from .nn import functional as F
    x = creation.randn(4, 3)
    w = creation.randn(2, 3, requires_grad=True)
    b = creation.zeros(2, requires_grad=True)
    loss = F.cross_entropy(F.linear(x, w, b, "tanh"), creation.tensor([0, 1, 1, 0]))
    dot = viz.to_dot(loss, backward=args.backward)
    stem, ext = os.path.splitext(args.output)
    if ext == ".dot" or not shutil.which("dot"):
        path = stem + ".dot"
        write_atomic(path, dot)
        if ext == ".dot":
            print(f"wrote {path}")
        else:
            print(f"wrote {path}: Graphviz's dot is not installed, so no {ext[1:] or 'svg'}; "
                  f"render it with: dot -T{ext[1:] or 'svg'} {path} -o {args.output}")
        return 0
    subprocess.run(["dot", f"-T{ext[1:] or 'svg'}", "-o", args.output], input=dot, text=True,
                   check=True)
    print(f"wrote {args.output}")
    return 0


class _Parser(argparse.ArgumentParser):
    """Usage errors as one line that names the flag, exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser():
    from .training import DEFAULT_LR
    parser = _Parser(prog="gpugrad", description="gpugrad command line")
    sub = parser.add_subparsers(dest="command", required=True)
    threads_help = ("BLAS threads on the CPU; 0 leaves the BLAS library's own choice "
                    "(default: %(default)s, the fastest for these model sizes)")

    tr = sub.add_parser("train", help="train an MLP on MNIST (bundled 5k subset by default)")
    tr.add_argument("--hidden", type=_layer_sizes, metavar="SIZES", default="256,128",
                    help="hidden layer sizes, comma separated (default: %(default)s)")
    tr.add_argument("--epochs", type=_positive_int, metavar="N", default=15,
                    help="passes over the training set (default: %(default)s)")
    tr.add_argument("--batch-size", type=_positive_int, metavar="N", default=128,
                    help="samples per step (default: %(default)s)")
    tr.add_argument("--lr", type=_positive_float, default=None,
                    help="learning rate (default: " + ", ".join(
                        f"{lr:g} for {name}" for name, lr in DEFAULT_LR.items()) + ")")
    tr.add_argument("--optimizer", default="adam", choices=list(DEFAULT_LR),
                    help="the update rule (default: %(default)s)")
    tr.add_argument("--device", default=None,
                    help="cpu, cuda or cuda:N (default: cuda when usable, else cpu)")
    tr.add_argument("--data", type=_existing_folder, default=None, metavar="DIR",
                    help="folder with the MNIST IDX files (default: the bundled subset)")
    tr.add_argument("--save", type=_output_file, default=None, metavar="PATH",
                    help="write a checkpoint here (default: none)")
    tr.add_argument("--seed", type=_non_negative_int, metavar="N", default=0,
                    help="random seed (default: %(default)s)")
    tr.add_argument("--threads", type=_non_negative_int, metavar="N", default=1, help=threads_help)
    tr.add_argument("--amp", default=None, choices=["bf16", "fp16"],
                    help="mixed precision: matmuls in bfloat16 or float16 under autocast "
                         "(fp16 with a GradScaler; default: off, float32)")
    tr.add_argument("--json", action="store_true", help="print a JSON summary as last line")
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--compile", action="store_true",
                    help="run the training step through gg.compile (recorded once, replayed "
                    "from a static memory plan)")
    tr.add_argument("--distributed", action="store_true",
                    help="one of N processes of an MPI launch (mpiexec -n N gpugrad train "
                         "--distributed): --batch-size stays the global batch")
    tr.set_defaults(fn=_cmd_train)

    pr = sub.add_parser("profile", help="profile a few training steps of the default MLP")
    pr.add_argument("--steps", type=_positive_int, metavar="N", default=5,
                    help="training steps profiled, after one warm-up step (default: "
                         "%(default)s)")
    pr.add_argument("--hidden", type=_layer_sizes, metavar="SIZES", default="256,128",
                    help="hidden layer sizes, comma separated (default: %(default)s)")
    pr.add_argument("--batch-size", type=_positive_int, metavar="N", default=128,
                    help="samples per step (default: %(default)s)")
    pr.add_argument("--device", default=None,
                    help="cpu, cuda or cuda:N (default: cuda when usable, else cpu)")
    pr.add_argument("--sort-by", default="total", choices=["total", "calls", "flops", "bytes",
                                                          "mean"],
                    help="table order (default: %(default)s)")
    pr.add_argument("--top", type=_positive_int, metavar="N", default=20,
                    help="table rows (default: %(default)s)")
    pr.add_argument("--threads", type=_non_negative_int, metavar="N", default=1, help=threads_help)
    pr.add_argument("--compile", action="store_true",
                    help="profile replays of the step compiled with gg.compile")
    pr.add_argument("--trace", type=_output_file, default=None, metavar="PATH",
                    help="write a Chrome trace (default: none)")
    pr.add_argument("--roofline", type=_output_file, default=None, metavar="PATH",
                    help="draw a roofline PNG; needs matplotlib (default: none)")
    pr.set_defaults(fn=_cmd_profile)

    gr = sub.add_parser("graph", help="render an example graph (SVG with Graphviz)")
    gr.add_argument("--output", type=_output_file, default="graph.svg",
                    help="the picture; .dot writes DOT text (default: %(default)s)")
    gr.add_argument("--backward", action="store_true", help="the backward graph")
    gr.set_defaults(fn=_cmd_graph)

    info = sub.add_parser("info", help="versions, devices and kernels")
    info.set_defaults(fn=_cmd_info)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (ValueError, OSError, RuntimeError) as err:
        print(f"gpugrad {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
