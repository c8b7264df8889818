"""Derivatives that are arrays of their own (a sign, a routing weight, a mask, a zero) as
ops: they run through ``dev.run`` like every kernel, so that gg.compile records them and
replays them into planned buffers (an array computed beside the kernels would be frozen
into the recording). Each is piecewise constant in its inputs: its own derivative is zero,
and higher derivatives through it add nothing."""
from __future__ import annotations

from .._autograd.graph import Op, apply, primitive
from ._common import elementwise_cost, raw


class _Derivative(Op):
    cost = elementwise_cost(1)

    def vjp(self, g, ins, out, p, needs):
        return (None,) * len(needs)

    def jvp(self, ts, ins, out, p):
        return None


@primitive
class SignOf(_Derivative):
    """sign(x) as NumPy gives it (0 at 0, NaN at NaN): the derivative of |x|"""
    name = "sign_of"

    def forward(self, dev, p, x, out=None):
        return dev.xp.sign(x, out=out)


@primitive
class PickWeight(_Derivative):
    """1 where a wins (a > b for maximum, a < b for minimum), 0.5 on a tie, else 0, in
    ``dtype``: the derivative of maximum or minimum in a"""
    name = "pick_weight"
    params = ("larger", "dtype")

    def forward(self, dev, p, a, b, out=None):
        xp = dev.xp
        wins = xp.greater(a, b) if p.larger else xp.less(a, b)
        w = wins.astype(p.dtype) + 0.5 * xp.equal(a, b).astype(p.dtype)
        w = w.astype(p.dtype, copy=False)
        if out is None:
            return w
        out[...] = w
        return out


@primitive
class InsideMask(_Derivative):
    """1 where lo <= x <= hi (either bound may be None), else 0 (NaN outside): the
    derivative of clip"""
    name = "inside_mask"
    params = ("min", "max")

    def forward(self, dev, p, x, out=None):
        inside = x == x
        if p.min is not None:
            inside &= x >= p.min
        if p.max is not None:
            inside &= x <= p.max
        if out is None:
            return inside.astype(x.dtype)
        out[...] = inside
        return out


@primitive
class PeakShare(_Derivative):
    """1 / (the number of ties) where x equals its reduction's peak, else 0: the
    derivative of max, min and amax over ``axes`` (ties share the gradient)"""
    name = "peak_share"
    params = ("axes", "shape")

    def forward(self, dev, p, x, peak, out=None):
        hit = (x == peak.reshape(p.shape)).astype(x.dtype)
        share = hit / hit.sum(axis=p.axes, keepdims=True)
        if out is None:
            return share
        out[...] = share
        return out


@primitive
class ZerosOf(_Derivative):
    """Zeros shaped and typed as x: the derivative of a piecewise-constant function"""
    name = "zeros_of"

    def forward(self, dev, p, x, out=None):
        if out is None:
            return dev.xp.zeros_like(x)
        out[...] = 0
        return out


def sign_of(x):
    return apply(SignOf, (x,))


def pick_weight(a, b, larger, like):
    return apply(PickWeight, (a, b), PickWeight.Params(bool(larger), raw(like).dtype))


def inside_mask(x, lo, hi):
    return apply(InsideMask, (x,), InsideMask.Params(lo, hi))


def peak_share(x, peak, axes, keepdims_shape):
    return apply(PeakShare, (x, peak), PeakShare.Params(tuple(axes), tuple(keepdims_shape)))


def zeros_of(x):
    return apply(ZerosOf, (x,))
