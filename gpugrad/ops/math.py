"""More elementwise maths, as PyTorch names it: rounding, trigonometric and hyperbolic
functions and their inverses, logarithms and exponentials in other bases, the remainder
family, and the non-differentiable predicates, logical and bitwise ops.

Differentiable ops state their partial derivatives once (``Elementwise``); the
piecewise-constant ones (floor, sign, ...) have a zero gradient, as in PyTorch; ops whose
result is boolean or integer are computed directly, never recorded (there is nothing to
differentiate). Integer inputs of the floating-point functions become float32, PyTorch's
default float.
"""
from __future__ import annotations

import math

import numpy as np

from .._autograd.graph import Elementwise, Op, apply, primitive
from .._tensor import Tensor
from ..kernels.reference import erf as _erf_kernel
from ._common import computed, const_like, elementwise_cost, raw, xp_of
from ._derivative import zeros_of
from .elementwise import cast, exp

_LN2 = math.log(2.0)
_LN10 = math.log(10.0)
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_DEFAULT_FLOAT = np.dtype(np.float32)


def _floating(x):
    """An integer or boolean tensor as PyTorch's default float (float32)."""
    if isinstance(x, Tensor) and x.dtype.kind in "biu":
        return cast(x, _DEFAULT_FLOAT)
    return x


def _zeros_of(g):
    """A zero cotangent shaped like g (a tensor or an array)."""
    return zeros_of(g)


def _into(out, value):
    if out is None:
        return value
    out[...] = value
    return out


# -- smooth unary functions ----------------------------------------------------------------------
class _Unary(Elementwise):
    save_inputs = True
    broadcasting = False
    cost = elementwise_cost(8)


class _UnaryOfOutput(_Unary):
    save_inputs = None
    save_output = True


@primitive
class Tan(_UnaryOfOutput):
    """out = tan x; d/dx = 1 + out^2"""
    name = "tan"
    kernel = "tan"

    def partials(self, ins, out, p, needs):
        return (1 + out * out,)


@primitive
class Asin(_Unary):
    """out = asin x; d/dx = 1 / sqrt(1 - x^2)"""
    name = "asin"
    kernel = "arcsin"

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (rsqrt(1 - x * x),)


@primitive
class Acos(_Unary):
    """out = acos x; d/dx = -1 / sqrt(1 - x^2)"""
    name = "acos"
    kernel = "arccos"

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (-rsqrt(1 - x * x),)


@primitive
class Atan(_Unary):
    """out = atan x; d/dx = 1 / (1 + x^2)"""
    name = "atan"
    kernel = "arctan"

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (1 / (1 + x * x),)


@primitive
class Sinh(_Unary):
    """out = sinh x; d/dx = cosh x"""
    name = "sinh"
    kernel = "sinh"

    def partials(self, ins, out, p, needs):
        return (cosh(ins[0]),)


@primitive
class Cosh(_Unary):
    """out = cosh x; d/dx = sinh x"""
    name = "cosh"
    kernel = "cosh"

    def partials(self, ins, out, p, needs):
        return (sinh(ins[0]),)


@primitive
class Asinh(_Unary):
    """out = asinh x; d/dx = 1 / sqrt(x^2 + 1)"""
    name = "asinh"
    kernel = "arcsinh"

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (rsqrt(x * x + 1),)


@primitive
class Acosh(_Unary):
    """out = acosh x; d/dx = 1 / sqrt(x^2 - 1)"""
    name = "acosh"
    kernel = "arccosh"

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (rsqrt(x * x - 1),)


@primitive
class Atanh(_Unary):
    """out = atanh x; d/dx = 1 / (1 - x^2)"""
    name = "atanh"
    kernel = "arctanh"

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (1 / (1 - x * x),)


@primitive
class Erf(_Unary):
    """out = erf x; d/dx = 2 / sqrt(pi) exp(-x^2)"""
    name = "erf"

    def forward(self, dev, p, x, out=None):
        return _into(out, _erf_kernel(x))

    def partials(self, ins, out, p, needs):
        x = ins[0]
        return (_TWO_OVER_SQRT_PI * exp(-(x * x)),)


@primitive
class Exp2(_UnaryOfOutput):
    """out = 2^x; d/dx = out ln 2"""
    name = "exp2"
    kernel = "exp2"

    def partials(self, ins, out, p, needs):
        return (out * _LN2,)


@primitive
class Expm1(_UnaryOfOutput):
    """out = e^x - 1, exact near 0; d/dx = out + 1"""
    name = "expm1"
    kernel = "expm1"

    def partials(self, ins, out, p, needs):
        return (out + 1,)


@primitive
class Log2(_Unary):
    """out = log2 x; d/dx = 1 / (x ln 2)"""
    name = "log2"
    kernel = "log2"

    def partials(self, ins, out, p, needs):
        return (1 / (ins[0] * _LN2),)


@primitive
class Log10(_Unary):
    """out = log10 x; d/dx = 1 / (x ln 10)"""
    name = "log10"
    kernel = "log10"

    def partials(self, ins, out, p, needs):
        return (1 / (ins[0] * _LN10),)


@primitive
class Log1p(_Unary):
    """out = ln(1 + x), exact near 0; d/dx = 1 / (1 + x)"""
    name = "log1p"
    kernel = "log1p"

    def partials(self, ins, out, p, needs):
        return (1 / (1 + ins[0]),)


@primitive
class Rsqrt(_UnaryOfOutput):
    """out = 1 / sqrt(x); d/dx = -out^3 / 2"""
    name = "rsqrt"
    cost = elementwise_cost(5)

    def forward(self, dev, p, x, out=None):
        if out is None:
            return 1 / dev.xp.sqrt(x)
        dev.xp.sqrt(x, out=out)
        return dev.xp.divide(1, out, out=out)

    def partials(self, ins, out, p, needs):
        return (-0.5 * (out * out * out),)


@primitive
class Square(_Unary):
    """out = x^2; d/dx = 2x"""
    name = "square"
    kernel = "square"
    cost = elementwise_cost(1)

    def partials(self, ins, out, p, needs):
        return (2 * ins[0],)


def tan(x):
    """Tangent elementwise."""
    return apply(Tan, (_floating(x),))


def asin(x):
    """Inverse sine elementwise (nan outside [-1, 1])."""
    return apply(Asin, (_floating(x),))


def acos(x):
    """Inverse cosine elementwise (nan outside [-1, 1])."""
    return apply(Acos, (_floating(x),))


def atan(x):
    """Inverse tangent elementwise."""
    return apply(Atan, (_floating(x),))


def sinh(x):
    return apply(Sinh, (_floating(x),))


def cosh(x):
    return apply(Cosh, (_floating(x),))


def asinh(x):
    return apply(Asinh, (_floating(x),))


def acosh(x):
    """Inverse hyperbolic cosine (nan below 1)."""
    return apply(Acosh, (_floating(x),))


def atanh(x):
    """Inverse hyperbolic tangent (nan outside [-1, 1])."""
    return apply(Atanh, (_floating(x),))


def erf(x):
    """The error function elementwise."""
    return apply(Erf, (_floating(x),))


def exp2(x):
    return apply(Exp2, (_floating(x),))


def expm1(x):
    return apply(Expm1, (_floating(x),))


def log2(x):
    return apply(Log2, (_floating(x),))


def log10(x):
    return apply(Log10, (_floating(x),))


def log1p(x):
    return apply(Log1p, (_floating(x),))


def rsqrt(x):
    """1 / sqrt(x) elementwise."""
    return apply(Rsqrt, (_floating(x),))


def square(x):
    """x * x elementwise (integers stay integers and bools become int64, as PyTorch)."""
    if x.dtype == np.bool_:
        x = cast(x, np.int64)
    return apply(Square, (x,))


# -- piecewise-constant functions: zero gradient ---------------------------------------------------
class _Step(Op):
    """A piecewise-constant function: its gradient is a zero (PyTorch gives zeros, not
    None, so that ``.grad`` is filled)."""

    cost = elementwise_cost(1)

    def vjp(self, g, ins, out, p, needs):
        return (_zeros_of(g),)

    def jvp(self, ts, ins, out, p):
        return None


@primitive
class Floor(_Step):
    """out = the largest integer <= x"""
    name = "floor"
    kernel = "floor"


@primitive
class Ceil(_Step):
    """out = the smallest integer >= x"""
    name = "ceil"
    kernel = "ceil"


@primitive
class Trunc(_Step):
    """out = x rounded toward zero"""
    name = "trunc"
    kernel = "trunc"


@primitive
class Sign(_Step):
    """out = -1, 0 or 1 by the sign of x (0 for NaN, as PyTorch)"""
    name = "sign"

    def forward(self, dev, p, x, out=None):
        xp = dev.xp
        value = xp.sign(x, out=out)
        if x.dtype.kind != "f":
            return value
        if out is None:
            return xp.where(xp.isnan(x), xp.zeros((), x.dtype), value)
        out[xp.isnan(x)] = 0
        return out


@primitive
class Round(_Step):
    """out = x rounded half to even, to ``decimals`` decimal places"""
    name = "round"
    params = ("decimals",)

    def forward(self, dev, p, x, out=None):
        return dev.xp.round(x, p.decimals, out=out)


def _integral(x):
    return isinstance(x, Tensor) and x.dtype.kind in "biu"


def floor(x):
    """The largest integer <= x elementwise (integer tensors are returned as a copy)."""
    return clone_of(x) if _integral(x) else apply(Floor, (x,))


def ceil(x):
    return clone_of(x) if _integral(x) else apply(Ceil, (x,))


def trunc(x):
    """x rounded toward zero."""
    return clone_of(x) if _integral(x) else apply(Trunc, (x,))


fix = trunc


def round(x, decimals=0):
    """x rounded half to even (as PyTorch and NumPy), to ``decimals`` places."""
    if _integral(x) and decimals >= 0:
        return clone_of(x)
    return apply(Round, (x,), Round.Params(int(decimals)))


def sign(x):
    """-1, 0 or 1 elementwise (a boolean tensor is returned as a copy)."""
    if isinstance(x, Tensor) and x.dtype.kind == "b":
        return clone_of(x)
    return apply(Sign, (x,))


def sgn(x):
    return sign(x)


def clone_of(x):
    """A copy of an integer or boolean tensor (nothing to differentiate)."""
    return computed(raw(x).copy(), x.device)


# -- binary functions ----------------------------------------------------------------------------
@primitive
class Atan2(Elementwise):
    """out = atan2(a, b), the angle of the point (b, a)"""
    name = "atan2"
    kernel = "arctan2"
    save_inputs = True
    cost = elementwise_cost(10)

    def partials(self, ins, out, p, needs):
        a, b = ins
        inv = 1 / (a * a + b * b)
        return (b * inv if needs[0] else None), (-(a * inv) if needs[1] else None)


@primitive
class LogAddExp(Elementwise):
    """out = log(e^a + e^b), computed stably"""
    name = "logaddexp"
    kernel = "logaddexp"
    save_inputs = True
    save_output = True
    cost = elementwise_cost(10)

    def partials(self, ins, out, p, needs):
        a, b = ins
        return (exp(a - out) if needs[0] else None), (exp(b - out) if needs[1] else None)


class _Remainder(Op):
    """out = a - b * q(a / b), q rounding down (remainder) or toward zero (fmod): d/da = 1,
    d/db = -q(a / b), a piecewise constant"""

    broadcasting = True
    save_inputs = True
    cost = elementwise_cost(4)

    def quotient(self, xp, a, b):
        raise NotImplementedError

    def _minus_quotient(self, a, b):
        like = a if hasattr(a, "shape") else b
        return const_like(-self.quotient(xp_of(like), raw(a), raw(b)), like)

    def vjp(self, g, ins, out, p, needs):
        return (g if needs[0] else None,
                g * self._minus_quotient(*ins) if needs[1] else None)

    def jvp(self, ts, ins, out, p):
        ta, tb = ts
        part = None if tb is None else tb * self._minus_quotient(*ins)
        if ta is None:
            return part
        return ta if part is None else ta + part


@primitive
class Remainder(_Remainder):
    """out = a mod b with the sign of b (Python's and PyTorch's %)"""
    name = "remainder"
    kernel = "remainder"

    def quotient(self, xp, a, b):
        return xp.floor_divide(a, b)


@primitive
class Fmod(_Remainder):
    """out = a mod b with the sign of a (C's fmod)"""
    name = "fmod"
    kernel = "fmod"

    def quotient(self, xp, a, b):
        return xp.trunc(xp.true_divide(a, b))


@primitive
class FloorDivide(Op):
    """out = floor(a / b); PyTorch has no derivative for it, so backward raises"""
    name = "floor_divide"
    kernel = "floor_divide"
    broadcasting = True
    cost = elementwise_cost(4)

    def vjp(self, g, ins, out, p, needs):
        raise RuntimeError(_NO_FLOOR_DIVIDE_DERIVATIVE)

    def jvp(self, ts, ins, out, p):
        raise RuntimeError(_NO_FLOOR_DIVIDE_DERIVATIVE)


_NO_FLOOR_DIVIDE_DERIVATIVE = (
    "the derivative of floor_divide (//) is not implemented, as in PyTorch: detach its "
    "operands (a.detach() // b) where the quotient is meant as a constant")


@primitive
class Lerp(Elementwise):
    """out = start + weight * (end - start)"""
    name = "lerp"
    save_inputs = True
    cost = elementwise_cost(3)

    def forward(self, dev, p, start, end, weight, out=None):
        xp = dev.xp
        value = xp.add(start, xp.multiply(weight, xp.subtract(end, start)))
        return _into(out, value)

    def partials(self, ins, out, p, needs):
        start, end, weight = ins
        return ((1 - weight) if needs[0] else None, weight if needs[1] else None,
                (end - start) if needs[2] else None)


def _scalar_free(a, b, what):
    if not isinstance(a, Tensor) and not isinstance(b, Tensor):
        raise TypeError(f"{what}: expected a Tensor among the arguments, got "
                        f"{type(a).__name__} and {type(b).__name__}")


def atan2(a, b):
    """The angle of the point (b, a) elementwise, in (-pi, pi]."""
    _scalar_free(a, b, "atan2")
    return apply(Atan2, (_floating(a), _floating(b)))


arctan2 = atan2


def logaddexp(a, b):
    """log(exp(a) + exp(b)) elementwise, without overflow."""
    _scalar_free(a, b, "logaddexp")
    return apply(LogAddExp, (_floating(a), _floating(b)))


def remainder(a, b):
    """a mod b with the sign of b (PyTorch's ``%``, Python's)."""
    _scalar_free(a, b, "remainder")
    return apply(Remainder, (a, b))


def fmod(a, b):
    """a mod b with the sign of a (C's fmod)."""
    _scalar_free(a, b, "fmod")
    return apply(Fmod, (a, b))


def floor_divide(a, b):
    """floor(a / b) elementwise (PyTorch's ``//``); not differentiable, as in PyTorch."""
    _scalar_free(a, b, "floor_divide")
    return apply(FloorDivide, (a, b))


def lerp(start, end, weight):
    """start + weight * (end - start); weight a number or a tensor."""
    if not isinstance(weight, Tensor):
        weight = float(weight)
    return apply(Lerp, (start, end, weight))


# -- predicates, logical and bitwise ops: nothing to differentiate ---------------------------------
def _compute(what, fn, *args):
    """fn(xp, *arrays) on the arguments' device, as a constant tensor: for results that
    are boolean or integer, which autograd never records."""
    dev = None
    arrays = []
    for x in args:
        if isinstance(x, Tensor):
            if dev is None:
                dev = x.device
            elif x.device is not dev:
                raise ValueError(f"{what}: expected all tensors on one device, got {dev} "
                                 f"and {x.device}")
            arrays.append(raw(x))
        else:
            arrays.append(x)
    if dev is None:
        raise TypeError(f"{what}: expected a Tensor among the arguments, got "
                        + ", ".join(type(x).__name__ for x in args))
    arrays = [dev.asarray(a) if isinstance(a, (list, tuple)) else a for a in arrays]
    try:
        result = fn(dev.xp, *arrays)
    except ValueError:
        shapes = [tuple(a.shape) for a in arrays if hasattr(a, "shape")]
        raise ValueError(f"{what}: shapes " + " and ".join(str(s) for s in shapes)
                         + " cannot be broadcast together") from None
    return computed(result, dev)


def isnan(x):
    return _compute("isnan", lambda xp, a: xp.isnan(a), x)


def isinf(x):
    return _compute("isinf", lambda xp, a: xp.isinf(a), x)


def isposinf(x):
    return _compute("isposinf", lambda xp, a: xp.isposinf(a), x)


def isneginf(x):
    return _compute("isneginf", lambda xp, a: xp.isneginf(a), x)


def isfinite(x):
    return _compute("isfinite", lambda xp, a: xp.isfinite(a), x)


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a - b| <= atol + rtol |b| elementwise, as PyTorch."""
    return _compute("isclose", lambda xp, x, y: xp.isclose(x, y, rtol, atol, equal_nan), a, b)


def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether isclose holds everywhere (a Python bool)."""
    return bool(isclose(a, b, rtol, atol, equal_nan).numpy().all())


def equal(a, b):
    """True if the two tensors have the same shape and elements (a Python bool)."""
    return tuple(a.shape) == tuple(b.shape) and bool((raw(a) == raw(b)).all())


def _comparison(name, ufunc):
    def compare(a, b):
        return _compute(name, lambda xp, x, y: getattr(xp, ufunc)(x, y), a, b)
    compare.__name__ = name
    compare.__doc__ = f"a {name} b elementwise, as a bool tensor."
    return compare


eq = _comparison("eq", "equal")
ne = _comparison("ne", "not_equal")
lt = _comparison("lt", "less")
le = _comparison("le", "less_equal")
gt = _comparison("gt", "greater")
ge = _comparison("ge", "greater_equal")
greater, greater_equal, less, less_equal, not_equal = gt, ge, lt, le, ne


def logical_not(x):
    return _compute("logical_not", lambda xp, a: xp.logical_not(a), x)


def logical_and(a, b):
    return _compute("logical_and", lambda xp, x, y: xp.logical_and(x, y), a, b)


def logical_or(a, b):
    return _compute("logical_or", lambda xp, x, y: xp.logical_or(x, y), a, b)


def logical_xor(a, b):
    return _compute("logical_xor", lambda xp, x, y: xp.logical_xor(x, y), a, b)


def _check_integral(what, *args):
    for x in args:
        dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype
        if dtype.kind not in "biu":
            raise TypeError(f"{what} is only defined for integer and bool tensors, got "
                            f"dtype {dtype}")


def _bitwise(name, ufunc):
    def bitwise(a, b):
        _check_integral(name, a, b)
        return _compute(name, lambda xp, x, y: getattr(xp, ufunc)(x, y), a, b)
    bitwise.__name__ = name
    bitwise.__doc__ = f"{name} elementwise on integer or bool tensors."
    return bitwise


bitwise_and = _bitwise("bitwise_and", "bitwise_and")
bitwise_or = _bitwise("bitwise_or", "bitwise_or")
bitwise_xor = _bitwise("bitwise_xor", "bitwise_xor")
bitwise_left_shift = _bitwise("bitwise_left_shift", "left_shift")
bitwise_right_shift = _bitwise("bitwise_right_shift", "right_shift")


def bitwise_not(x):
    """~x: bitwise not of an integer tensor, logical not of a bool tensor."""
    _check_integral("bitwise_not", x)
    return _compute("bitwise_not", lambda xp, a: xp.invert(a), x)



arcsin, arccos, arctan = asin, acos, atan
arcsinh, arccosh, arctanh = asinh, acosh, atanh
