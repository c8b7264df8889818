"""Derivatives that are arrays of their own (a sign, a routing weight, a mask, a zero), and
the constants computed from labels, as ops: they run through ``dev.run`` like every kernel,
so that gg.compile records them and replays them into planned buffers (an array computed
beside the kernels would be frozen into the recording). Each is piecewise constant in its
inputs: its own derivative is zero, and higher derivatives through it add nothing. Given
``out=`` (a replay's planned buffer), each writes into it with the ufuncs' ``out=`` where
the dtype allows, rather than through a temporary."""
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
        if out is not None and out.dtype.kind == "f":
            # (wins + wins-or-ties) / 2: 0, 1/2 or 1 exactly, as the sum below
            if p.larger:
                xp.greater(a, b, out=out)
                xp.add(out, xp.greater_equal(a, b), out=out)
            else:
                xp.less(a, b, out=out)
                xp.add(out, xp.less_equal(a, b), out=out)
            return xp.multiply(out, 0.5, out=out)
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
        xp = dev.xp
        if out is not None and out.dtype.kind == "f":
            # NaN compares false, so the first test alone sends it to 0
            if p.min is not None:
                xp.greater_equal(x, p.min, out=out)
                if p.max is not None:
                    xp.multiply(out, xp.less_equal(x, p.max), out=out)
            elif p.max is not None:
                xp.less_equal(x, p.max, out=out)
            else:
                xp.equal(x, x, out=out)
            return out
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
        xp = dev.xp
        if out is not None and out.dtype.kind == "f":
            xp.equal(x, peak.reshape(p.shape), out=out)
            return xp.divide(out, out.sum(axis=p.axes, keepdims=True), out=out)
        hit = (x == peak.reshape(p.shape)).astype(x.dtype)
        share = hit / hit.sum(axis=p.axes, keepdims=True)
        if out is None:
            return share
        out[...] = share
        return out


@primitive
class TieShare(_Derivative):
    """1 / (the number of ties) where x equals ``value`` (or both are NaN), else 0: the
    derivative of a statistic that picks one value of x, the gradient split evenly among
    the elements that equal it (PyTorch's evenly_distribute_backward: median, nanmedian)"""
    name = "tie_share"

    def forward(self, dev, p, x, value, out=None):
        xp = dev.xp
        hit = xp.equal(x, value)
        if x.dtype.kind in "fV":
            hit |= xp.isnan(x) & xp.isnan(value)
        if out is not None and out.dtype.kind == "f":
            out[...] = hit
            return xp.divide(out, out.sum(), out=out)
        share = hit.astype(x.dtype)
        share /= share.sum()
        if out is None:
            return share
        out[...] = share
        return out


@primitive
class NotNan(_Derivative):
    """x == x (bool): false exactly at the NaNs (nansum's and nanmean's mask)"""
    name = "not_nan"

    def forward(self, dev, p, x, out=None):
        return dev.xp.equal(x, x, out=out)


@primitive
class ZerosOf(_Derivative):
    """Zeros shaped and typed as x: the derivative of a piecewise-constant function"""
    name = "zeros_of"

    def forward(self, dev, p, x, out=None):
        if out is None:
            return dev.xp.zeros_like(x)
        out[...] = 0
        return out


@primitive
class ZeroMask(_Derivative):
    """Where pow's derivatives are flat (bool): ``test`` "zero" is x == 0 (the base's, at
    b = 0), "nonnegative" x >= 0, "flat" a == 0 and b >= 0 (the exponent's)"""
    name = "zero_mask"
    params = ("test",)

    def forward(self, dev, p, a, b=None, out=None):
        xp = dev.xp
        if p.test == "zero":
            return xp.equal(a, 0, out=out)
        if p.test == "nonnegative":
            return xp.greater_equal(a, 0, out=out)
        return xp.logical_and(xp.equal(a, 0, out=out), xp.greater_equal(b, 0), out=out)


@primitive
class AboveMask(_Derivative):
    """x * scale > threshold (bool): where softplus is linear"""
    name = "above_mask"
    params = ("scale", "threshold")

    def forward(self, dev, p, x, out=None):
        scaled = x if p.scale == 1.0 else x * p.scale
        return dev.xp.greater(scaled, p.threshold, out=out)


@primitive
class ZeroScan(_Derivative):
    """Masks of the zeros of x along ``axis`` for cumprod's derivatives (bool): ``which``
    is "zero" (x = 0), "before" (no zero up to here), "first" (the first zero of its
    line) or "before_or_first"."""
    name = "zero_scan"
    params = ("axis", "which")

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        zero = xp.equal(x, 0)
        if p.which == "zero":
            if out is None:
                return zero
            out[...] = zero
            return out
        seen = xp.cumsum(zero, axis=p.axis)
        if p.which == "before":
            return xp.equal(seen, 0, out=out)
        first = xp.logical_and(zero, xp.equal(seen, 1), out=out)
        if p.which == "first":
            return first
        return xp.logical_or(xp.equal(seen, 0), first, out=first)


@primitive
class LabelWeights(_Derivative):
    """Constants of class labels for the losses: with ``classes`` set, the one-hot of the
    labels along ``axis`` scaled by the class weights (an optional second input), 0 for a
    label equal to ``ignore`` (``nll_loss``); with ``classes`` None, a (N, 1) column of each
    row's share of a softmax cross-entropy (1, divided by the rows in range if ``mean``;
    0 for a label outside [0, ``bound``))."""
    name = "label_weights"
    params = ("classes", "axis", "ignore", "dtype", "mean", "bound")

    def forward(self, dev, p, labels, weight=None, out=None):
        xp = dev.xp
        if p.classes is None:
            share = ((labels >= 0) & (labels < p.bound)).astype(p.dtype)
            if p.mean:
                share /= xp.maximum(share.sum(), 1)
            share = share[:, None]
        else:
            valid = labels != p.ignore
            safe = xp.expand_dims(xp.where(valid, labels, 0), p.axis)
            shape = [1] * safe.ndim
            shape[p.axis] = p.classes
            classes = xp.arange(p.classes).reshape(shape)
            share = ((safe == classes) & xp.expand_dims(valid, p.axis)).astype(p.dtype)
            if weight is not None:
                share = share * weight.astype(p.dtype).reshape(shape)
        if out is None:
            return share
        out[...] = share
        return out


def zero_mask(x, test="zero"):
    return apply(ZeroMask, (x,), ZeroMask.Params(test))


def flat_mask(a, b):
    return apply(ZeroMask, (a, b), ZeroMask.Params("flat"))


def above_mask(x, scale, threshold):
    return apply(AboveMask, (x,), AboveMask.Params(float(scale), float(threshold)))


def zero_scan(x, axis, which):
    return apply(ZeroScan, (x,), ZeroScan.Params(axis, which))


def class_onehot(labels, classes, axis, ignore, dtype, weight=None):
    ins = (labels,) if weight is None else (labels, weight)
    return apply(LabelWeights, ins,
                 LabelWeights.Params(int(classes), int(axis), ignore, dtype, False, None))


def row_shares(labels, bound, mean, dtype):
    return apply(LabelWeights, (labels,),
                 LabelWeights.Params(None, None, None, dtype, bool(mean), int(bound)))


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


def tie_share(x, value):
    return apply(TieShare, (x, value))


def not_nan(x):
    return apply(NotNan, (x,))
