"""A roofline picture of a profile: each op against the device's calibrated ceilings."""
from __future__ import annotations

from ._atomic import atomic_path

MARKERS = {"forward": "o", "backward": "^", "optimizer": "s"}


def require_matplotlib():
    """matplotlib.pyplot on the Agg backend, or an error saying how to install it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("the roofline needs matplotlib: pip install matplotlib "
                           "(or pip install \".[roofline]\")") from None
    return plt


def plot_roofline(prof, path):
    """Draw every (op, phase) group of ``prof`` as achieved GFLOP/s against arithmetic
    intensity, under the memory and compute ceilings; write a PNG atomically.
    Needs matplotlib (``pip install matplotlib``)."""
    plt = require_matplotlib()
    import numpy as np

    from .profiler import calibrate
    groups = prof.key_averages()
    if not groups:
        raise ValueError("roofline: the profile recorded no op")
    device = next(iter(groups))[2]
    peak = calibrate(device)
    fig, ax = plt.subplots(figsize=(8, 5.5))
    intensities = np.logspace(-3, 3, 200)
    ax.loglog(intensities, np.minimum(peak["gemm_gflops"], intensities * peak["copy_gbps"]),
              color="black", lw=2, label=f"ceilings ({peak['copy_gbps']:.0f} GB/s, "
                                          f"{peak['gemm_gflops']:.0f} GFLOP/s)")
    for (name, phase, _), g in groups.items():
        if g["total"] <= 0 or g["flops"] <= 0 or g["bytes"] <= 0:
            continue
        ai = g["flops"] / g["bytes"]
        rate = g["flops"] / g["total"] / 1e9
        ax.scatter([ai], [rate], marker=MARKERS.get(phase, "x"), s=40)
        ax.annotate(f"{name} ({phase[0]})", (ai, rate), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    ax.set_xlabel("arithmetic intensity (FLOP per byte)")
    ax.set_ylabel("achieved GFLOP/s")
    ax.set_title(f"gpugrad ops on {device} (circles forward, triangles backward, "
                 "squares optimizer)")
    ax.legend(loc="lower right")
    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=120)
    finally:
        plt.close(fig)
