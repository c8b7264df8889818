"""Shared by the benchmarks: each implementation in its own process, every library
pinned to one thread, processes alternating, medians quoted, JSON written atomically."""
from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PIN = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def child_env(extra=None):
    env = dict(os.environ, **PIN)
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + ([env["PYTHONPATH"]]
                                                  if env.get("PYTHONPATH") else []))
    env.update(extra or {})
    return env


def has_module(name):
    try:
        __import__(name)
        return True
    except ImportError:
        return False


def alternate(script, impls, child_args, rounds, env_extra=None):
    """{impl: [result dict per round]}: one process per impl per round, in turn."""
    samples = {impl: [] for impl in impls}
    for _ in range(rounds):
        for impl in impls:
            out = subprocess.run([sys.executable, script, "--child", impl, *child_args],
                                 env=child_env(env_extra), capture_output=True, text=True)
            if out.returncode != 0:
                raise RuntimeError(f"{impl} child failed:\n{out.stderr[-3000:]}")
            samples[impl].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return samples


def median_of(samples, key):
    return {impl: statistics.median(r[key] for r in rs) for impl, rs in samples.items()}


def machine():
    return {"machine": platform.node(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "date": time.strftime("%Y-%m-%d")}


def write_json(path, payload):
    sys.path.insert(0, ROOT)
    from gpugrad._atomic import write_atomic
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    write_atomic(path, json.dumps(payload, indent=1))
