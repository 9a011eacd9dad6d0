"""Deciding whether a predicted answer equals the reference answer.

Cheapest test first: structural identity, exact rationals, then numeric evaluation (at fixed
sample points when symbols are free), and a bounded ``simplify`` only when numbers cannot
decide. Containers (sets, tuples, intervals, matrices, relations) are compared item by item.
Every input here already passed `verifiers.math_guard`, so evaluation is bounded.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy

from verifiers import math_numeric as numeric
from verifiers.math_latex import (
    Answer,
    FSet,
    Ival,
    Mat,
    Parsed,
    ParseError,
    Rel,
    Seq,
    Text,
    UnionA,
    from_sympy_set,
    to_sympy_set,
)

DEFAULT_REL_TOL = 1e-9
DEFAULT_ABS_TOL = 1e-6  # answers written with decimals must agree to 6 decimal places
_EXACT_REL = 1e-10  # numeric check of exact expressions (evaluated to 30 digits)
_EXACT_ABS = 1e-20
_SIMPLIFY_MAX_NODES = 20  # simplify's cost grows fast; numbers decide nearly everything first
# fixed (not random) sample values keep verdicts deterministic, hence cacheable; both signs,
# so that sqrt(x^2) and x differ
_SAMPLES = ("0.7391", "-1.2873", "1.6181", "-0.4159", "2.3026", "0.5772")


@dataclass(frozen=True)
class Tolerance:
    rel_tol: float = DEFAULT_REL_TOL
    abs_tol: float = DEFAULT_ABS_TOL


@dataclass(frozen=True)
class Verdict:
    equal: bool
    method: str


def equivalent(gold: Parsed, pred: Parsed, tol: Tolerance) -> Verdict:
    """Is any reading of ``pred`` equivalent to any reading of ``gold``?"""
    cmp = _Comparer(tol, approx=gold.approx or pred.approx)
    first: Verdict | None = None
    for g in gold.readings:
        for p in pred.readings:
            v = cmp.compare(g, p)
            if v.equal:
                return v
            first = first or v
    assert first is not None
    return first


def _is_scalar(a: Answer) -> bool:
    return isinstance(a, sympy.Basic)


def _sub(a: sympy.Basic, b: sympy.Basic) -> sympy.Basic:
    """``a - b`` built unevaluated (see `verifiers.math_latex._exact` for why)."""
    return sympy.Add(a, sympy.Mul(-1, b, evaluate=False), evaluate=False)


def _points(syms: list[sympy.Symbol]):
    """Fixed sample points: each symbol gets a different value of both signs."""
    ctx = numeric.context()
    for j in range(len(_SAMPLES)):
        yield {
            s: ctx.mpf(_SAMPLES[(j + 2 * k) % len(_SAMPLES)]) + ctx.mpf("0.0113") * k
            for k, s in enumerate(syms)
        }


_ALGEBRA_MAX_NODES = 60
_ALGEBRA_MAX_POWER = 8


def _rational_function(e: sympy.Basic) -> bool:
    """A ratio of small polynomials with rational coefficients (exact algebra is cheap)."""
    for node in sympy.preorder_traversal(e):
        if isinstance(node, (sympy.Symbol, sympy.Rational, sympy.Add, sympy.Mul)):
            continue
        if (
            isinstance(node, sympy.Pow)
            and node.exp.is_Integer
            and abs(int(node.exp)) <= _ALGEBRA_MAX_POWER
        ):
            continue
        return False
    return True


def _assignment_value(a: Answer) -> Answer | None:
    """``x = 3`` (a lone symbol on the left) answers 3."""
    if not (isinstance(a, Rel) and a.ops == ("=",)):
        return None
    lhs = a.terms[0]
    # "x = 3", and "f(x) = 2x+1" (read as the product f*x) name what follows
    if isinstance(lhs, sympy.Symbol) or (
        isinstance(lhs, sympy.Mul) and all(isinstance(f, sympy.Symbol) for f in lhs.args)
    ):
        return a.terms[1]
    return None


_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<="}


def rel_to_set(a: Answer) -> Answer | None:
    """A one-variable inequality (or a list of them, read as "or") as an interval/union."""
    if isinstance(a, Seq) and a.brackets == "" and all(isinstance(x, Rel) for x in a.items):
        parts = [rel_to_set(x) for x in a.items]
        if any(p is None for p in parts):
            return None
        return UnionA(tuple(parts))
    if not isinstance(a, Rel):
        return None
    syms = set().union(*(t.free_symbols for t in a.terms if _is_scalar(t)))
    if len(syms) != 1 or not all(_is_scalar(t) for t in a.terms):
        return None
    (v,) = syms
    oo = sympy.oo
    if len(a.ops) == 1:
        (op,) = a.ops
        lhs, rhs = a.terms
        if rhs == v and not lhs.free_symbols and op in _FLIP:
            lhs, rhs, op = rhs, lhs, _FLIP[op]
        if lhs != v or rhs.free_symbols:
            return None
        if op == "<":
            return Ival(-oo, rhs, True, True)
        if op == "<=":
            return Ival(-oo, rhs, True, False)
        if op == ">":
            return Ival(rhs, oo, True, True)
        if op == ">=":
            return Ival(rhs, oo, False, True)
        if op == "!=":
            return UnionA((Ival(-oo, rhs, True, True), Ival(rhs, oo, True, True)))
        return None
    if len(a.ops) == 2 and a.terms[1] == v:
        lo, hi = a.terms[0], a.terms[2]
        if lo.free_symbols or hi.free_symbols:
            return None
        o1, o2 = a.ops
        if o1 in ("<", "<=") and o2 in ("<", "<="):
            return Ival(lo, hi, o1 == "<", o2 == "<")
        if o1 in (">", ">=") and o2 in (">", ">="):
            return Ival(hi, lo, o2 == ">", o1 == ">")
    return None


class _Comparer:
    def __init__(self, tol: Tolerance, approx: bool):
        self.tol = tol
        self.approx = approx

    # -- numbers
    def close(self, a, b) -> bool:
        """Numbers (mpmath) equal within the tolerance that applies to this comparison."""
        d = abs(a - b)
        scale = max(abs(a), abs(b))
        if self.approx:
            return bool(d <= max(self.tol.abs_tol, self.tol.rel_tol * scale))
        return bool(d <= _EXACT_REL * scale + _EXACT_ABS)

    def scalars(self, a: sympy.Basic, b: sympy.Basic) -> Verdict:
        if a == b:
            return Verdict(True, "identical")
        if isinstance(a, sympy.Rational) and isinstance(b, sympy.Rational):
            if not self.approx:
                return Verdict(False, "rational")
            # exact arithmetic: no float overflow on huge numbers
            d, scale = abs(a - b), max(abs(a), abs(b))
            tol = max(sympy.Rational(self.tol.abs_tol), sympy.Rational(self.tol.rel_tol) * scale)
            return Verdict(bool(d <= tol), "tolerance")
        if _has_infinity(a) or _has_infinity(b):
            return Verdict(False, "infinity")
        syms = sorted(a.free_symbols | b.free_symbols, key=str)
        if not syms:
            va, vb = numeric.evaluate(a), numeric.evaluate(b)
            if va is not None and vb is not None:
                return Verdict(self.close(va, vb), "tolerance" if self.approx else "numeric")
            return self._simplify(a, b)
        if (
            not self.approx
            and len(syms) <= 3
            and _size(a) + _size(b) <= _ALGEBRA_MAX_NODES
            and _rational_function(a)
            and _rational_function(b)
        ):
            return Verdict(sympy.cancel(_sub(a, b)) == 0, "algebra")
        agree = 0
        for point in _points(syms):
            va, vb = numeric.evaluate(a, point), numeric.evaluate(b, point)
            if va is None or vb is None:
                continue  # a pole or an unevaluable function here; other points decide
            if not self.close(va, vb):
                return Verdict(False, "sampling")
            agree += 1
        if agree >= 3:
            return Verdict(True, "sampling")
        return self._simplify(a, b)

    def _simplify(self, a: sympy.Basic, b: sympy.Basic) -> Verdict:
        # only reached when numbers cannot decide (poles or overflow at most sample points);
        # simplify is unbounded in general, so it only sees small, tame expressions
        if not (_tame(a) and _tame(b)) or _size(a) + _size(b) > _SIMPLIFY_MAX_NODES:
            return Verdict(False, "undecided (not simplified: too large)")
        try:
            d = sympy.simplify(_sub(a, b))
        except (TypeError, ValueError, ArithmeticError, RecursionError, NotImplementedError):
            return Verdict(False, "undecided")
        return Verdict(d == 0, "simplify")

    # -- containers
    def ordered(self, xs: tuple, ys: tuple, method: str) -> Verdict:
        if len(xs) != len(ys):
            return Verdict(False, f"{method} length")
        for x, y in zip(xs, ys, strict=True):
            if not self.compare(x, y).equal:
                return Verdict(False, method)
        return Verdict(True, method)

    def unordered(self, xs: tuple, ys: tuple, method: str) -> Verdict:
        xs, ys = _dedupe(xs), _dedupe(ys)
        if len(xs) != len(ys):
            return Verdict(False, f"{method} size")
        rest = list(ys)
        for x in xs:
            if x in rest:  # structural match first: cheap
                rest.remove(x)
                continue
            for k, y in enumerate(rest):
                if self.compare(x, y).equal:
                    del rest[k]
                    break
            else:
                return Verdict(False, method)
        return Verdict(True, method)

    def intervals(self, a: Ival, b: Ival) -> Verdict:
        def open_end(x: sympy.Basic, is_open: bool) -> bool:
            return is_open or x in (sympy.oo, -sympy.oo)  # "[2, \infty]" is a common sloppiness

        if open_end(a.lo, a.lopen) != open_end(b.lo, b.lopen) or open_end(
            a.hi, a.ropen
        ) != open_end(b.hi, b.ropen):
            return Verdict(False, "interval bounds")
        ok = self.compare(a.lo, b.lo).equal and self.compare(a.hi, b.hi).equal
        return Verdict(ok, "interval")

    def compare(self, g: Answer, p: Answer) -> Verdict:  # noqa: C901 - a dispatch table
        if isinstance(g, Rel) or isinstance(p, Rel):
            return self.relations(g, p)
        if isinstance(g, Text) or isinstance(p, Text):
            return Verdict(g == p, "text")
        if _is_scalar(g) and _is_scalar(p):
            return self.scalars(g, p)
        if isinstance(g, FSet) and len(g.items) == 1 and _is_scalar(p):
            return self.compare(g.items[0], p)
        if isinstance(p, FSet) and len(p.items) == 1 and _is_scalar(g):
            return self.compare(g, p.items[0])
        if isinstance(g, Mat) or isinstance(p, Mat):
            if not (isinstance(g, Mat) and isinstance(p, Mat)):
                return Verdict(False, "matrix vs non-matrix")
            if len(g.rows) != len(p.rows) or len(g.rows[0]) != len(p.rows[0]):
                return Verdict(False, "matrix shape")
            return self.ordered(sum(g.rows, ()), sum(p.rows, ()), "matrix")
        g, p = _as_interval(g, p), _as_interval(p, g)
        if isinstance(g, (UnionA, Ival)) or isinstance(p, (UnionA, Ival)):
            return self.sets(g, p)
        if isinstance(g, Seq) and isinstance(p, Seq):
            if g.brackets == "":  # a bare list of solutions: any order
                return self.unordered(g.items, p.items, "list")
            if len(g.items) == 2 and {g.brackets, p.brackets} == {"()", "[]"}:
                return Verdict(False, "open vs closed pair")
            return self.ordered(g.items, p.items, "tuple")
        if isinstance(g, (FSet, Seq)) and isinstance(p, (FSet, Seq)):
            # a set against a list: order never matters; a set against a tuple neither
            return self.unordered(g.items, p.items, "set")
        return Verdict(False, f"{type(g).__name__} vs {type(p).__name__}")

    def sets(self, g: Answer, p: Answer) -> Verdict:
        gs, ps = self._canonical_set(g), self._canonical_set(p)
        if gs is None or ps is None:
            return Verdict(False, "set vs non-set")
        if isinstance(gs, Ival) and isinstance(ps, Ival):
            return self.intervals(gs, ps)
        gparts = gs.parts if isinstance(gs, UnionA) else (gs,)
        pparts = ps.parts if isinstance(ps, UnionA) else (ps,)
        if len(gparts) != len(pparts):
            return Verdict(False, "union size")
        rest = list(pparts)
        for x in gparts:
            for k, y in enumerate(rest):
                if type(x) is type(y) and (
                    self.intervals(x, y).equal if isinstance(x, Ival) else self.compare(x, y).equal
                ):
                    del rest[k]
                    break
            else:
                return Verdict(False, "union")
        return Verdict(True, "union")

    def _canonical_set(self, a: Answer) -> Answer | None:
        if isinstance(a, Seq) and a.brackets in ("()", "[]") and len(a.items) == 2:
            a = _seq_interval(a)
        if isinstance(a, (Rel, Seq)):
            a = rel_to_set(a)
        if not isinstance(a, (Ival, UnionA, FSet)):
            return None
        if isinstance(a, UnionA):
            parts = [self._canonical_set(x) for x in a.parts]
            if any(x is None for x in parts):
                return None
            a = UnionA(tuple(parts))
        # merge touching pieces exactly when all bounds are numbers ([1,2] U [2,3] = [1,3])
        if not self.approx:
            try:
                return from_sympy_set(to_sympy_set(a))
            except (ParseError, TypeError, ValueError):
                pass
        return a

    def relations(self, g: Answer, p: Answer) -> Verdict:
        gv, pv = _assignment_value(g), _assignment_value(p)
        if isinstance(g, Rel) and isinstance(p, Rel):
            if gv is not None and pv is not None and g.terms[0] == p.terms[0]:
                return self.compare(gv, pv)
            gs, ps = rel_to_set(g), rel_to_set(p)
            if gs is not None and ps is not None:
                return self.sets(gs, ps)
            return self.rel_vs_rel(g, p)
        if isinstance(g, Rel):
            if gv is not None:
                return self.compare(gv, p)
            gs = rel_to_set(g)
            return self.sets(gs, p) if gs is not None else Verdict(False, "relation vs value")
        pv_set = rel_to_set(p)
        if pv is not None:
            return self.compare(g, pv)
        return self.sets(g, pv_set) if pv_set is not None else Verdict(False, "value vs relation")

    def rel_vs_rel(self, g: Rel, p: Rel) -> Verdict:
        g, p = _rightward(g), _rightward(p)
        if len(g.ops) != len(p.ops):
            return Verdict(False, "relation shape")
        if len(g.ops) == 1 and g.ops == p.ops and g.ops[0] in ("=", "!="):
            dg = _scalar_or_none(g.terms[0], g.terms[1])
            dp = _scalar_or_none(p.terms[0], p.terms[1])
            if dg is None or dp is None:
                return Verdict(False, "relation")
            return Verdict(self.proportional(dg, dp, positive=False), "equation")
        if g.ops != p.ops:
            return Verdict(False, "relation operators")
        if len(g.ops) == 1:
            dg = _scalar_or_none(g.terms[1], g.terms[0])
            dp = _scalar_or_none(p.terms[1], p.terms[0])
            if dg is None or dp is None:
                return Verdict(False, "relation")
            return Verdict(self.proportional(dg, dp, positive=True), "inequality")
        return self.ordered(g.terms, p.terms, "relation chain")

    def proportional(self, a: sympy.Basic, b: sympy.Basic, positive: bool) -> bool:
        """``a == c * b`` for a constant c != 0 (c > 0 when ``positive``)."""
        if a == b:
            return True
        syms = sorted(a.free_symbols | b.free_symbols, key=str)
        if not syms:
            return False
        ratios = []
        for point in _points(syms):
            va, vb = numeric.evaluate(a, point), numeric.evaluate(b, point)
            if va is None or vb is None or abs(vb) < 1e-12:
                continue
            ratios.append(va / vb)
        if len(ratios) < 3:
            return False
        r0 = ratios[0]
        if abs(r0) < 1e-12 or (positive and (abs(r0.imag) > 1e-9 or r0.real <= 0)):
            return False
        return all(abs(r - r0) <= 1e-9 * abs(r0) for r in ratios[1:])


def _scalar_or_none(a: Answer, b: Answer) -> sympy.Basic | None:
    if _is_scalar(a) and _is_scalar(b):
        return _sub(a, b)
    return None


_TAME = (sympy.Symbol, sympy.Add, sympy.Mul, sympy.sin, sympy.cos, sympy.tan, sympy.exp,
         sympy.log)  # fmt: skip


def _tame(e: sympy.Basic) -> bool:
    """Small rationals, rational powers and a few elementary functions: what simplify handles
    quickly."""
    for node in sympy.preorder_traversal(e):
        if isinstance(node, sympy.Rational):
            if max(abs(int(node.p)), int(node.q)) > 1000:
                return False
        elif isinstance(node, sympy.Pow):
            if not isinstance(node.exp, sympy.Rational):
                return False
        elif not (isinstance(node, _TAME) or node in (sympy.pi, sympy.E, sympy.I)):
            return False
    return True


def _size(e: sympy.Basic) -> int:
    # a plain node count: sympy.count_ops calls as_numer_denom, which evaluates
    return sum(1 for _ in sympy.preorder_traversal(e))


def _has_infinity(e: sympy.Basic) -> bool:
    return any(
        n in (sympy.oo, -sympy.oo, sympy.zoo, sympy.nan) for n in sympy.preorder_traversal(e)
    )


def _rightward(r: Rel) -> Rel:
    """``a > b`` as ``b < a`` so that both sides of a comparison read in one direction."""
    if r.ops and all(op in (">", ">=") for op in r.ops):
        return Rel(tuple(reversed(r.terms)), tuple(_FLIP[op] for op in reversed(r.ops)))
    return r


def _seq_interval(s: Seq) -> Ival:
    lo, hi = s.items
    op = s.brackets == "()"
    return Ival(lo, hi, op, op)


def _as_interval(a: Answer, other: Answer) -> Answer:
    """A 2-item "(a, b)" / "[a, b]" read as an interval when compared with a set."""
    if (
        isinstance(a, Seq)
        and len(a.items) == 2
        and a.brackets in ("()", "[]")
        and isinstance(other, (Ival, UnionA))
        and all(_is_scalar(x) for x in a.items)
    ):
        return _seq_interval(a)
    return a


def _dedupe(xs: tuple) -> tuple:
    out: list = []
    for x in xs:
        if x not in out:
            out.append(x)
    return out  # type: ignore[return-value]
