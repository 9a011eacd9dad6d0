"""A small LaTeX/plain-text math parser that builds sympy objects without ever calling ``eval``.

Model text never reaches ``sympify``/``parse_expr`` (both ``eval`` their input). Instead a
tokenizer and a recursive-descent parser build sympy objects node by node, and every number,
power and factorial passes `verifiers.math_guard` *before* sympy evaluates it, so
``9^{9^{9^9}}`` or ``(10^7)!`` is rejected in microseconds. Containers that sympy models poorly
(tuples vs open intervals, bare answer lists) are small dataclasses here; scalars are sympy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import sympy

from verifiers import math_guard as guard
from verifiers import math_numeric as numeric


class ParseError(ValueError):
    """The text is not a math answer this parser understands."""


# ---------------------------------------------------------------------------------------------
# answer values


@dataclass(frozen=True)
class Text:
    """A non-mathematical answer ("yes", "\\mathbb{Z}", a set-builder we do not parse)."""

    value: str


@dataclass(frozen=True)
class Seq:
    """A tuple/list. ``brackets`` is "()", "[]", "<>" or "" for a bare comma-separated list."""

    items: tuple
    brackets: str


@dataclass(frozen=True)
class FSet:
    items: tuple


@dataclass(frozen=True)
class Ival:
    lo: sympy.Basic
    hi: sympy.Basic
    lopen: bool
    ropen: bool


@dataclass(frozen=True)
class UnionA:
    parts: tuple


@dataclass(frozen=True)
class Mat:
    rows: tuple  # tuple of tuples of sympy expressions


@dataclass(frozen=True)
class Rel:
    """A relation or chain: ``terms[0] ops[0] terms[1] ops[1] …``; ops in = != < <= > >=."""

    terms: tuple
    ops: tuple


Answer = Any  # sympy.Basic | Text | Seq | FSet | Ival | UnionA | Mat | Rel


def show(a: Answer) -> str:
    """A short human-readable form of a parsed answer (for result details)."""
    if isinstance(a, Text):
        return f"text({a.value!r})"
    if isinstance(a, Seq):
        inner = ", ".join(show(x) for x in a.items)
        return f"{a.brackets[:1]}{inner}{a.brackets[1:]}" if a.brackets else f"list({inner})"
    if isinstance(a, FSet):
        return "{" + ", ".join(show(x) for x in a.items) + "}"
    if isinstance(a, Ival):
        return f"{'(' if a.lopen else '['}{a.lo}, {a.hi}{')' if a.ropen else ']'}"
    if isinstance(a, UnionA):
        return " U ".join(show(p) for p in a.parts)
    if isinstance(a, Mat):
        return "Matrix(" + str([[str(x) for x in r] for r in a.rows]) + ")"
    if isinstance(a, Rel):
        out = show(a.terms[0])
        for op, t in zip(a.ops, a.terms[1:], strict=True):
            out += f" {op} {show(t)}"
        return out
    return show_expr(a)


def show_expr(e: sympy.Basic) -> str:
    """Infix text of a sympy tree, written by hand: sympy's printers re-evaluate unevaluated
    trees (ordering terms, rewriting x**-1 as 1/x), which can take seconds on hostile input."""
    if isinstance(e, sympy.Rational):
        return str(e.p) if e.q == 1 else f"{e.p}/{e.q}"
    if isinstance(e, sympy.Symbol):
        return e.name
    if isinstance(e, sympy.Add):
        out = show_expr(e.args[0])
        for t in e.args[1:]:
            text = show_expr(t)
            out += f" - {text[1:]}" if text.startswith("-") else f" + {text}"
        return out
    if isinstance(e, sympy.Mul):
        if e.args[0] == -1 and len(e.args) > 1:
            return "-" + "*".join(_paren(f, sympy.Add) for f in e.args[1:])
        return "*".join(_paren(f, sympy.Add) for f in e.args)
    if isinstance(e, sympy.Pow):
        if e.exp == sympy.S.Half:
            return f"sqrt({show_expr(e.base)})"
        return f"{_paren(e.base, (sympy.Add, sympy.Mul, sympy.Pow))}**{_paren(e.exp, (sympy.Add, sympy.Mul, sympy.Pow))}"
    if isinstance(e, sympy.Function) or e.args:
        return f"{type(e).__name__}({', '.join(show_expr(x) for x in e.args)})"
    return str(e)  # atoms: pi, E, I, oo, zoo, nan


def _paren(e: sympy.Basic, kinds: type | tuple) -> str:
    text = show_expr(e)
    if isinstance(e, kinds) or (isinstance(e, sympy.Rational) and (e.q != 1 or e < 0)):
        return f"({text})"
    return text


# ---------------------------------------------------------------------------------------------
# tokenizer

# words read whole in plain text: "sqrt(2)", "2 pi", "x = 1 or x = 2"
MATH_WORDS = set(
    "sqrt pi sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh ln log exp "
    "infty infinity inf oo or and".split()
)
_TEXT_CMDS = {"text", "textbf", "textit", "textrm", "textnormal", "mbox", "textsf", "texttt"}
_UNWRAP_CMDS = {
    "mathbf", "mathit", "boldsymbol", "bm", "mathsf", "mathcal", "mathtt", "mathrm",
    "mathnormal", "pmb", "bf", "rm", "it", "hat", "tilde", "vec", "widehat", "widetilde",
}  # fmt: skip
_TOKEN = re.compile(
    r"(?P<ws>\s+)"
    r"|(?P<num>\d+(?:\.\d*)?|\.\d+)"
    r"|(?P<cmd>\\[a-zA-Z]+|\\.)"
    r"|(?P<word>[a-zA-Z]+)"
    r"|(?P<op><=|>=|!=|=<|=>|[-+*/^_!'()\[\]{}|,;=<>&:%])",
    re.DOTALL,
)


@dataclass(frozen=True)
class Tok:
    kind: str  # num | letter | word | cmd | op | text | begin | end | eof
    value: str


def _braced_arg(s: str, i: int) -> tuple[str, int]:
    """``s[i:]`` starts (after spaces) with ``{…}``: its content and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s) or s[i] != "{":
        raise ParseError("expected '{'")
    depth = 0
    for j in range(i, len(s)):
        if s[j] == "{" and s[j - 1] != "\\":
            depth += 1
        elif s[j] == "}" and s[j - 1] != "\\":
            depth -= 1
            if depth == 0:
                return s[i + 1 : j], j + 1
    raise ParseError("unbalanced braces")


def tokenize(s: str) -> list[Tok]:
    """Split normalised text into tokens (letters one by one, known words whole)."""
    out: list[Tok] = []
    i = 0
    while i < len(s):
        m = _TOKEN.match(s, i)
        if m is None:
            raise ParseError(f"unexpected character {s[i]!r}")
        kind = m.lastgroup
        val = m.group(0)
        i = m.end()
        if kind == "ws":
            continue
        if kind == "cmd":
            name = val[1:]
            if name in _TEXT_CMDS:
                content, i = _braced_arg(s, i)
                out.append(Tok("text", content.strip()))
                continue
            if name == "operatorname":
                content, i = _braced_arg(s, i)
                out.append(Tok("word", content.strip().replace("\\", "").lower()))
                continue
            if name in ("begin", "end"):
                env, i = _braced_arg(s, i)
                env = env.strip().rstrip("*")
                if name == "begin" and env == "array":
                    _, i = _braced_arg(s, i)  # column spec
                out.append(Tok(name, env))
                continue
            if name == "mathbb":
                content, i = _braced_arg(s, i)
                out.append(Tok("cmd", "mathbb:" + content.strip()))
                continue
            if name in _UNWRAP_CMDS:
                continue
            out.append(Tok("cmd", name))
        elif kind == "word":
            low = val.lower()
            if low in MATH_WORDS:
                out.append(Tok("word", low))
            else:
                out.extend(Tok("letter", ch) for ch in val)
        elif kind == "op":
            out.append(Tok("op", {"=<": "<=", "=>": ">="}.get(val, val)))
        else:
            out.append(Tok(kind, val))
        if len(out) > guard.MAX_TOKENS:
            raise guard.GuardError(f"answer has more than {guard.MAX_TOKENS} tokens")
    out.append(Tok("eof", ""))
    return out


# ---------------------------------------------------------------------------------------------
# guarded arithmetic


def _scalar(x: Answer) -> sympy.Basic:
    if isinstance(x, int):
        return sympy.Integer(x)
    if isinstance(x, sympy.Basic) and not isinstance(x, sympy.MatrixBase):
        return x
    raise ParseError("arithmetic on a set, tuple, interval or relation is not supported")


def _exact(*args: sympy.Basic) -> bool:
    # Only rational arithmetic is left to sympy's eager evaluation (exact and size-guarded);
    # anything irrational or symbolic is built unevaluated, because sympy's automatic rules
    # there (assumption queries, expansions) can take seconds on nested input. Equivalence
    # is decided numerically and algebraically later, so nothing is lost.
    return all(isinstance(a, sympy.Rational) or a in (sympy.oo, -sympy.oo) for a in args)


def _defined(x: sympy.Basic) -> sympy.Basic:
    """An exact result, size-checked; oo - oo and 0*oo have no value."""
    if x is sympy.nan or x is sympy.zoo:
        raise ParseError("undefined value (such as oo - oo)")
    return guard.check_number(x)


def _add(a: Answer, b: Answer) -> sympy.Basic:
    a, b = _scalar(a), _scalar(b)
    if _exact(a, b):
        return _defined(a + b)
    return sympy.Add(*_flat(sympy.Add, a, b), evaluate=False)


def _mul(a: Answer, b: Answer) -> sympy.Basic:
    a, b = _scalar(a), _scalar(b)
    if _exact(a, b):
        return _defined(a * b)
    if a == 1 or b == 1:
        return b if a == 1 else a
    if (a == 0 or b == 0) and not (a.has(sympy.oo, -sympy.oo) or b.has(sympy.oo, -sympy.oo)):
        return sympy.Integer(0)
    return sympy.Mul(*_flat(sympy.Mul, a, b), evaluate=False)


def _flat(op: type, *xs: sympy.Basic) -> list[sympy.Basic]:
    # a + b + c as one flat Add, the way sympy would print and compare it
    out: list[sympy.Basic] = []
    for x in xs:
        out.extend(x.args if isinstance(x, op) else (x,))
    return out


def _div(a: Answer, b: Answer) -> sympy.Basic:
    b = _scalar(b)
    if b == 0:
        raise ParseError("division by zero")
    return _mul(a, _pow(b, sympy.Integer(-1)))


def _pow(b: Answer, e: Answer) -> sympy.Basic:
    b, e = _scalar(b), _scalar(e)
    guard.check_power(b, e)
    if b == 0:
        v = numeric.evaluate(e)
        if v is None or numeric.real_part(v) <= 0:
            raise ParseError("0 to a non-positive power")
    if _exact(b, e):
        return _defined(sympy.Pow(b, e))
    return sympy.Pow(b, e, evaluate=False)


def _factorial(n: Answer) -> sympy.Basic:
    n = _scalar(n)
    guard.check_factorial(n)
    if isinstance(n, sympy.Integer):
        if n < 0:
            raise ParseError("factorial of a negative integer")
        return guard.check_number(sympy.factorial(n))
    return sympy.factorial(n, evaluate=False)


_REL_CMDS = {
    "le": "<=", "leq": "<=", "leqslant": "<=", "ge": ">=", "geq": ">=", "geqslant": ">=",
    "lt": "<", "gt": ">", "ne": "!=", "neq": "!=", "approx": "=", "equiv": "=", "in": "in",
}  # fmt: skip
_REL_OPS = {"=": "=", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "!=": "!="}
_FUNCS = {
    "sin": sympy.sin, "cos": sympy.cos, "tan": sympy.tan, "cot": sympy.cot, "sec": sympy.sec,
    "csc": sympy.csc, "arcsin": sympy.asin, "arccos": sympy.acos, "arctan": sympy.atan,
    "arccot": sympy.acot, "arcsec": sympy.asec, "arccsc": sympy.acsc, "sinh": sympy.sinh,
    "cosh": sympy.cosh, "tanh": sympy.tanh, "coth": sympy.coth, "exp": sympy.exp,
    "ln": sympy.log, "log": sympy.log, "lg": None, "sqrt": None,
    "max": sympy.Max, "min": sympy.Min, "gcd": None, "lcm": None,
    "floor": sympy.floor, "ceil": sympy.ceiling, "abs": sympy.Abs,
}  # fmt: skip
_INVERSE = {"sin": "arcsin", "cos": "arccos", "tan": "arctan", "cot": "arccot",
            "sec": "arcsec", "csc": "arccsc"}  # fmt: skip
_GREEK = {
    "alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
    "vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau", "upsilon",
    "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta", "Lambda", "Xi", "Pi",
    "Sigma", "Phi", "Psi", "Omega",
}  # fmt: skip
_MATRIX_ENVS = {"pmatrix", "bmatrix", "Bmatrix", "vmatrix", "Vmatrix", "matrix", "smallmatrix",
                "array"}  # fmt: skip
_OPENERS = {"(": ")", "[": "]"}
_PI_OVER_180 = sympy.pi / 180


def _symbol(name: str) -> sympy.Symbol:
    # math graders fold case (Math-Verify does too): "A" and "a" are the same choice
    return sympy.Symbol(name.lower())


# ---------------------------------------------------------------------------------------------
# parser


class _Parser:
    def __init__(self, tokens: list[Tok], percent_div: bool, pm_sign: int):
        self.toks = tokens
        self.i = 0
        self.depth = 0
        self.abs_depth = 0
        self.percent_div = percent_div
        self.pm_sign = pm_sign
        self.approx = False  # a decimal literal was seen
        self.has_percent = False
        self.has_pm = False
        self.trig_depth = 0

    # -- token helpers
    def peek(self, k: int = 0) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        t = self.toks[self.i]
        self.i += 1
        return t

    def at(self, kind: str, value: str | None = None) -> bool:
        t = self.peek()
        return t.kind == kind and (value is None or t.value == value)

    def accept(self, kind: str, value: str | None = None) -> bool:
        if self.at(kind, value):
            self.i += 1
            return True
        return False

    def expect(self, kind: str, value: str) -> None:
        if not self.accept(kind, value):
            got = self.peek()
            raise ParseError(f"expected {value!r}, got {got.value or got.kind!r}")

    def enter(self) -> None:
        self.depth += 1
        if self.depth > guard.MAX_DEPTH:
            raise guard.GuardError(f"answer nests deeper than {guard.MAX_DEPTH}")

    # -- grammar
    def parse(self) -> Answer:
        items = self.parse_list(closers=())
        if not self.at("eof"):
            raise ParseError(f"unexpected {self.peek().value!r}")
        if not items:
            raise ParseError("empty answer")
        if len(items) == 1:
            return items[0]
        return Seq(tuple(items), "")

    def _is_separator(self) -> bool:
        t = self.peek()
        if t.kind == "op" and t.value in (",", ";"):
            return True
        if t.kind == "word" and t.value in ("or", "and"):
            return True
        return t.kind == "text" and t.value.lower() in ("or", "and", ",")

    def parse_list(self, closers: tuple[str, ...]) -> list[Answer]:
        items: list[Answer] = []
        while True:
            t = self.peek()
            if t.kind == "eof" or (t.kind in ("op", "cmd") and t.value in closers):
                break
            items.append(self.parse_item())
            if len(items) > guard.MAX_ITEMS:
                raise guard.GuardError(f"more than {guard.MAX_ITEMS} items")
            if not self._is_separator():
                break
            self.next()
        return items

    def parse_item(self) -> Answer:
        self.enter()
        left = self.parse_relation()
        while True:
            t = self.peek()
            is_union = (t.kind == "cmd" and t.value == "cup") or (
                t.kind == "letter" and t.value == "U" and not isinstance(left, sympy.Basic)
            )
            if is_union:
                self.next()
                left = _set_op("cup", left, self.parse_relation())
            elif t.kind == "cmd" and t.value in ("cap", "setminus"):
                self.next()
                left = _set_op(t.value, left, self.parse_relation())
            else:
                break
        self.depth -= 1
        return left

    def _rel_op(self) -> str | None:
        t = self.peek()
        if t.kind == "op" and t.value in _REL_OPS:
            return _REL_OPS[t.value]
        if t.kind == "cmd" and t.value in _REL_CMDS:
            return _REL_CMDS[t.value]
        return None

    def parse_relation(self) -> Answer:
        terms = [self.parse_sum()]
        ops: list[str] = []
        while (op := self._rel_op()) is not None:
            self.next()
            if op == "in":
                return self.parse_item()  # "x \in [1, 2]" answers with the set
            ops.append(op)
            terms.append(self.parse_sum())
        if not ops:
            return terms[0]
        return Rel(tuple(terms), tuple(ops))

    def parse_sum(self) -> Answer:
        self.enter()
        left = self.parse_term()
        while True:
            t = self.peek()
            if t.kind == "op" and t.value in "+-":
                self.next()
                right = self.parse_term()
                left = _add(left, right if t.value == "+" else _mul(-1, right))
            elif t.kind == "cmd" and t.value in ("pm", "mp"):
                self.next()
                self.has_pm = True
                sign = self.pm_sign if t.value == "pm" else -self.pm_sign
                left = _add(left, _mul(sign, self.parse_term()))
            else:
                break
        self.depth -= 1
        return left

    def _starts_atom(self) -> bool:
        t = self.peek()
        if t.kind in ("num", "letter", "begin"):
            return True
        if t.kind == "word":
            return t.value not in ("or", "and")
        if t.kind == "op":
            return t.value in "([{" or (t.value == "|" and self.abs_depth == 0)
        if t.kind == "cmd":
            v = t.value
            if v in ("|", "lvert", "vert"):
                return self.abs_depth == 0
            return (
                v in _FUNCS
                or v in _GREEK
                or v in ("frac", "sqrt", "binom", "pi", "infty", "{", "langle", "lfloor",
                         "lceil", "overline", "emptyset", "varnothing", "imath")
                or v.startswith("mathbb:")
            )  # fmt: skip
        return False

    def parse_term(self) -> Answer:
        self.enter()
        left = self.parse_unary()
        while True:
            t = self.peek()
            if t.kind == "op" and t.value in ("*", "/", ":"):
                self.next()
                right = self.parse_unary()
                left = _mul(left, right) if t.value == "*" else _div(left, right)
            elif t.kind == "cmd" and t.value in ("cdot", "times", "ast"):
                self.next()
                left = _mul(left, self.parse_unary())
            elif t.kind == "cmd" and t.value == "div":
                self.next()
                left = _div(left, self.parse_unary())
            elif (
                t.kind == "text"
                and t.value.lower() not in ("", "or", "and", ",")
                and isinstance(left, sympy.Basic)
            ):
                self.next()  # a unit or remark after a value: "5 \text{ apples}"
            elif isinstance(left, sympy.Basic) and self._starts_atom():
                left = _mul(left, self.parse_power())  # implicit product: 2x, 2\pi, (a)(b)
            else:
                break
        self.depth -= 1
        return left

    def parse_unary(self) -> Answer:
        t = self.peek()
        if t.kind == "op" and t.value in "+-":
            self.next()
            self.enter()
            v = self.parse_unary()
            self.depth -= 1
            return v if t.value == "+" else _mul(-1, v)
        if t.kind == "cmd" and t.value in ("pm", "mp"):
            self.next()
            self.has_pm = True
            sign = self.pm_sign if t.value == "pm" else -self.pm_sign
            return _mul(sign, self.parse_unary())
        return self.parse_power()

    def _postfix(self, base: Answer) -> Answer:
        while True:
            if self.at("op", "!"):
                self.next()
                base = _factorial(base)
            elif self.at("op", "%"):
                self.next()
                self.has_percent = True
                if self.percent_div:
                    base = _div(base, 100)
            elif self.at("cmd", "degree"):
                self.next()
                if self.trig_depth:  # sin 30° = sin(pi/6); elsewhere 30° answers 30
                    base = _mul(base, _PI_OVER_180)
            elif self.at("op", "'") or self.at("cmd", "prime"):
                self.next()
                if not isinstance(base, sympy.Symbol):
                    raise ParseError("prime on a non-symbol")
                base = _symbol(base.name + "'")
            else:
                return base

    def parse_power(self) -> Answer:
        self.enter()
        base = self._postfix(self.parse_atom())
        while self.accept("op", "^"):
            base = self._postfix(_pow(base, self.parse_exponent()))
        self.depth -= 1
        return base

    def parse_exponent(self) -> Answer:
        self.enter()
        t = self.peek()
        if t.kind == "op" and t.value == "{":
            self.next()
            v = self.parse_sum()
            self.expect("op", "}")
        elif t.kind == "op" and t.value in "+-":
            self.next()
            v = self.parse_exponent()
            v = v if t.value == "+" else _mul(-1, v)
        elif t.kind == "num":
            self.next()
            v = self._number(t.value)
        else:
            v = self.parse_atom()
        self.depth -= 1
        return v

    def _number(self, text: str) -> sympy.Rational:
        if text.endswith("."):
            text = text[:-1]
        if "." in text:
            self.approx = True
        if len(text) > 400:
            raise guard.GuardError("number literal too long")
        return guard.check_number(sympy.Rational(text))

    def _single_char_arg(self) -> Answer:
        """A LaTeX macro argument without braces: ``\\frac12`` reads one digit at a time."""
        t = self.peek()
        if t.kind == "num" and len(t.value) > 1 and t.value[0] != ".":
            # split in place (not consumed) so that backtracking re-reads the same tokens
            self.toks[self.i : self.i + 1] = [Tok("num", t.value[0]), Tok("num", t.value[1:])]
            return self._number(self.next().value)
        if t.kind == "op" and t.value == "{":
            self.next()
            v = self.parse_sum()
            self.expect("op", "}")
            return v
        return self.parse_atom()

    def parse_atom(self) -> Answer:  # noqa: C901 - one branch per token kind reads best
        self.enter()
        t = self.next()
        k, v = t.kind, t.value
        if k == "num":
            out = self._number_atom(v)
        elif k == "letter":
            out = self._letter(v)
        elif k == "word":
            out = self._word(v)
        elif k == "cmd":
            out = self._command(v)
        elif k == "op" and v in _OPENERS:
            out = self._bracket(v)
        elif k == "op" and v == "{":
            items = self.parse_list(closers=("}",))
            self.expect("op", "}")
            if len(items) == 1:
                out = items[0]
            elif not items:
                out = FSet(())
            else:
                out = Seq(tuple(items), "")
        elif k == "op" and v == "|":
            out = self._abs("op", "|")
        elif k == "begin" and v in _MATRIX_ENVS:
            out = self._matrix(v)
        elif k == "text":
            out = self._text_atom(v)
        else:
            raise ParseError(f"unexpected {v or k!r}")
        self.depth -= 1
        return out

    def _number_atom(self, text: str) -> Answer:
        if self.at("cmd", "overline") and "." in text:
            self.next()
            digits = self._group_text()
            if not digits.isdigit():
                raise ParseError("\\overline after a decimal must hold digits")
            return _repeating(text, digits)
        n = self._number(text)
        # mixed number: 2\frac{1}{2} means 2 + 1/2
        if "." not in text and self.at("cmd", "frac"):
            save = self.i
            self.next()
            frac = self._frac()
            if isinstance(frac, sympy.Rational) and frac > 0 and frac < 1:
                return _add(n, frac)
            self.i = save
        return n

    def _group_text(self) -> str:
        self.expect("op", "{")
        parts = []
        while not self.at("op", "}"):
            t = self.next()
            if t.kind == "eof":
                raise ParseError("unbalanced braces")
            parts.append(t.value)
        self.next()
        return "".join(parts)

    def _subscript(self) -> str:
        t = self.next()
        if t.kind == "op" and t.value == "{":
            self.i -= 1
            return self._group_text()
        if t.kind in ("num", "letter", "word"):
            return t.value
        if t.kind == "cmd":
            return t.value
        raise ParseError("bad subscript")

    def _letter(self, ch: str) -> Answer:
        name = ch
        if self.accept("op", "_"):
            name = f"{ch}_{self._subscript()}"
            return _symbol(name)
        if ch in "eE":
            return sympy.E
        if ch in "iI":
            return sympy.I
        return _symbol(name)

    def _word(self, w: str) -> Answer:
        if w == "pi":
            return sympy.pi
        if w in ("infty", "infinity", "inf", "oo"):
            return sympy.oo
        if w in _FUNCS:
            return self._function(w)
        raise ParseError(f"unexpected word {w!r}")

    def _command(self, name: str) -> Answer:  # noqa: C901
        if name == "frac":
            return self._frac()
        if name == "sqrt":
            return self._sqrt()
        if name == "binom":
            n, k = self._single_char_arg(), self._single_char_arg()
            n, k = _scalar(n), _scalar(k)
            guard.check_binomial(n, k)
            if n.is_Integer and k.is_Integer:
                return guard.check_number(sympy.binomial(n, k))
            # sympy multiplies out binomial(pi, 1000) term by term (minutes); gamma evaluates fast
            return _div(
                _call(sympy.gamma, _add(n, 1)),
                _mul(_call(sympy.gamma, _add(k, 1)), _call(sympy.gamma, _add(_add(n, -k), 1))),
            )
        if name == "pi":
            return sympy.pi
        if name == "infty":
            return sympy.oo
        if name in ("emptyset", "varnothing"):
            return FSet(())
        if name == "imath":
            return sympy.I
        if name in _FUNCS:
            return self._function(name)
        if name in _GREEK:
            if self.accept("op", "_"):
                return _symbol(f"{name}_{self._subscript()}")
            return _symbol(name)
        if name == "{":
            items = self.parse_list(closers=("}",))
            self.expect("cmd", "}")
            return FSet(tuple(items))
        if name == "langle":
            items = self.parse_list(closers=("rangle",))
            self.expect("cmd", "rangle")
            return Seq(tuple(items), "<>")
        if name in ("|", "lvert", "vert"):
            return self._abs("cmd", {"|": "|", "lvert": "rvert", "vert": "vert"}[name])
        if name in ("lfloor", "lceil"):
            inner = self.parse_sum()
            self.expect("cmd", "rfloor" if name == "lfloor" else "rceil")
            return _call(sympy.floor if name == "lfloor" else sympy.ceiling, _scalar(inner))
        if name == "overline":
            return _symbol("overline_" + self._group_text())
        if name.startswith("mathbb:"):
            letter = name.split(":", 1)[1]
            if letter == "R":
                return Ival(-sympy.oo, sympy.oo, True, True)
            return Text("\\mathbb{" + letter + "}")
        raise ParseError(f"unsupported command \\{name}")

    def _frac(self) -> Answer:
        num = self._single_char_arg()
        den = self._single_char_arg()
        return _div(num, den)

    def _sqrt(self) -> Answer:
        index: Answer = sympy.Integer(2)
        if self.accept("op", "["):
            index = self.parse_sum()
            self.expect("op", "]")
        t = self.peek()
        if t.kind == "op" and t.value == "(":
            self.next()
            arg = self.parse_sum()
            self.expect("op", ")")
        else:
            arg = self._single_char_arg()
        arg, index = _scalar(arg), _scalar(index)
        if (
            arg.is_Rational and arg < 0 and index.is_Integer and index % 2 == 1
        ):  # the real root: \sqrt[3]{-8} = -2, not sympy's principal complex root
            return _mul(-1, _pow(-arg, _div(1, index)))
        return _pow(arg, _div(1, index))

    def _abs(self, kind: str, closer: str) -> Answer:
        self.abs_depth += 1
        inner = self.parse_sum()
        self.abs_depth -= 1
        self.expect(kind, closer)
        return _call(sympy.Abs, _scalar(inner))

    def _function(self, name: str) -> Answer:
        if name == "sqrt":
            return self._sqrt()
        power: Answer | None = None
        base: Answer | None = None
        for _ in range(2):
            if self.accept("op", "^"):
                power = self.parse_exponent()
            elif self.accept("op", "_"):
                base = self._single_char_arg()
        if power == -1 and name in _INVERSE:
            name, power = _INVERSE[name], None
        trig = name in _INVERSE
        self.trig_depth += trig
        if self.at("op", "("):
            self.next()
            args = self.parse_list(closers=(")",))
            self.expect("op", ")")
        elif self.at("op", "{"):
            self.next()
            args = [self.parse_sum()]
            self.expect("op", "}")
        else:
            arg = self.parse_power()
            while self._starts_atom() and not self._at_function():
                arg = _mul(arg, self.parse_power())
            args = [arg]
        self.trig_depth -= trig
        out = _apply(name, [_scalar(a) for a in args], base)
        return _pow(out, power) if power is not None else out

    def _at_function(self) -> bool:
        t = self.peek()
        return t.kind in ("cmd", "word") and t.value in _FUNCS

    def _bracket(self, opener: str) -> Answer:
        items = self.parse_list(closers=(")", "]"))
        closer = self.next()
        if closer.kind != "op" or closer.value not in (")", "]"):
            raise ParseError(f"unclosed {opener!r}")
        if len(items) == 1 and opener + closer.value in ("()", "[]"):
            return items[0]  # grouping
        if not items:
            raise ParseError("empty brackets")
        if len(items) == 2 and opener + closer.value in ("(]", "[)"):
            return Ival(_scalar(items[0]), _scalar(items[1]), opener == "(", closer.value == ")")
        if opener + closer.value not in ("()", "[]"):
            raise ParseError("mismatched brackets")
        return Seq(tuple(items), opener + closer.value)

    def _matrix(self, env: str) -> Mat:
        rows: list[tuple] = []
        row: list[sympy.Basic] = []
        while True:
            if self.at("end"):
                if self.next().value != env:
                    raise ParseError("mismatched \\end")
                break
            row.append(_scalar(self.parse_sum()))
            if self.accept("op", "&"):
                continue
            if self.accept("cmd", "\\"):
                rows.append(tuple(row))
                row = []
                continue
            if not self.at("end"):
                raise ParseError("bad matrix cell")
        if row:
            rows.append(tuple(row))
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise ParseError("ragged matrix")
        if len(rows) * len(rows[0]) > guard.MAX_ITEMS:
            raise guard.GuardError(f"matrix with more than {guard.MAX_ITEMS} cells")
        return Mat(tuple(rows))

    def _text_atom(self, content: str) -> Answer:
        c = content.strip()
        m = re.fullmatch(r"\(?([A-Za-z])\)?", c)
        if m:
            return _symbol(m.group(1))
        raise ParseError(f"text {c!r} inside a math answer")


def _call(f: Any, *args: sympy.Basic) -> sympy.Basic:
    """``f(*args)``, evaluated by sympy only on rational arguments (see `_exact`)."""
    return guard.check_number(f(*args, evaluate=_exact(*args)))


def _apply(name: str, args: list[sympy.Basic], base: Answer | None) -> sympy.Basic:
    if name in ("max", "min", "gcd", "lcm"):
        if not args:
            raise ParseError(f"{name} needs arguments")
        if name in ("gcd", "lcm"):
            if not all(a.is_Integer for a in args):
                raise ParseError(f"{name} of non-integers is not supported")
            if len(args) == 1:
                return args[0]
            return guard.check_number((sympy.gcd if name == "gcd" else sympy.lcm)(args))
        return _call(_FUNCS[name], *args)
    if len(args) != 1:
        raise ParseError(f"{name} takes one argument")
    (a,) = args
    if name in ("log", "lg", "ln"):
        b = sympy.Integer(10) if name == "lg" else (_scalar(base) if base is not None else None)
        if a == 0 or b == 0 or b == 1:
            raise ParseError("log of zero or to base 0 or 1")
        if b is None:
            return _call(sympy.log, a)
        if _exact(a, b) and a > 0 and b > 0:
            return guard.check_number(sympy.log(a, b))  # log_2 8 = 3 exactly
        return _div(_call(sympy.log, a), _call(sympy.log, b))
    if name == "exp":
        guard.check_power(sympy.E, a)
    return _call(_FUNCS[name], a)


def _repeating(text: str, rep: str) -> sympy.Rational:
    whole, _, frac = text.partition(".")
    a = len(frac)
    nonrep = int(frac) if frac else 0
    r = len(rep)
    value = sympy.Rational(nonrep * (10**r - 1) + int(rep), 10**a * (10**r - 1))
    return sympy.Integer(int(whole or "0")) + value


def _set_bound(x: Answer) -> sympy.Basic:
    # sympy orders and merges set bounds by comparing them: cheap only for rationals and infinity
    x = _scalar(x)
    if not (isinstance(x, sympy.Rational) or x in (sympy.oo, -sympy.oo)):
        raise ParseError("set algebra needs rational bounds")
    return x


def to_sympy_set(a: Answer) -> sympy.Set:
    """A sympy set for an interval, finite set, union or 2-item bracket pair (rational bounds)."""
    if isinstance(a, Ival):
        return sympy.Interval(_set_bound(a.lo), _set_bound(a.hi), a.lopen, a.ropen)
    if isinstance(a, FSet):
        return sympy.FiniteSet(*[_set_bound(x) for x in a.items])
    if isinstance(a, UnionA):
        return sympy.Union(*[to_sympy_set(p) for p in a.parts])
    if isinstance(a, Seq) and len(a.items) == 2 and a.brackets in ("()", "[]"):
        op = a.brackets == "()"
        return sympy.Interval(_set_bound(a.items[0]), _set_bound(a.items[1]), op, op)
    raise ParseError("set operation on a non-set")


def from_sympy_set(s: sympy.Set) -> Answer:
    """Our answer value for a sympy set (interval, finite set, union)."""
    if isinstance(s, sympy.Interval):
        return Ival(s.start, s.end, bool(s.left_open), bool(s.right_open))
    if isinstance(s, sympy.FiniteSet):
        return FSet(tuple(s.args))
    if s == sympy.S.EmptySet:
        return FSet(())
    if s == sympy.S.Reals:
        return Ival(-sympy.oo, sympy.oo, True, True)
    if isinstance(s, sympy.Union):
        return UnionA(tuple(from_sympy_set(p) for p in s.args))
    raise ParseError(f"unsupported set {s}")


def _set_op(op: str, left: Answer, right: Answer) -> Answer:
    if op == "cup":
        parts = (left.parts if isinstance(left, UnionA) else (left,)) + (
            right.parts if isinstance(right, UnionA) else (right,)
        )
        for p in parts:
            if not isinstance(p, (Ival, FSet, Seq)):
                raise ParseError("union of non-sets")
        return UnionA(tuple(parts))
    a, b = to_sympy_set(left), to_sympy_set(right)
    res = sympy.Intersection(a, b) if op == "cap" else sympy.Complement(a, b)
    return from_sympy_set(res)


@dataclass(frozen=True)
class Parsed:
    """A parsed answer: its possible readings and whether it contains decimal literals."""

    readings: tuple  # of Answer; several when "%" or "\pm" make the text ambiguous
    approx: bool


_PLAIN_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")
_PLAIN_FRACTION = re.compile(r"([-+]?\d+)\s*/\s*(\d+)")
_SCIENTIFIC = re.compile(r"([-+]?(?:\d+(?:\.\d*)?|\.\d+))[eE]([-+]?\d{1,6})")


def _fast_number(text: str) -> Parsed | None:
    """Plain numbers, fractions and 1.5e-3 become exact rationals without the parser."""
    if len(text) > 400:
        return None
    if _PLAIN_NUMBER.fullmatch(text):
        return Parsed(
            (guard.check_number(sympy.Rational(text.rstrip("."))),), "." in text.rstrip(".")
        )
    m = _PLAIN_FRACTION.fullmatch(text)
    if m:
        den = int(m.group(2))
        if den == 0:
            raise ParseError("division by zero")
        return Parsed((guard.check_number(sympy.Rational(int(m.group(1)), den)),), False)
    m = _SCIENTIFIC.fullmatch(text)
    if m:
        exp = sympy.Integer(int(m.group(2)))
        guard.check_power(sympy.Integer(10), exp)
        mant = sympy.Rational(m.group(1))
        return Parsed((guard.check_number(mant * sympy.Integer(10) ** exp),), "." in m.group(1))
    return None


def _merge_signs(a: Answer, b: Answer) -> Answer:
    r"""The two readings of a "\pm" answer as one answer: the set of both."""
    if a == b:
        return a
    if (
        isinstance(a, Rel)
        and isinstance(b, Rel)
        and a.ops == b.ops == ("=",)
        and a.terms[0] == b.terms[0]
    ):
        return Rel((a.terms[0], FSet((a.terms[1], b.terms[1]))), a.ops)  # x = \pm 2
    return FSet((a, b))


def parse_answer(text: str) -> Parsed:
    """Parse normalised answer text into one or more readings; raises ParseError/GuardError."""
    guard.check_text(text, "answer")
    fast = _fast_number(text)
    if fast is not None:
        return fast
    tokens = tokenize(text)
    p = _Parser(tokens, percent_div=True, pm_sign=1)
    first = p.parse()
    guard_answer(first)
    readings = [first]
    if p.has_percent:  # "50%" may mean 0.5 or 50: accept either reading
        q = _Parser(tokenize(text), percent_div=False, pm_sign=1)
        readings.append(q.parse())
    if p.has_pm:  # "1 \pm \sqrt{2}" is the set of both signs
        q = _Parser(tokenize(text), percent_div=True, pm_sign=-1)
        readings = [_merge_signs(first, q.parse())]
    return Parsed(tuple(readings), p.approx)


def guard_answer(a: Answer) -> None:
    """Whole-tree limits on every scalar inside an answer."""
    if isinstance(a, sympy.Basic):
        guard.check_tree(a)
    elif isinstance(a, (Seq, FSet)):
        for x in a.items:
            guard_answer(x)
    elif isinstance(a, UnionA):
        for x in a.parts:
            guard_answer(x)
    elif isinstance(a, Ival):
        guard_answer(a.lo)
        guard_answer(a.hi)
    elif isinstance(a, Mat):
        for r in a.rows:
            for x in r:
                guard_answer(x)
    elif isinstance(a, Rel):
        for x in a.terms:
            guard_answer(x)
