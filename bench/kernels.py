"""Achieved bandwidth of each CUDA kernel against a measured device-to-device copy.

    python bench/kernels.py [--sizes 1,4,16,64,256] (millions of float32 elements)

Bytes are the fewest each kernel must move (every input read once, every output
written once); times are medians of CUDA-event-timed repeats after a warm-up. Inputs
of 4 MB sit in the 50 MB L2 cache, so only the large sizes measure memory.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import _harness  # noqa: E402

import gpugrad as gg  # noqa: E402


def _time(cp, fn, repeat):
    fn()
    cp.cuda.Device().synchronize()
    start, stop = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeat):
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, stop) / 1e3)
    return statistics.median(times)


def cases(dev, n):
    cp, k = dev.xp, dev.kernels
    rng = cp.random.RandomState(0)
    x = rng.standard_normal(n, dtype=np.float32)
    g = rng.standard_normal(n, dtype=np.float32)
    out = cp.empty_like(x)
    y = k.relu_fwd(x)
    cols = 1024
    rows = n // cols
    xb = x[:rows * cols].reshape(rows, cols)
    ob = out[:rows * cols].reshape(rows, cols)
    b = rng.standard_normal(cols, dtype=np.float32)
    classes = 1000
    zrows = n // classes
    z = x[:zrows * classes].reshape(zrows, classes)
    zo = out[:zrows * classes].reshape(zrows, classes)
    labels = rng.randint(0, classes, size=zrows).astype(np.int64)
    gscale = cp.asarray(np.float32(1.0))
    m, v = cp.zeros_like(x), cp.ones_like(x)
    f = 4  # bytes per float32
    return [
        ("copy (reference)", lambda: cp.copyto(out, x), 2 * n * f),
        ("relu_fwd", lambda: k.relu_fwd(x, out=out), 2 * n * f),
        ("relu_bwd", lambda: k.relu_bwd(g, y, out=out), 3 * n * f),
        ("gelu_fwd", lambda: k.gelu_fwd(x, out=out), 2 * n * f),
        ("gelu_bwd", lambda: k.gelu_bwd(g, x, out=out), 3 * n * f),
        ("tanh_bwd", lambda: k.tanh_bwd(g, y, out=out), 3 * n * f),
        ("sigmoid_fwd", lambda: k.sigmoid_fwd(x, out=out), 2 * n * f),
        ("bias_relu_fwd", lambda: k.bias_act_fwd(xb, b, "relu", out=ob), 2 * rows * cols * f),
        ("bias_grad", lambda: k.bias_grad(xb), rows * cols * f),
        ("softmax_fwd (1000 cols)", lambda: k.softmax_fwd(z, out=zo), 2 * zrows * classes * f),
        ("softmax_xent_fwd", lambda: k.softmax_xent_fwd(z, labels, True),
         zrows * classes * f + zrows * 8),
        ("softmax_xent_bwd", lambda: k.softmax_xent_bwd(z, labels, gscale, True, out=zo),
         2 * zrows * classes * f + zrows * 8),
        ("adam_update", lambda: k.adam_update(x, g, m, v, 1e-3, 0.9, 0.999, 1e-8, 0.0, 1, False),
         7 * n * f),
        ("cupy x*(y>0) (unfused)", lambda: cp.multiply(g, y > 0, out=out), 3 * n * f),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,4,16,64,256")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--json", default="bench/kernels.json")
    args = parser.parse_args()
    if not gg.cuda_available():
        print("bench/kernels.py: no CUDA device, nothing to measure")
        return
    dev = gg.device("cuda")
    cp = dev.xp
    name = cp.cuda.runtime.getDeviceProperties(dev.index)["name"]
    name = name.decode() if isinstance(name, bytes) else name
    results = []
    for millions in (int(s) for s in args.sizes.split(",")):
        n = millions * 2**20
        copy_bw = None
        for label, fn, nbytes in cases(dev, n):
            seconds = _time(cp, fn, args.repeat)
            bw = nbytes / seconds / 1e9
            if copy_bw is None:
                copy_bw = bw
            results.append({"elements": n, "kernel": label, "ms": seconds * 1e3, "GBps": bw,
                            "of_copy": bw / copy_bw})
        cp.get_default_memory_pool().free_all_blocks()
    print(f"kernel bandwidth on {name} (float32; GB/s counts bytes read + written)")
    print(f"{'elements':>9}  {'kernel':28s} {'ms':>8} {'GB/s':>8} {'% copy':>7}")
    for r in results:
        print(f"{r['elements'] // 2**20:>8}M  {r['kernel']:28s} {r['ms']:8.3f} {r['GBps']:8.0f} "
              f"{100 * r['of_copy']:6.0f}%")
    _harness.write_json(args.json, {"device": name, "results": results})


if __name__ == "__main__":
    main()
