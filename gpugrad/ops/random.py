"""Random ops: dropout, drawn by a counter-based generator (Philox4x32-10)."""
from __future__ import annotations

from .._autograd.graph import Linear, apply, primitive
from ._common import elementwise_cost


@primitive
class Dropout(Linear):
    """out = x * keep / (1 - p), keep drawn by Philox from (seed, offset, element): the
    mask is a function of its parameters, so the VJP redraws it instead of saving it"""
    name = "dropout"
    params = ("p", "seed", "offset")
    cost = elementwise_cost(24)

    def forward(self, dev, p, x, out=None):
        return dev.kernels.dropout(x, p.seed, p.offset, p.p, 1.0 / (1.0 - p.p), out=out)

    def vjp(self, g, ins, out, p, needs):
        return (apply(self, (g,), p),)


def dropout(x, p, seed=None, offset=None):
    """x with each element zeroed with probability p (0 <= p < 1) and the rest scaled by
    1 / (1 - p). Without ``seed`` and ``offset`` the mask is the next draw of the device's
    counter-based stream (seeded by ``gg.manual_seed``); with them it is that draw."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout: p must be in [0, 1), got {p}")
    if seed is None or offset is None:
        stream = x.device.generator.philox
        seed, offset = stream.seed, stream.take()
    return apply(Dropout, (x,), Dropout.Params(float(p), int(seed) % 2**64, int(offset) % 2**64))
