"""Kernel-throughput profiling: every op's forward and backward call, timed on its device,
with FLOPs and bytes from the op's cost model, against the device's measured ceilings.

>>> import gpugrad as gg
>>> x = gg.randn(64, 64, requires_grad=True)
>>> with gg.profiler.profile() as prof:
...     (x @ x).tanh().sum().backward()
>>> sorted({e.name for e in prof.events})[:2]
['matmul', 'sum']
"""
import collections
import dataclasses
import json
import time

import numpy as np

from . import _atomic, _device
from ._autograd import graph as _graph
from ._autograd.mode import state as _state

__all__ = ["profile", "Event", "PHASES", "active", "calibrate"]


@dataclasses.dataclass
class Event:
    """One kernel call: what ran, where, for which phase, how long, how much work."""
    name: str
    phase: str                 # "forward", "backward", "optimizer", "communication"
    shapes: tuple
    dtype: str
    device: str
    start: float               # seconds since the profile opened (host clock at launch)
    duration: float = 0.0      # seconds on the device
    flops: int = 0
    bytes: int = 0
    memory: int = 0            # live bytes on the device after the call
    _marks: tuple = dataclasses.field(default=None, repr=False)

    @property
    def gflops(self):
        return self.flops / self.duration / 1e9 if self.duration > 0 else 0.0

    @property
    def gbps(self):
        return self.bytes / self.duration / 1e9 if self.duration > 0 else 0.0


# the phases of a training step, each its own lane in the Chrome trace; "communication"
# holds the collectives of gpugrad.distributed (DDP's all-reduces)
PHASES = ("forward", "backward", "optimizer", "communication")


def active():
    """The profile now recording, or None."""
    hook = _graph.profiler
    # detect_anomaly's checker also sits in the hook, in front of any profile
    return hook if hook is None or isinstance(hook, profile) else getattr(hook, "previous", None)


class profile:
    """Context manager recording every op call inside it, and the fused kernels that run
    outside the graph (optimizer updates, phase "optimizer"); see ``table`` and
    ``export_chrome_trace``. GPU durations come from CUDA events read when the profile
    closes: no host synchronisation per op."""

    def __init__(self, record_memory=True):
        self.events = []
        self.record_memory = record_memory
        self._t0 = None
        self._previous = None

    def __enter__(self):
        self._previous = _graph.profiler
        self._t0 = time.perf_counter()
        _graph.profiler = self
        return self

    def __exit__(self, *exc):
        _graph.profiler = self._previous
        for e in self.events:
            if e._marks is not None:
                dev, begin, end = e._marks
                e.duration = dev.elapsed(begin, end)
                e._marks = None
        return False

    # -- recording (called by apply for every op) ------------------------------------------
    def run(self, op, dev, p, arrays):
        shapes = tuple(tuple(a.shape) if hasattr(a, "shape") else () for a in arrays)
        data, marks = self._timed(op.name, dev, lambda: dev.run(op, p, arrays))
        flops, elements = op.cost(shapes, tuple(data.shape), p)
        self._record(op.name, "backward" if _state.in_backward else "forward", shapes,
                     str(data.dtype), dev, marks, int(flops),
                     int(elements) * data.dtype.itemsize)
        return data

    def kernel(self, name, phase, dev, launch, shapes, dtype, flops=0, nbytes=0):
        """Run ``launch()``, a kernel outside the graph (an optimizer's fused update), and
        record it as an event of ``phase``; returns what ``launch`` returns."""
        result, marks = self._timed(name, dev, launch)
        self._record(name, phase, tuple(tuple(s) for s in shapes), str(dtype), dev, marks,
                     int(flops), int(nbytes))
        return result

    def span(self, name, dev, host_start, nbytes=0, seconds=None, marks=None):
        """Record work that is not a kernel of ours, a collective of
        ``gpugrad.distributed``, as an event of phase "communication": ``host_start`` is the
        host clock (``time.perf_counter()``) when it was launched, and its duration either
        ``seconds`` (timed on the host) or ``marks``, two marks of ``dev`` read when the
        profile closes."""
        event = Event(name, "communication", (), "", str(dev), host_start - self._t0,
                      bytes=int(nbytes))
        if marks is None:
            event.duration = float(seconds)
        else:
            event._marks = (dev, *marks)
        self.events.append(event)

    def _timed(self, name, dev, launch):
        dev.range_push(name)
        begin = dev.new_mark()
        try:
            result = launch()
        finally:
            end = dev.new_mark()
            dev.range_pop()
        return result, (begin, end)

    def _record(self, name, phase, shapes, dtype, dev, marks, flops, nbytes):
        begin, end = marks
        event = Event(name, phase, shapes, dtype, str(dev), dev.host_time(begin) - self._t0,
                      flops=flops, bytes=nbytes,
                      memory=dev.memory.stats()["current_bytes"] if self.record_memory else 0)
        event._marks = (dev, begin, end)     # read when the profile closes: no sync now
        self.events.append(event)

    # -- reports ----------------------------------------------------------------------------
    def key_averages(self):
        """Events grouped by (op, phase): calls, total and mean seconds, FLOPs, bytes."""
        groups = collections.defaultdict(lambda: {"calls": 0, "total": 0.0, "flops": 0, "bytes": 0})
        for e in self.events:
            g = groups[(e.name, e.phase, e.device)]
            g["calls"] += 1
            g["total"] += e.duration
            g["flops"] += e.flops
            g["bytes"] += e.bytes
        return groups

    def table(self, sort_by="total", top=20):
        """A text table like PyTorch's ``key_averages().table()``: per op and phase the
        calls, total and mean time, achieved GFLOP/s and GB/s, and their share of the
        device's calibrated peak."""
        groups = self.key_averages()
        keys = {"total": lambda kv: kv[1]["total"], "calls": lambda kv: kv[1]["calls"],
                "flops": lambda kv: kv[1]["flops"], "bytes": lambda kv: kv[1]["bytes"],
                "mean": lambda kv: kv[1]["total"] / kv[1]["calls"]}
        if sort_by not in keys:
            raise ValueError(f"table: sort_by must be one of {', '.join(keys)}, got '{sort_by}'")
        rows = sorted(groups.items(), key=keys[sort_by], reverse=True)[:top]
        total_time = sum(g["total"] for g in groups.values())
        peaks = {}
        header = (f"{'op':22s} {'phase':9s} {'calls':>6s} {'total ms':>9s} {'%':>5s} "
                  f"{'mean us':>8s} {'GFLOP/s':>9s} {'GB/s':>8s} {'%peak':>6s}")
        lines = [header, "-" * len(header)]
        for (name, phase, device), g in rows:
            if device not in peaks:
                peaks[device] = calibrate(device)
            peak = peaks[device]
            secs = g["total"]
            gflops = g["flops"] / secs / 1e9 if secs > 0 else 0.0
            gbps = g["bytes"] / secs / 1e9 if secs > 0 else 0.0
            share = max(gflops / peak["gemm_gflops"], gbps / peak["copy_gbps"]) * 100
            lines.append(f"{name[:22]:22s} {phase:9s} {g['calls']:6d} {secs * 1e3:9.3f} "
                         f"{100 * secs / total_time if total_time > 0 else 0.0:5.1f} "
                         f"{secs / g['calls'] * 1e6:8.1f} "
                         f"{gflops:9.2f} {gbps:8.2f} {share:6.1f}")
        if not self.events:
            lines.append("nothing recorded: no op or optimizer step ran inside the profile")
        else:
            lines.append(f"{len(self.events)} kernel calls, {total_time * 1e3:.3f} ms on the "
                         "devices; %peak: the larger of GFLOP/s over the measured GEMM rate "
                         "and GB/s over the measured copy bandwidth")
        return "\n".join(lines)

    def export_chrome_trace(self, path):
        """Write a trace that Perfetto and chrome://tracing open: a lane per phase
        (forward, backward, optimizer, communication) per device, and a memory counter
        track. Written atomically."""
        lanes = {phase: tid for tid, phase in enumerate(PHASES, start=1)}
        trace = []
        devices = sorted({e.device for e in self.events})
        for pid, device in enumerate(devices):
            trace.append({"ph": "M", "name": "process_name", "pid": pid,
                          "args": {"name": f"gpugrad {device}"}})
            present = {e.phase for e in self.events if e.device == device}
            for phase, tid in lanes.items():
                if phase not in present:
                    continue
                trace.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid,
                              "args": {"name": phase}})
        pids = {d: i for i, d in enumerate(devices)}
        for e in self.events:
            pid = pids[e.device]
            trace.append({"name": e.name, "cat": e.phase, "ph": "X", "pid": pid,
                          "tid": lanes[e.phase], "ts": e.start * 1e6,
                          "dur": max(e.duration * 1e6, 0.001),
                          "args": {"shapes": [list(s) for s in e.shapes], "dtype": e.dtype,
                                   "flops": e.flops, "bytes": e.bytes,
                                   "GFLOP/s": round(e.gflops, 3), "GB/s": round(e.gbps, 3)}})
            if self.record_memory and e.phase != "communication":
                trace.append({"name": "memory", "ph": "C", "pid": pid, "ts": e.start * 1e6,
                              "args": {"bytes": e.memory}})
        _atomic.write_atomic(path, json.dumps({"traceEvents": trace, "displayTimeUnit": "ms"}))


_calibration = {}


def calibrate(device=None, size_mb=64, gemm_n=1024):
    """Measured ceilings of a device: copy bandwidth (GB/s, bytes read + written) and
    float32 GEMM rate (GFLOP/s), each the best of a few runs; cached per device."""
    dev = _device.device(device) if device is not None else _device.default_device()
    key = str(dev)
    if key in _calibration:
        return _calibration[key]
    xp = dev.xp
    with dev.context():
        src = xp.ones(size_mb * 2**20 // 4, dtype=np.float32)
        dst = xp.empty_like(src)
        a = xp.ones((gemm_n, gemm_n), dtype=np.float32)
        b = xp.ones((gemm_n, gemm_n), dtype=np.float32)
        xp.copyto(dst, src)
        xp.matmul(a, b)

        def best(fn, repeat=5):
            times = []
            for _ in range(repeat):
                start = dev.new_mark()
                fn()
                stop = dev.new_mark()
                times.append(dev.elapsed(start, stop))
            return min(times)
        copy_s = best(lambda: xp.copyto(dst, src))
        gemm_s = best(lambda: xp.matmul(a, b))
    result = {"device": key, "copy_gbps": 2 * src.nbytes / copy_s / 1e9,
              "gemm_gflops": 2 * gemm_n ** 3 / gemm_s / 1e9}
    _calibration[key] = result
    return result
