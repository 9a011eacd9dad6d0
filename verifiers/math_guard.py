"""Size limits that keep hostile math answers away from sympy's exact arithmetic.

sympy evaluates ``9**(9**9)`` or ``factorial(10**7)`` exactly and would hang the worker, so every
number, power and factorial is checked *before* it is built (see `verifiers.math_latex`), and the
text is capped before it is tokenised. Pure functions; a violation raises `GuardError`.
"""

from __future__ import annotations

import math

import sympy

from verifiers import math_numeric as numeric

MAX_RESPONSE_CHARS = 200_000  # a 16k-token answer is well under this
MAX_ANSWER_CHARS = 1_000  # the extracted final answer (a 6x6 matrix of fractions fits)
MAX_TOKENS = 400
MAX_DEPTH = 40  # parser recursion depth (nested brackets, fractions, exponents)
MAX_BITS = 13_000  # largest exact number: ~3,900 digits (Python refuses str() past 4,300)
MAX_FACTORIAL = 1_000  # 1000! has 2,568 digits
MAX_ROOT_BITS = 256  # sympy factors the radicand of sqrt/cbrt: ~1 ms at 256 bits, minutes at 30k
MAX_SYMBOLIC_EXPONENT = 1_000  # (x+1)^n for symbolic bases
MAX_EXP_NESTING = 3  # e^{e^{e^x}} is fine; one more level makes numeric evaluation explode
MAX_ITEMS = 64  # elements of a set, tuple or matrix
MAX_SYMBOLS = 8  # free symbols in one expression (numeric sampling cost)
MAX_NODES = 600  # sympy tree nodes of one parsed answer


class GuardError(ValueError):
    """The input exceeds a safety limit; it is rejected, never evaluated."""


def check_text(text: str, what: str, max_chars: int = MAX_ANSWER_CHARS) -> None:
    """Reject text that is too long or nests brackets too deeply."""
    if len(text) > max_chars:
        raise GuardError(f"{what} too long ({len(text)} chars > {max_chars})")
    depth = 0
    for ch in text:
        if ch in "{([":
            depth += 1
            if depth > MAX_DEPTH:
                raise GuardError(f"{what} nests brackets deeper than {MAX_DEPTH}")
        elif ch in "})]":
            depth = max(0, depth - 1)


def _bits(x: sympy.Rational) -> int:
    return max(int(x.p).bit_length(), int(x.q).bit_length())


def check_number(x: sympy.Basic) -> sympy.Basic:
    """Reject exact numbers larger than `MAX_BITS`; return ``x`` unchanged otherwise."""
    if isinstance(x, sympy.Rational) and _bits(x) > MAX_BITS:
        raise GuardError(f"number too large (more than {MAX_BITS} bits)")
    return x


def _magnitude_log2(x: sympy.Basic) -> float | None:
    """log2 |x| for a numeric expression, or None when it cannot be estimated cheaply."""
    if isinstance(x, sympy.Rational):
        if x == 0:
            return -math.inf
        return math.log2(abs(int(x.p))) - math.log2(int(x.q))
    return numeric.magnitude_log2(x)  # a bounded mpmath walk, never sympy's evalf


def check_power(base: sympy.Basic, exp: sympy.Basic) -> None:
    """Reject ``base**exp`` when sympy's exact evaluation could blow up."""
    if exp.free_symbols:
        if base.free_symbols:
            return
        # a^x is harmless until x is sampled; the nesting guard bounds that
        return
    e_log = _magnitude_log2(exp)
    if e_log is None:
        raise GuardError("exponent cannot be estimated")
    if e_log == -math.inf:
        return
    if isinstance(exp, sympy.Rational) and int(exp.q) > 1:
        if int(exp.q) > 1_000:
            raise GuardError("root index too large")
        if isinstance(base, sympy.Rational) and _bits(base) > MAX_ROOT_BITS:
            raise GuardError(f"root of a number over {MAX_ROOT_BITS} bits")
    if base.free_symbols:
        if e_log > math.log2(MAX_SYMBOLIC_EXPONENT):
            raise GuardError(f"exponent larger than {MAX_SYMBOLIC_EXPONENT} on a symbolic base")
        return
    b_log = _magnitude_log2(base)
    if b_log is None:
        raise GuardError("power base cannot be estimated")
    if b_log == -math.inf or b_log == 0.0:
        # 0^n and (+-1)^n never grow; still refuse absurd exponents
        if e_log > 64:
            raise GuardError("exponent too large")
        return
    if e_log > 64 or (2.0**e_log) * abs(b_log) > MAX_BITS:
        raise GuardError(f"power too large (result over {MAX_BITS} bits)")


def check_factorial(n: sympy.Basic) -> None:
    """Reject ``n!`` for integers beyond `MAX_FACTORIAL` (non-integers stay symbolic)."""
    if n.free_symbols:
        return
    if isinstance(n, sympy.Integer) and int(n) > MAX_FACTORIAL:
        raise GuardError(f"factorial argument larger than {MAX_FACTORIAL}")
    m = _magnitude_log2(n)
    if m is None or m > math.log2(MAX_FACTORIAL):
        raise GuardError(f"factorial argument larger than {MAX_FACTORIAL}")


def check_binomial(n: sympy.Basic, k: sympy.Basic) -> None:
    """Reject binomial(n, k) whose exact evaluation is large: n over `MAX_BITS` (the result has
    at most n bits) or k over `MAX_FACTORIAL` (sympy multiplies k factors for a non-integer n)."""
    for arg, cap in ((n, MAX_BITS), (k, MAX_FACTORIAL)):
        if arg.free_symbols:
            continue
        m = _magnitude_log2(arg)
        if m is None or m > math.log2(cap):
            raise GuardError("binomial argument too large")


def _exp_nesting(e: sympy.Basic, depth: int = 0) -> int:
    if depth > MAX_DEPTH:
        raise GuardError(f"expression deeper than {MAX_DEPTH}")
    inner = max((_exp_nesting(a, depth + 1) for a in e.args), default=0)
    if isinstance(e, sympy.exp) or (isinstance(e, sympy.Pow) and e.exp.free_symbols):
        return inner + 1
    return inner


def check_tree(e: sympy.Basic) -> None:
    """Whole-tree limits: node count, free symbols, nesting of exponentials."""
    if not isinstance(e, sympy.Basic):
        return
    n = sum(1 for _ in sympy.preorder_traversal(e))
    if n > MAX_NODES:
        raise GuardError(f"expression has more than {MAX_NODES} nodes")
    if len(e.free_symbols) > MAX_SYMBOLS:
        raise GuardError(f"expression has more than {MAX_SYMBOLS} free symbols")
    if _exp_nesting(e) > MAX_EXP_NESTING:
        raise GuardError(f"exponentials nested deeper than {MAX_EXP_NESTING}")
