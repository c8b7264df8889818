"""The ``gpugrad`` command: train, info (and profile, graph)."""
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
        cupy = _device._import_cupy()
        count = cupy.cuda.runtime.getDeviceCount()
        print(f"cupy {cupy.__version__}, {count} CUDA device(s)")
        for i in range(count):
            props = cupy.cuda.runtime.getDeviceProperties(i)
            name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
            print(f"  cuda:{i} {name}, {props['totalGlobalMem'] / 2**30:.1f} GiB")
        from .kernels import cuda
        print("kernels compiled: " + ", ".join(cuda.compiled_names(_device.device("cuda"))))
    else:
        print("cuda: not available (CuPy missing, no driver, or GPUGRAD_DEVICE=cpu)")
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
