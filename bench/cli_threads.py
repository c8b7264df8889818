"""Wall time of `gpugrad train` (the README's Quick start run) against its number of BLAS
threads, on an idle machine or under background load.

    python bench/cli_threads.py [--threads 1,2,0] [--rounds 5] [--load 0]

Each setting runs `python -m gpugrad train --no-progress --json --threads T` in its own
process (the BLAS library left unpinned by the environment, unlike the other benchmarks);
settings alternate and medians are quoted. `--load K` keeps K busy Python loops running
meanwhile, as on a shared machine. `--threads 0` is the BLAS library's own choice.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import _harness

BUSY_LOOP = "while True: pass"


def run_once(threads, extra):
    env = dict(os.environ, GPUGRAD_DEVICE="cpu", PYTHONPATH=_harness.ROOT)
    for var in _harness.PIN:
        env.pop(var, None)
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "gpugrad", "train", "--no-progress", "--json",
                          "--threads", str(threads), *extra], env=env, capture_output=True,
                         text=True)
    wall = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"gpugrad train --threads {threads} failed:\n{out.stderr[-3000:]}")
    summary = json.loads(out.stdout.strip().splitlines()[-1])
    return {"wall": wall, "train": summary["train_seconds"],
            "accuracy": summary["test_accuracy"]}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2,0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--load", type=int, default=0, help="busy background processes")
    parser.add_argument("extra", nargs="*", help="more `gpugrad train` arguments")
    args = parser.parse_args()
    settings = [int(t) for t in args.threads.split(",")]
    load = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(args.load)]
    try:
        samples = {t: [] for t in settings}
        for _ in range(args.rounds):
            for t in settings:
                samples[t].append(run_once(t, args.extra))
    finally:
        for proc in load:
            proc.kill()
            proc.wait()
    print(json.dumps(_harness.machine()))
    print(f"background load: {args.load} busy process(es); {args.rounds} rounds, "
          f"os.cpu_count() = {os.cpu_count()}")
    print("| --threads | wall s (median) | wall s (min-max) | training s (median) | accuracy |")
    print("| --- | --- | --- | --- | --- |")
    for t, rs in samples.items():
        walls = [r["wall"] for r in rs]
        print(f"| {t if t else '0 (BLAS default)'} | {statistics.median(walls):.2f} | "
              f"{min(walls):.2f}-{max(walls):.2f} | "
              f"{statistics.median(r['train'] for r in rs):.2f} | "
              f"{statistics.median(r['accuracy'] for r in rs):.4f} |")


if __name__ == "__main__":
    main()
