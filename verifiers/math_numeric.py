"""Bounded numeric evaluation of parsed answers with mpmath (30 digits), by our own tree walk.

sympy's ``evalf`` re-enters sympy's eager evaluation (``subs``, assumption queries) and can
take seconds on nested irrational input; this walk maps each node straight to an mpmath
function and gives up (returns None) as soon as a value or an argument grows past fixed
magnitudes, so every call is fast whatever the tree.
"""

from __future__ import annotations

import threading

import mpmath
import sympy

DPS = 30
MAX_MAG = 100_000  # |value| < 2**MAX_MAG at every node
_MAX_ARG_MAG = 20_000  # trig of |z| ~ 2**k needs k bits of working precision
_MAX_GAMMA_ARG = 5_000  # gamma(5000) ~ 2**56,000

_EXP_ARG = MAX_MAG * 0.69  # e^z overflows MAX_MAG beyond this real part
# function -> (mpmath name, which part of the argument grows the result exponentially)
_FUNCS = {
    sympy.sin: ("sin", "im"), sympy.cos: ("cos", "im"), sympy.tan: ("tan", "im"),
    sympy.cot: ("cot", "im"), sympy.sec: ("sec", "im"), sympy.csc: ("csc", "im"),
    sympy.asin: ("asin", ""), sympy.acos: ("acos", ""), sympy.atan: ("atan", ""),
    sympy.acot: ("acot", ""), sympy.asec: ("asec", ""), sympy.acsc: ("acsc", ""),
    sympy.sinh: ("sinh", "re"), sympy.cosh: ("cosh", "re"), sympy.tanh: ("tanh", "re"),
    sympy.coth: ("coth", "re"),
}  # fmt: skip


class NumericError(ValueError):
    """The value is undefined, infinite, too large, or of a kind we do not evaluate."""


_local = threading.local()


def context() -> mpmath.MPContext:
    """This thread's private mpmath context at `DPS` digits."""
    # a private context per thread: mpmath's global precision is shared mutable state
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        ctx = mpmath.MPContext()
        ctx.dps = DPS
        _local.ctx = ctx
    return ctx


def evaluate(expr: sympy.Basic, point: dict | None = None):
    """The value of ``expr`` (symbols taken from ``point``) as an mpmath number, or None."""
    ctx = context()
    try:
        v = _ev(expr, point or {}, ctx)
    except (NumericError, ZeroDivisionError, ValueError, OverflowError, TypeError):
        return None
    return v if ctx.isfinite(v) else None


def magnitude_log2(expr: sympy.Basic) -> float | None:
    """log2 |expr| for a numeric expression (``-inf`` for zero), or None if not evaluable."""
    v = evaluate(expr)
    if v is None:
        return None
    if v == 0:
        return float("-inf")
    return float(context().log(abs(v), 2))


def real_part(v) -> float:
    """The real part of an mpmath number as a float."""
    return float(context().re(v))


def _check(ctx: mpmath.MPContext, v):
    if not ctx.isfinite(v):
        raise NumericError("not finite")
    if v != 0 and ctx.mag(v) > MAX_MAG:
        raise NumericError("value too large")
    return v


def _real(ctx: mpmath.MPContext, v):
    if ctx.im(v) != 0 and abs(ctx.im(v)) > abs(v) * ctx.mpf(10) ** (-DPS + 5):
        raise NumericError("a real function of a complex value")
    return ctx.re(v)


def _ev(e: sympy.Basic, point: dict, ctx: mpmath.MPContext):  # noqa: C901 - one case per node
    if isinstance(e, sympy.Rational):
        return ctx.mpf(int(e.p)) / int(e.q)
    if isinstance(e, sympy.Float):
        return ctx.make_mpf(e._mpf_)
    if e is sympy.pi:
        return +ctx.pi
    if e is sympy.E:
        return +ctx.e
    if e is sympy.I:
        return ctx.mpc(0, 1)
    if isinstance(e, sympy.Symbol):
        if e not in point:
            raise NumericError(f"no value for {e}")
        return point[e]
    args = [_ev(a, point, ctx) for a in e.args]
    if isinstance(e, sympy.Add):
        return _check(ctx, ctx.fsum(args))
    if isinstance(e, sympy.Mul):
        out = ctx.mpf(1)
        for a in args:
            out = _check(ctx, out * a)
        return out
    if isinstance(e, sympy.Pow):
        b, x = args
        if b == 0:
            if ctx.re(x) <= 0:
                raise NumericError("0 to a non-positive power")
            return ctx.mpf(0)
        if abs(x) * max(abs(ctx.log(abs(b), 2)), 1) > MAX_MAG:
            raise NumericError("power too large")
        return _check(ctx, ctx.power(b, x))
    if isinstance(e, sympy.exp):
        (z,) = args
        _check_arg(ctx, z, "re")
        return _check(ctx, ctx.exp(z))
    if isinstance(e, sympy.log):
        if len(args) != 1:
            raise NumericError("log with a base")
        return _check(ctx, ctx.log(args[0]))
    for f, (name, grows) in _FUNCS.items():
        if isinstance(e, f):
            (z,) = args
            _check_arg(ctx, z, grows)
            return _check(ctx, getattr(ctx, name)(z))
    if isinstance(e, sympy.Abs):
        return abs(args[0])
    if isinstance(e, (sympy.floor, sympy.ceiling)):
        r = _real(ctx, args[0])
        return ctx.floor(r) if isinstance(e, sympy.floor) else ctx.ceil(r)
    if isinstance(e, (sympy.Max, sympy.Min)):
        reals = [_real(ctx, a) for a in args]
        return max(reals) if isinstance(e, sympy.Max) else min(reals)
    if isinstance(e, sympy.factorial):
        return _gamma(ctx, args[0] + 1)
    if isinstance(e, sympy.gamma):
        return _gamma(ctx, args[0])
    if isinstance(e, sympy.binomial):
        n, k = args
        return _check(ctx, _gamma(ctx, n + 1) / (_gamma(ctx, k + 1) * _gamma(ctx, n - k + 1)))
    raise NumericError(f"cannot evaluate {type(e).__name__}")


def _check_arg(ctx: mpmath.MPContext, z, grows: str) -> None:
    """Refuse arguments whose evaluation needs huge precision or overflows."""
    if z != 0 and ctx.mag(z) > _MAX_ARG_MAG:
        raise NumericError("argument too large")
    part = ctx.re(z) if grows == "re" else ctx.im(z) if grows == "im" else 0
    if abs(part) > _EXP_ARG:
        raise NumericError("result too large")


def _gamma(ctx: mpmath.MPContext, z):
    if abs(z) > _MAX_GAMMA_ARG:
        raise NumericError("gamma argument too large")
    return _check(ctx, ctx.gamma(z))
