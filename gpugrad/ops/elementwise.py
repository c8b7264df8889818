"""Elementwise ops: arithmetic, comparisons-free maths, and their derivatives.

Each class is one primitive; the function under it is its public entry point.
"""
from __future__ import annotations

import math

from .._graph import Op, apply
from .._tensor import Tensor
from ._common import add_terms, const_like, raw


def _elementwise_cost(flops_per_element):
    def cost(in_shapes, out_shape, p):
        n = 1
        for s in out_shape:
            n *= s
        return flops_per_element * n, n * (len(in_shapes) + 1)
    return staticmethod(cost)


# -- arithmetic ---------------------------------------------------------------------------------
class Add(Op):
    """out = a + b"""
    name = "add"
    kernel = "add"
    broadcasting = True

    def vjp(g, ins, out, p, needs):
        return g, g

    def jvp(ts, ins, out, p):
        return add_terms(ts[0], ts[1])


def add(a, b):
    return apply(Add, (a, b))


class Sub(Op):
    """out = a - b"""
    name = "sub"
    kernel = "subtract"
    broadcasting = True

    def vjp(g, ins, out, p, needs):
        return g, (neg(g) if needs[1] else None)

    def jvp(ts, ins, out, p):
        ta, tb = ts
        if tb is None:
            return ta
        return neg(tb) if ta is None else ta - tb


def sub(a, b):
    return apply(Sub, (a, b))


class Neg(Op):
    """out = -a"""
    name = "neg"
    kernel = "negative"

    def vjp(g, ins, out, p, needs):
        return (neg(g),)

    def jvp(ts, ins, out, p):
        return neg(ts[0])


def neg(a):
    return apply(Neg, (a,))


class Mul(Op):
    """out = a * b"""
    name = "mul"
    kernel = "multiply"
    broadcasting = True
    save_inputs = True

    def vjp(g, ins, out, p, needs):
        a, b = ins
        return (g * b if needs[0] else None), (g * a if needs[1] else None)

    def jvp(ts, ins, out, p):
        ta, tb = ts
        a, b = ins
        return add_terms(None if ta is None else ta * b, None if tb is None else a * tb)


def mul(a, b):
    return apply(Mul, (a, b))


class Div(Op):
    """out = a / b"""
    name = "div"
    kernel = "true_divide"
    broadcasting = True
    save_inputs = (False, True)
    save_output = True

    def vjp(g, ins, out, p, needs):
        b = ins[1]
        ga = g / b if needs[0] else None
        gb = neg(g * out / b) if needs[1] else None
        return ga, gb

    def jvp(ts, ins, out, p):
        ta, tb = ts
        b = ins[1]
        return add_terms(None if ta is None else ta / b,
                         None if tb is None else neg(tb * out / b))


def div(a, b):
    return apply(Div, (a, b))


def _log_of(x):
    return log(x) if isinstance(x, Tensor) else math.log(x)


class Pow(Op):
    """out = a ** b"""
    name = "pow"
    kernel = "power"
    broadcasting = True
    save_inputs = True
    save_output = True
    cost = _elementwise_cost(10)

    def vjp(g, ins, out, p, needs):
        a, b = ins
        ga = g * b * a ** (b - 1) if needs[0] else None
        gb = g * out * _log_of(a) if needs[1] else None
        return ga, gb

    def jvp(ts, ins, out, p):
        ta, tb = ts
        a, b = ins
        return add_terms(None if ta is None else ta * b * a ** (b - 1),
                         None if tb is None else tb * out * _log_of(a))


def pow(a, b):
    return apply(Pow, (a, b))


# -- unary maths ----------------------------------------------------------------------------------
class Exp(Op):
    """out = e^x"""
    name = "exp"
    kernel = "exp"
    save_output = True
    cost = _elementwise_cost(8)

    def vjp(g, ins, out, p, needs):
        return (g * out,)

    def jvp(ts, ins, out, p):
        return ts[0] * out


def exp(x):
    """e^x elementwise."""
    return apply(Exp, (x,))


class Log(Op):
    """out = ln x"""
    name = "log"
    kernel = "log"
    save_inputs = True
    cost = _elementwise_cost(8)

    def vjp(g, ins, out, p, needs):
        return (g / ins[0],)

    def jvp(ts, ins, out, p):
        return ts[0] / ins[0]


def log(x):
    """Natural logarithm elementwise."""
    return apply(Log, (x,))


class Sqrt(Op):
    """out = sqrt(x)"""
    name = "sqrt"
    kernel = "sqrt"
    save_output = True
    cost = _elementwise_cost(4)

    def vjp(g, ins, out, p, needs):
        return (g / (2 * out),)

    def jvp(ts, ins, out, p):
        return ts[0] / (2 * out)


def sqrt(x):
    return apply(Sqrt, (x,))


class Sin(Op):
    """out = sin x"""
    name = "sin"
    kernel = "sin"
    save_inputs = True
    cost = _elementwise_cost(8)

    def vjp(g, ins, out, p, needs):
        return (g * cos(ins[0]),)

    def jvp(ts, ins, out, p):
        return ts[0] * cos(ins[0])


def sin(x):
    return apply(Sin, (x,))


class Cos(Op):
    """out = cos x"""
    name = "cos"
    kernel = "cos"
    save_inputs = True
    cost = _elementwise_cost(8)

    def vjp(g, ins, out, p, needs):
        return (neg(g * sin(ins[0])),)

    def jvp(ts, ins, out, p):
        return neg(ts[0] * sin(ins[0]))


def cos(x):
    return apply(Cos, (x,))


def _sign_of(x):
    """sign(x) as a constant of x's dtype (0 at 0, as PyTorch)."""
    arr = x._data
    return const_like(x.device.xp.sign(arr), x)


class Abs(Op):
    """out = |x|"""
    name = "abs"
    kernel = "abs"
    save_inputs = True

    def vjp(g, ins, out, p, needs):
        return (g * _sign_of(ins[0]),)

    def jvp(ts, ins, out, p):
        return ts[0] * _sign_of(ins[0])


def abs(x):
    return apply(Abs, (x,))


# -- selection ------------------------------------------------------------------------------------
def _pick_weights(a, b, pick_a):
    """Constant weights routing the gradient to a where it won, splitting ties in two."""
    xa, xb = raw(a), raw(b)
    like = a if isinstance(a, Tensor) else b
    xp = like.device.xp
    dtype = like._data.dtype
    w = (pick_a(xa, xb).astype(dtype) + 0.5 * xp.equal(xa, xb).astype(dtype)).astype(dtype)
    return const_like(w, like)


class Maximum(Op):
    """out = max(a, b) elementwise; ties send half the gradient to each side"""
    name = "maximum"
    kernel = "maximum"
    broadcasting = True
    save_inputs = True

    def vjp(g, ins, out, p, needs):
        w = _pick_weights(ins[0], ins[1], _greater)
        return (g * w if needs[0] else None), (g * (1 - w) if needs[1] else None)

    def jvp(ts, ins, out, p):
        w = _pick_weights(ins[0], ins[1], _greater)
        ta, tb = ts
        return add_terms(None if ta is None else ta * w, None if tb is None else tb * (1 - w))


class Minimum(Maximum):
    """out = min(a, b) elementwise; ties send half the gradient to each side"""
    name = "minimum"
    kernel = "minimum"

    def vjp(g, ins, out, p, needs):
        w = _pick_weights(ins[0], ins[1], _less)
        return (g * w if needs[0] else None), (g * (1 - w) if needs[1] else None)

    def jvp(ts, ins, out, p):
        w = _pick_weights(ins[0], ins[1], _less)
        ta, tb = ts
        return add_terms(None if ta is None else ta * w, None if tb is None else tb * (1 - w))


def _greater(a, b):
    return a > b


def _less(a, b):
    return a < b


def maximum(a, b):
    return apply(Maximum, (a, b))


def minimum(a, b):
    return apply(Minimum, (a, b))


class Where(Op):
    """out = a where cond else b"""
    name = "where"
    kernel = "where"
    broadcasting = True
    save_inputs = (True, False, False)

    def vjp(g, ins, out, p, needs):
        cond = ins[0]
        return (None,
                where(cond, g, 0.0) if needs[1] else None,
                where(cond, 0.0, g) if needs[2] else None)

    def jvp(ts, ins, out, p):
        _, ta, tb = ts
        if ta is None and tb is None:
            return None
        return where(ins[0], 0.0 if ta is None else ta, 0.0 if tb is None else tb)


def where(cond, a, b):
    """a where cond is true, else b (cond is not differentiated)."""
    if not isinstance(cond, Tensor):
        like = a if isinstance(a, Tensor) else b
        from .._tensor import wrap
        cond = wrap(like.device.asarray(cond, dtype=bool), like.device)
    elif cond.dtype != bool:
        raise TypeError(f"where: condition must have dtype bool, got {cond.dtype}")
    return apply(Where, (cond, a, b))


class Clip(Op):
    """out = min(max(x, lo), hi); the gradient passes where lo <= x <= hi"""
    name = "clip"
    save_inputs = True

    def forward(dev, p, x):
        return dev.xp.clip(x, p[0], p[1])

    def vjp(g, ins, out, p, needs):
        return (g * _inside(ins[0], p),)

    def jvp(ts, ins, out, p):
        return ts[0] * _inside(ins[0], p)


def _inside(x, bounds):
    arr = x._data
    lo, hi = bounds
    mask = arr == arr
    if lo is not None:
        mask &= arr >= lo
    if hi is not None:
        mask &= arr <= hi
    return const_like(mask.astype(arr.dtype), x)


def clip(x, min=None, max=None):
    """Clamp x to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    return apply(Clip, (x,), (min, max))


# -- dtype and device -----------------------------------------------------------------------------
class Cast(Op):
    """out = x converted to another dtype"""
    name = "cast"

    def forward(dev, p, x):
        return x.astype(p[0])

    def vjp(g, ins, out, p, needs):
        return (cast(g, p[1]),)

    def jvp(ts, ins, out, p):
        return cast(ts[0], p[0])


def cast(x, dtype):
    import numpy as np
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    return apply(Cast, (x,), (dtype, x.dtype))


class ToDevice(Op):
    """out = x copied to another device"""
    name = "to_device"
    view = True   # the copy is accounted on its own device by to_device, not here

    def forward(dev, p, x):
        return p[0].asarray(x)

    def vjp(g, ins, out, p, needs):
        return (to_device(g, p[1]),)

    def jvp(ts, ins, out, p):
        return to_device(ts[0], p[0])


def to_device(x, dev):
    if dev is x.device:
        return x
    out = apply(ToDevice, (x,), (dev, x.device))
    out.device = dev
    out._ver = [0]
    dev.memory.track(out._data)
    return out


class Identity(Op):
    """out = x, a new tensor sharing x's array (a hook for forward-mode tangents)"""
    name = "identity"
    view = True

    def forward(dev, p, x):
        return x

    def vjp(g, ins, out, p, needs):
        return (g,)

    def jvp(ts, ins, out, p):
        return ts[0]


def identity(x):
    return apply(Identity, (x,))
