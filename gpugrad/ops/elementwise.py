"""Elementwise ops: arithmetic and maths, their partial derivatives stated once; and the
dtype and device conversions."""
from __future__ import annotations

import math

import numpy as np

from .._autograd.graph import Elementwise, Linear, Op, apply, primitive
from .._tensor import Tensor, wrap
from ._common import elementwise_cost, plain_scalar, result_type
from ._derivative import flat_mask, inside_mask, pick_weight, sign_of, zero_mask


# -- arithmetic ---------------------------------------------------------------------------------
@primitive
class Add(Linear):
    """out = a + b"""
    name = "add"
    kernel = "add"
    broadcasting = True

    def vjp(self, g, ins, out, p, needs):
        return g, g


def add(a, b):
    return apply(Add, (a, b))


@primitive
class Sub(Linear):
    """out = a - b"""
    name = "sub"
    kernel = "subtract"
    broadcasting = True

    def vjp(self, g, ins, out, p, needs):
        return g, (-g if needs[1] else None)


def sub(a, b):
    return apply(Sub, (a, b))


@primitive
class Neg(Linear):
    """out = -a"""
    name = "neg"
    kernel = "negative"

    def vjp(self, g, ins, out, p, needs):
        return (-g,)


def neg(a):
    return apply(Neg, (a,))


@primitive
class Mul(Elementwise):
    """out = a * b"""
    name = "mul"
    kernel = "multiply"
    save_inputs = True

    def partials(self, ins, out, p, needs):
        a, b = ins
        return (b if needs[0] else None), (a if needs[1] else None)


def mul(a, b):
    return apply(Mul, (a, b))


@primitive
class Div(Elementwise):
    """out = a / b"""
    name = "div"
    kernel = "true_divide"
    save_inputs = (False, True)
    save_output = True

    def partials(self, ins, out, p, needs):
        b = ins[1]
        return (1 / b if needs[0] else None), (-(out / b) if needs[1] else None)


def div(a, b):
    return apply(Div, (a, b))


def _log_of(x):
    """log x for a tensor or array; for a Python scalar base, its float logarithm (-inf at
    0, nan below, where the exponent's derivative has no real value)."""
    if isinstance(x, (int, float)):
        return math.log(x) if x > 0 else (-math.inf if x == 0 else math.nan)
    return log(x)


def _is_zero(x):
    """A constant mask (or Python bool) of where x is 0."""
    if isinstance(x, (int, float)):
        return x == 0
    return zero_mask(x)


def _pow_partials(a, b, out, needs):
    """d/da = b a^(b-1), 0 where b = 0; d/db = a^b log a, 0 where a = 0 and b >= 0 (as
    PyTorch: x^0 is constant, 0^y for y >= 0 has no slope in y)."""
    da = db = None
    if needs[0]:
        if isinstance(b, (int, float)):
            da = 0.0 * a if b == 0 else b * a ** (b - 1)
        else:
            da = where(_is_zero(b), 0.0, b * a ** (b - 1))
    if needs[1]:
        log_a = _log_of(a)
        if isinstance(a, (int, float)):
            if a == 0:
                db = where(zero_mask(b, "nonnegative"), 0.0, out * log_a)
            else:
                db = out * log_a
        else:
            if isinstance(b, (int, float)):
                db = where(_is_zero(a), 0.0, out * log_a) if b >= 0 else out * log_a
            else:
                db = where(flat_mask(a, b), 0.0, out * log_a)
    return da, db


@primitive
class Pow(Elementwise):
    """out = a ** b"""
    name = "pow"
    kernel = "power"
    save_inputs = True
    save_output = True
    cost = elementwise_cost(10)

    def partials(self, ins, out, p, needs):
        return _pow_partials(ins[0], ins[1], out, needs)


def pow(a, b):
    return apply(Pow, (a, b))


# -- unary maths ----------------------------------------------------------------------------------
@primitive
class Exp(Elementwise):
    """out = e^x; saves its output"""
    name = "exp"
    kernel = "exp"
    save_output = True
    cost = elementwise_cost(8)

    def partials(self, ins, out, p, needs):
        return (out,)


def exp(x):
    """e^x elementwise."""
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)
    return apply(Exp, (x,))


@primitive
class Log(Elementwise):
    """out = ln x"""
    name = "log"
    kernel = "log"
    save_inputs = True
    cost = elementwise_cost(8)

    def partials(self, ins, out, p, needs):
        return (1 / ins[0],)


def log(x):
    """Natural logarithm elementwise."""
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)
    return apply(Log, (x,))


@primitive
class Sqrt(Elementwise):
    """out = sqrt(x); saves its output"""
    name = "sqrt"
    kernel = "sqrt"
    save_output = True
    cost = elementwise_cost(4)

    def partials(self, ins, out, p, needs):
        return (0.5 / out,)


def sqrt(x):
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)
    return apply(Sqrt, (x,))


@primitive
class Sin(Elementwise):
    """out = sin x"""
    name = "sin"
    kernel = "sin"
    save_inputs = True
    cost = elementwise_cost(8)

    def partials(self, ins, out, p, needs):
        return (cos(ins[0]),)


def sin(x):
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)
    return apply(Sin, (x,))


@primitive
class Cos(Elementwise):
    """out = cos x"""
    name = "cos"
    kernel = "cos"
    save_inputs = True
    cost = elementwise_cost(8)

    def partials(self, ins, out, p, needs):
        return (-sin(ins[0]),)


def cos(x):
    if x.__class__ is Tensor and x._data.dtype.kind not in "fcV":
        x = to_float(x)
    return apply(Cos, (x,))


@primitive
class Abs(Elementwise):
    """out = |x|; the derivative is sign(x) (0 at 0, as PyTorch)"""
    name = "abs"
    kernel = "abs"
    save_inputs = True

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (sign_of(x),)


def abs(x):
    return apply(Abs, (x,))


# -- selection ------------------------------------------------------------------------------------
class _Pick(Elementwise):
    """max or min elementwise: the gradient goes to the side that won, half to each on a tie"""
    save_inputs = True

    larger = None          # maximum: True, minimum: False

    def partials(self, ins, out, p, needs):
        # a constant weight routing the gradient to a where it won, splitting ties in two
        a, b = ins
        w = pick_weight(a, b, self.larger, a if hasattr(a, "shape") else b)
        return (w if needs[0] else None), (1 - w if needs[1] else None)


@primitive
class Maximum(_Pick):
    """out = max(a, b) elementwise"""
    name = "maximum"
    kernel = "maximum"
    larger = True


@primitive
class Minimum(_Pick):
    """out = min(a, b) elementwise"""
    name = "minimum"
    kernel = "minimum"
    larger = False


def maximum(a, b):
    return apply(Maximum, _promoted(a, b))


def minimum(a, b):
    return apply(Minimum, _promoted(a, b))


@primitive
class Where(Op):
    """out = a where cond else b (cond is not differentiated)"""
    name = "where"
    broadcasting = True
    save_inputs = (True, False, False)

    def forward(self, dev, p, cond, a, b, out=None):
        xp = dev.xp
        if out is None:
            return xp.where(cond, a, b)
        xp.copyto(out, b)             # NumPy's where takes no out=: two masked copies
        xp.copyto(out, a, where=cond)
        return out

    def vjp(self, g, ins, out, p, needs):
        cond = ins[0]
        return (None,
                where(cond, g, 0.0) if needs[1] else None,
                where(cond, 0.0, g) if needs[2] else None)

    def jvp(self, ts, ins, out, p):
        _, ta, tb = ts
        if ta is None and tb is None:
            return None
        return where(ins[0], 0.0 if ta is None else ta, 0.0 if tb is None else tb)


def where(cond, a, b):
    """a where cond is true, else b (cond is not differentiated)."""
    if isinstance(cond, Tensor):
        if cond.dtype != bool:
            raise TypeError(f"where: condition must have dtype bool, got {cond.dtype}")
    elif not hasattr(cond, "dtype") or cond.dtype != bool:
        like = a if isinstance(a, Tensor) else b
        if isinstance(like, Tensor):
            cond = wrap(like.device.asarray(cond, dtype=bool), like.device)
    if isinstance(cond, Tensor) and not hasattr(a, "dtype") and not hasattr(b, "dtype"):
        # two Python numbers: PyTorch's dtype of the pair (1.0 and 0 give float32), where
        # NumPy's would give float64
        dtype = result_type(a, b)
        dev = cond.device
        a = wrap(dev.asarray(np.asarray(a, dtype=dtype)), dev)
        b = wrap(dev.asarray(np.asarray(b, dtype=dtype)), dev)
    return apply(Where, (cond,) + _promoted(a, b))


@primitive
class Clip(Elementwise):
    """out = min(max(x, lo), hi); the gradient passes where lo <= x <= hi"""
    name = "clip"
    params = ("min", "max")
    save_inputs = True
    broadcasting = False

    def forward(self, dev, p, x, out=None):
        return dev.xp.clip(x, p.min, p.max, out=out)

    def partials(self, ins, out, p, needs):
        return (inside_mask(ins[0], p.min, p.max),)


def clip(x, min=None, max=None):
    """Clamp x to [min, max] (either may be None)."""
    if min is None and max is None:
        raise ValueError("clip: at least one of min and max must be given")
    return apply(Clip, (x,), Clip.Params(min, max))


def promote(a, b):
    """Both operands in PyTorch's result type: tensors cast (differentiably), NumPy scalars
    made Python scalars, which the kernels treat as weakly typed."""
    dtype = result_type(a, b)
    if isinstance(a, Tensor):
        if a._data.dtype != dtype:
            a = cast(a, dtype)
    else:
        a = plain_scalar(a)
    if isinstance(b, Tensor):
        if b._data.dtype != dtype:
            b = cast(b, dtype)
    else:
        b = plain_scalar(b)
    return a, b


def _promoted(a, b):
    """a and b promoted when a tensor is involved (bare arrays, in rules, pass as they are)."""
    if (a.__class__ is Tensor or b.__class__ is Tensor) and not (
            a.__class__ is b.__class__ and a._data.dtype is b._data.dtype):
        return promote(a, b)
    return a, b


def to_float(x):
    """An integer or bool tensor as the default float (float32), as PyTorch promotes it
    under true division and float functions."""
    return cast(x, np.float32)


# -- dtype and device -----------------------------------------------------------------------------
@primitive
class Cast(Linear):
    """out = x converted to another dtype"""
    name = "cast"
    params = ("dtype", "source")

    def forward(self, dev, p, x, out=None):
        if out is None:
            return x.astype(p.dtype)
        out[...] = x
        return out

    def vjp(self, g, ins, out, p, needs):
        return (cast(g, p.source),)


def cast(x, dtype):
    dtype = np.dtype(dtype)
    if dtype == x.dtype:
        return x
    return apply(Cast, (x,), Cast.Params(dtype, x.dtype))


@primitive
class ToDevice(Linear):
    """out = x copied to another device"""
    name = "to_device"
    params = ("target", "source")
    view = True   # accounted on its own device by the copy, not by the source's run

    def forward(self, dev, p, x, out=None):
        copy = p.target.asarray(x)
        if out is None:
            return copy
        out[...] = copy
        return out

    def vjp(self, g, ins, out, p, needs):
        return (to_device(g, p.source),)


def to_device(x, dev):
    if not isinstance(x, Tensor):
        return dev.asarray(x)          # an array inside a backward that records nothing
    if dev is x.device:
        return x
    out = apply(ToDevice, (x,), ToDevice.Params(dev, x.device))
    out.device = dev
    out._ver = [0]
    out._base = None       # a copy, not a view: marked a view only for memory accounting
    return out


@primitive
class Identity(Linear):
    """out = x, a new tensor sharing x's array (a hook for forward-mode tangents)"""
    name = "identity"
    view = True

    def forward(self, dev, p, x, out=None):
        if out is None:
            return x
        out[...] = x
        return out

    def vjp(self, g, ins, out, p, needs):
        return (g,)


def identity(x):
    return apply(Identity, (x,))
