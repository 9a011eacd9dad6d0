"""The `math` verifier through the registry: equivalence, extraction, safety, Math-Verify agreement."""

from __future__ import annotations

import builtins
import importlib.util
from pathlib import Path

import pytest
import sympy

from verifiers import math_answer
from verifiers.math_extract import extract_answer
from verifiers.registry import get, names, reference_schemas, verify

ROOT = Path(__file__).resolve().parent.parent


def _load_pairs():
    spec = importlib.util.spec_from_file_location("math_pairs", ROOT / "bench" / "math_pairs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.MATH_PAIRS, mod.MATH_VERIFY_KNOWN_WRONG


PAIRS, MV_KNOWN_WRONG = _load_pairs()


def boxed(x: str) -> str:
    return f"<think>work</think>The answer is $\\boxed{{{x}}}$."


def run(response: str, reference, **options):
    return verify("math", response, reference, options)


# --- equivalence, category by category (gold, prediction inside \boxed{}, equal?) -------------

CASES = [
    # plain numbers and separators
    ("17", "17", True),
    ("17", "17.0", True),
    ("17", "-17", False),
    ("1000000", "10^6", True),
    ("1000000", "1 000 000", True),
    ("1234.5", "1,234.5", True),
    ("1234.5", "1234.05", False),
    # fractions against decimals (exact unless a decimal is present)
    ("\\frac{2}{3}", "0.666667", True),
    ("\\frac{2}{3}", "0.67", False),
    ("\\frac{2}{3}", "\\frac{4}{6}", True),
    ("\\frac{2}{3}", "\\frac{3}{2}", False),
    ("-\\frac{5}{4}", "-1\\frac{1}{4}", True),
    ("\\frac{1}{7}", "\\frac{1}{8}", False),
    # percentages read either way
    ("12.5\\%", "0.125", True),
    ("12.5\\%", "12.5", True),
    ("12.5\\%", "\\frac{1}{8}", True),
    ("12.5\\%", "1.25", False),
    # units, \text, degrees, money
    ("15", "15 \\mbox{ km}", True),
    ("15", "15\\text{ square units}", True),
    ("60", "60^{\\circ}", True),
    ("60", "60°", True),
    ("4.5", "\\$4.50", True),
    ("15", "16 \\text{ km}", False),
    # x = 3 against 3
    ("3", "x=3", True),
    ("a = 5", "5", True),
    ("a = 5", "a = 6", False),
    ("f(x)=x^2", "x^2", True),
    # sets, lists
    ("\\{2, 3, 5\\}", "\\{5, 3, 2\\}", True),
    ("\\{2, 3, 5\\}", "\\{2, 3\\}", False),
    ("\\{2, 3, 5\\}", "2, 3, 5", True),
    ("\\pm 3", "3, -3", True),
    ("\\pm 3", "3", False),
    ("\\emptyset", "\\varnothing", True),
    # intervals, open and closed, unions
    ("[1, 3)", "[1,3)", True),
    ("[1, 3)", "(1,3)", False),
    ("[1, 3)", "[1,3]", False),
    ("(-\\infty, 0] \\cup [1, \\infty)", "(-\\infty,0]\\cup[1,\\infty)", True),
    ("(-\\infty, 0] \\cup [1, \\infty)", "(-\\infty,0)\\cup[1,\\infty)", False),
    ("[1,2] \\cup [2,3]", "[1,3]", True),
    ("\\mathbb{R}", "(-\\infty, \\infty)", True),
    ("x \\le 4", "(-\\infty, 4]", True),
    ("x \\le 4", "(-\\infty, 4)", False),
    # tuples, vectors
    ("(1, -2, 3)", "(1,-2,3)", True),
    ("(1, -2, 3)", "(-2,1,3)", False),
    ("\\langle 1, 2 \\rangle", "\\langle 1,2\\rangle", True),
    ("(\\sqrt{2}, \\frac{1}{2})", "(\\frac{2}{\\sqrt{2}}, 0.5)", True),
    # matrices
    (
        "\\begin{pmatrix} 2 & 0 \\\\ 0 & 2 \\end{pmatrix}",
        "\\begin{bmatrix}2&0\\\\0&2\\end{bmatrix}",
        True,
    ),
    (
        "\\begin{pmatrix} 2 & 0 \\\\ 0 & 2 \\end{pmatrix}",
        "\\begin{pmatrix}2&0\\\\0&3\\end{pmatrix}",
        False,
    ),
    ("\\begin{pmatrix} 1 \\\\ 2 \\end{pmatrix}", "\\begin{pmatrix}1 & 2\\end{pmatrix}", False),
    # inequalities and equations
    ("x < -1", "-1 > x", True),
    ("x < -1", "x \\le -1", False),
    ("2 < x \\le 5", "(2, 5]", True),
    ("y = -x + 4", "x + y = 4", True),
    ("y = -x + 4", "x + y = 5", False),
    ("x^2 + y^2 = 9", "2x^2 + 2y^2 = 18", True),
    ("3x - 2y > 1", "2y - 3x < -1", True),
    ("3x - 2y > 1", "2y - 3x > -1", False),
    # symbolic expressions
    ("\\frac{x+1}{x^2-1}", "\\frac{1}{x-1}", True),
    ("(a+b)^2", "a^2 + 2ab + b^2", True),
    ("(a+b)^2", "a^2 + b^2", False),
    ("\\sqrt{12}", "2\\sqrt{3}", True),
    ("\\sqrt{12}", "3\\sqrt{2}", False),
    ("e^{\\ln 5}", "5", True),
    ("\\sin(2x)", "2\\sin x\\cos x", True),
    ("\\frac{\\pi}{3}", "60^\\circ", False),
    ("2^{x+1}", "2 \\cdot 2^x", True),
    ("\\sqrt[3]{-27}", "-3", True),
    ("\\log_{3} 81", "4", True),
    ("|{-5}|", "5", True),
    ("\\lfloor 7.9 \\rfloor", "7", True),
    # multiple choice and words
    ("C", "\\text{(C)}", True),
    ("C", "\\textbf{C}", True),
    ("C", "B", False),
    ("\\text{Tuesday}", "\\text{tuesday}", True),
    ("\\text{Tuesday}", "\\text{Monday}", False),
    # complex numbers
    ("2 - 3i", "-3i + 2", True),
    ("2 - 3i", "2 + 3i", False),
    ("i^2", "-1", True),
]


@pytest.mark.parametrize("gold,pred,equal", CASES, ids=[f"{g} ~ {p}" for g, p, _ in CASES])
def test_hand_checked_equivalence(gold: str, pred: str, equal: bool) -> None:
    r = run(boxed(pred), gold)
    assert r.error is None, r.error
    assert r.correct is equal, r.details
    assert r.reward == (1.0 if equal else 0.0)


@pytest.mark.parametrize("i", range(len(PAIRS)), ids=[f"pair{i}" for i in range(len(PAIRS))])
def test_bench_pairs_hand_verdicts(i: int) -> None:
    gold, pred, equal = PAIRS[i]
    r = run(pred, {"answer": gold})
    assert r.error is None, r.error
    assert r.correct is equal, (gold, pred, r.details)


# --- where the answer is found -----------------------------------------------------------------


@pytest.mark.parametrize(
    "solution,answer,how",
    [
        ("so $\\boxed{\\frac{1}{2}}$ and done", "\\frac{1}{2}", "boxed"),
        ("\\boxed{1} then \\boxed{\\{2, 3\\}}", "\\{2, 3\\}", "boxed"),
        ("we get \\boxed 5 in the end", "5", "boxed"),
        ("\\fbox{7}", "7", "boxed"),
        ("Therefore, the answer is $x = 4$.", "x = 4", "answer_phrase"),
        ("**Final Answer:** 12 apples", "12 apples", "answer_phrase"),
        ("The answer is 9, because 3 squared.", "9", "answer_phrase"),
        ("It follows that $a = 2$ and then $b = 3$.", "b = 3", "last_math"),
        ("Compute $1 + 1 = 2 = 2$", "2", "last_math"),
        ("the count is 41 items, or maybe 42", "42", "last_number"),
        ("no numbers here", None, "none"),
    ],
)
def test_extraction(solution: str, answer: str | None, how: str) -> None:
    got = extract_answer(solution)
    assert (got.answer, got.how) == (answer, how)


def test_only_the_solution_after_think_counts() -> None:
    assert run("<think>\\boxed{5}</think>So \\boxed{6}", "6").correct
    assert not run("<think>\\boxed{6}</think>So \\boxed{5}", "6").correct
    r = run("<think>it must be \\boxed{6}", "6")  # unclosed think: no solution at all
    assert not r.correct and r.details["reason"] == "no final answer found"


# --- the reference in every accepted shape --------------------------------------------------


@pytest.mark.parametrize(
    "reference",
    [
        {"answer": "1/2"},
        "1/2",
        "$\\frac12$",
        "$$\\frac{1}{2}$$",
        "\\(\\frac{1}{2}\\)",
        "\\[0.5\\]",
        "\\boxed{\\frac{1}{2}}",
        "The answer is $\\boxed{\\dfrac{1}{2}}$.",
        0.5,
        {"answer": 0.5},
    ],
)
def test_reference_shapes(reference) -> None:
    assert run(boxed("\\frac{2}{4}"), reference).correct
    assert not run(boxed("\\frac{1}{3}"), reference).correct


@pytest.mark.parametrize(
    "reference,pred",
    [
        ("sqrt(2)/2", "\\frac{\\sqrt{2}}{2}"),
        ("2*pi", "2\\pi"),
        ("x**2 + 1", "x^2+1"),
        ("1e-3", "0.001"),
        ("2.5e3", "2500"),
        ("pi/4", "\\frac{\\pi}{4}"),
        ("(1, 2]", "(1,2]"),
        ("x = 1 or x = 2", "1, 2"),
        ("infinity", "\\infty"),
        ("sin(x)^2", "\\sin^2 x"),
    ],
)
def test_plain_text_references(reference: str, pred: str) -> None:
    assert run(boxed(pred), reference).correct


@pytest.mark.parametrize(
    "reference,fragment",
    [
        (None, "invalid reference"),
        ([1, 2], "invalid reference"),
        ({"ans": "1"}, "invalid reference"),
        ("1" * 2000, "longer than"),
        ("9^{9^{9^9}}", "reference rejected: power too large"),
    ],
)
def test_bad_references_are_errors(reference, fragment: str) -> None:
    r = run(boxed("1"), reference)
    assert r.reward == 0.0 and r.error is not None and fragment in r.error


def test_reference_schema_is_published() -> None:
    assert "math" in names()
    spec = get("math")
    assert spec.version == "1" and spec.reference_model is math_answer.MathReference
    schema = reference_schemas()["math"]["reference_schema"]
    assert "answer" in str(schema)


# --- hostile answers: rejected by the guards before sympy evaluates anything ---------------


HOSTILE = [
    ("\\boxed{9^{9^{9^9}}}", "power too large"),
    ("\\boxed{(10^7)!}", "factorial argument larger"),
    ("\\boxed{2^{2^{100}}}", "power too large"),
    ("\\boxed{10^{10^{10}} - 10^{10^{10}}}", "power too large"),
    ("\\boxed{e^{10^{6}}}", "power too large"),
    ("\\boxed{\\exp(\\exp(\\exp(\\exp(10))))}", "power too large"),
    ("\\boxed{e^{e^{e^{e^{x}}}}}", "exponentials nested deeper"),
    ("\\boxed{x^{10^{6}}}", "exponent larger than"),
    ("\\boxed{\\sqrt{2^{3000}+1}}", "root of a number over"),
    ("\\boxed{\\sqrt[10^{9}]{2}}", "root index too large"),
    ("\\boxed{\\binom{10^{9}}{5}}", "binomial argument too large"),
    ("\\boxed{" + "2^{4000}\\cdot" * 5 + "1}", "number too large"),
    ("\\boxed{" + "\\frac{1}{" * 60 + "2" + "}" * 60 + "}", "nests"),
    ("\\boxed{" + "(" * 300 + "1" + ")" * 300 + "}", "nests brackets deeper"),
    ("\\boxed{" + "(" * 5000 + "1" + ")" * 5000 + "}", "no final answer"),
    ("\\boxed{" + "+".join(["x"] * 500) + "}", "more than 400 tokens"),
    ("\\boxed{" + "1" * 5000 + "}", "extracted answer too long"),
    ("x" * 1_000_000, "response too long"),
    ("\\boxed{\\begin{pmatrix}" + "&".join(["1"] * 80) + "\\end{pmatrix}}", "more than 64"),
]


@pytest.mark.timeout(60)  # a hang guard for the whole table, not a speed assertion
@pytest.mark.parametrize(
    "response,reason", HOSTILE, ids=[r[1] + str(i) for i, r in enumerate(HOSTILE)]
)
def test_hostile_answers_are_rejected_by_guards(response: str, reason: str) -> None:
    for gold in ("1", "x"):
        r = run(response, gold)
        assert r.reward == 0.0 and r.error is None
        why = r.details.get("rejected") or r.details.get("reason") or ""
        assert reason in why, r.details


@pytest.mark.timeout(60)
def test_pathological_text_finds_no_answer() -> None:
    for response in ("\\boxed{" * 20000, "$" * 150_000, "\\(" * 60_000, "answer is " * 15_000):
        r = run(response, "1")
        assert r.reward == 0.0


def _eval_spy(calls: list):
    def wrap(real):
        def spy(src, *args, **kwargs):
            if isinstance(src, (str, bytes)):  # code objects are imports; text is the danger
                calls.append(src)
                raise AssertionError("eval/exec of text")
            return real(src, *args, **kwargs)

        return spy

    return wrap(builtins.eval), wrap(builtins.exec)


def test_no_text_is_ever_evaluated_as_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "pwned_math"
    payloads = [
        f"__import__('os').system('touch {target}')",
        f"exec(\"open('{target}', 'w')\")",
        "x.__class__.__base__.__subclasses__()",
        "lambda: 1",
    ]
    run(boxed("1"), "1")  # import sympy's lazy modules before the spy goes in
    calls: list = []
    spy_eval, spy_exec = _eval_spy(calls)
    monkeypatch.setattr(builtins, "eval", spy_eval)
    monkeypatch.setattr(builtins, "exec", spy_exec)
    with pytest.raises(AssertionError):
        sympy.parse_expr("1 + 1")  # the spy catches sympy's own eval path
    calls.clear()
    for p in payloads:
        assert run(f"\\boxed{{{p}}}", "1").reward == 0.0
        assert run(f"The answer is {p}", "1").reward == 0.0
        assert run(boxed("1"), p).reward == 0.0  # as a reference too
    for gold, pred, equal in PAIRS:
        r = run(pred, gold)
        assert r.error is None and r.correct is equal
    for response, _ in HOSTILE:
        run(response, "x")
    assert calls == []
    assert not target.exists()


# --- options and result details ------------------------------------------------------------


def test_tolerance_options() -> None:
    assert not run(boxed("3.14"), "\\pi").correct
    assert run(boxed("3.14"), "\\pi", rel_tol=1e-3).correct
    assert not run(boxed("0.3333"), "\\frac{1}{3}").correct
    assert run(boxed("0.3333"), "\\frac{1}{3}", abs_tol=1e-4).correct
    # tolerances never loosen exact answers: no decimal on either side means exact
    assert not run(boxed("\\frac{1}{4}"), "\\frac{1}{3}", abs_tol=0.5).correct
    assert run(boxed("1000001.0"), "1000000", rel_tol=1e-5).correct
    assert not run(boxed("1000001.0"), "1000000").correct


def test_invalid_options_are_errors() -> None:
    r = run(boxed("1"), "1", rel_tol=-1)
    assert r.error is not None and "invalid options" in r.error


def test_details_say_what_was_compared_and_how() -> None:
    r = run(boxed("(x+1)^2"), "x^2+2x+1")
    d = r.details
    assert r.correct and d["extraction"] == "boxed" and d["extracted"] == "(x+1)^2"
    assert d["parsed_reference"] == "x**2 + 2*x + 1"
    assert d["parsed_response"] == "(x + 1)**2"
    assert d["method"] == "algebra"
    assert run(boxed("1"), "\\sin^2 x + \\cos^2 x").details["method"] == "sampling"
    assert run(boxed("\\frac{1}{\\sqrt{2}}"), "\\frac{\\sqrt{2}}{2}").details["method"] == "numeric"
    assert run(boxed("0.5"), "\\frac{1}{2}").details["method"] == "identical"
    assert run(boxed("2, 1"), "\\{1,2\\}").details["method"] == "set"


def test_require_format_zeroes_an_unformatted_correct_answer() -> None:
    r = run("\\boxed{4}", "4", require_format=True)
    assert r.reward == 0.0 and r.details["unformatted_reward"] == 1.0 and not r.format_ok
    assert run(boxed("4"), "4", require_format=True).reward == 1.0


def test_parsed_references_are_cached() -> None:
    ref = "\\frac{355}{113} + \\sqrt{7}"
    run(boxed("1"), ref)
    hits = math_answer._parse_reference.cache_info().hits
    for _ in range(3):
        run(boxed("1"), ref)
    assert math_answer._parse_reference.cache_info().hits == hits + 3


# --- agreement with Math-Verify on the shared pair list ------------------------------------


def test_agreement_with_math_verify() -> None:
    math_verify = pytest.importorskip("math_verify")
    assert len(PAIRS) >= 100
    disagreements = []
    for gold, pred, expected in PAIRS:
        try:
            mv = bool(math_verify.verify(math_verify.parse(f"${gold}$"), math_verify.parse(pred)))
        except Exception:  # a Math-Verify crash counts as "not equal"
            mv = False
        ours = run(pred, gold).correct
        if (gold, pred) in MV_KNOWN_WRONG:
            if mv == expected or ours != expected:  # the list must stay honest
                disagreements.append(("known-wrong entry is stale", gold, pred, mv, ours))
        elif not (mv == expected == ours):
            disagreements.append(("disagree", gold, pred, mv, ours))
    assert disagreements == []
