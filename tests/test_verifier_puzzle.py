"""The `puzzle` verifier through the public Python API."""

from __future__ import annotations

import pytest

from verifiers import verify

LETTER = {"answer": "B", "aliases": ["triangle"]}


def puzzle(solution: str, reference=None, **options):
    return verify("puzzle", f"<think>hmm</think>{solution}", reference or LETTER, options)


@pytest.mark.parametrize(
    "solution",
    [
        "B",
        "b",
        "(B)",
        "B.",
        "B)",
        "[B]",
        "B:",
        "option b",
        "Option (B)",
        "choice B",
        "The answer is B",
        "the answer is B.",
        "The answer is B. A and C are wrong.",
        "Answer: (B)",
        "Final answer: b",
        "B) triangle",
        "(B) triangle",
        "The answer is (B), a triangle",
        "**B**",
        r"\boxed{B}",
        r"$\boxed{\text{B}}$",
        r"A is wrong, so \boxed{(B)}",
        r"\boxed{A} was my first guess, but \boxed{B}",
        "triangle",  # an alias
        "  Triangle!  ",
        r"\text{Triangle}",
    ],
)
def test_accepted(solution):
    r = puzzle(solution)
    assert r.reward == 1.0 and r.correct, r.details


@pytest.mark.parametrize(
    "solution",
    [
        "C",
        "(C)",
        "the answer is C",
        "C) triangle",  # the letter decides when the reference is a letter
        "A B C D",  # every letter named: no final answer
        "(A) (B) (C) (D)",
        "A) no B) yes",
        "The options are A, B, C and D; B looks right",  # no marker: whole solution compared
        "I think it is B",  # no marker: whole solution compared
        r"\boxed{B} or maybe \boxed{C}",  # the last box counts
        "b triangle",  # no option mark after the letter
        "a triangle",  # an article, not option A (and not B anyway)
        "square",
        r"\boxed{}",
        "",
    ],
)
def test_rejected(solution):
    r = puzzle(solution)
    assert r.reward == 0.0 and not r.correct, r.details
    assert r.error is None


def test_ambiguous_answer_is_reported():
    r = puzzle("(A) (B) (C) (D)")
    assert "several option letters" in r.details["reason"]


def test_long_response_mentioning_every_letter_fails():
    long = " ".join(f"Option {c} could be it." for c in "ABCDE") * 50
    assert puzzle(long).reward == 0.0
    assert puzzle(long + " The answer is B.").reward == 1.0


def test_text_answers():
    ref = {"answer": "New York", "aliases": ["NYC"]}
    assert puzzle("new york", ref).reward == 1.0
    assert puzzle("The answer is: New  York!", ref).reward == 1.0
    assert puzzle(r"\boxed{\text{nyc}}", ref).reward == 1.0
    assert puzzle("York", ref).reward == 0.0
    assert puzzle("New York or Boston", ref).reward == 0.0  # equality, not substring


def test_reference_written_as_option():
    # "C) circle" as the answer: both the letter and the text are accepted
    ref = {"answer": "C) circle"}
    assert puzzle("C", ref).reward == 1.0
    assert puzzle("circle", ref).reward == 1.0
    assert puzzle("(D)", ref).reward == 0.0


def test_text_reference_with_option_prefix_in_response():
    ref = {"answer": "triangle"}
    assert puzzle("B) triangle", ref).reward == 1.0
    assert puzzle("B) square", ref).reward == 0.0


def test_numbers_keep_sign_and_point():
    assert puzzle("-3", {"answer": "3"}).reward == 0.0
    assert puzzle("-3", {"answer": "-3"}).reward == 1.0
    assert puzzle("The answer is 3.5.", {"answer": "3.5"}).reward == 1.0
    assert puzzle("35", {"answer": "3.5"}).reward == 0.0
    assert puzzle("answer: 1, 2, 3", {"answer": "1,2,3"}).reward == 1.0


def test_thinking_is_not_read():
    r = verify("puzzle", "<think>The answer is B</think>The answer is C", LETTER)
    assert r.reward == 0.0


def test_huge_response():
    r = puzzle("A " * 200_000 + r"\boxed{B}")
    assert r.reward == 0.0 and r.error is None  # the box lies past the parsed prefix


@pytest.mark.parametrize(
    "reference, field",
    [
        ({}, "answer"),
        ({"answer": ""}, "answer"),
        ({"answer": "..."}, "answer"),
        ({"answer": 3}, "answer"),
        ({"answer": "B", "aliases": "triangle"}, "aliases"),
        ({"answer": "B", "alias": ["x"]}, "alias"),
    ],
)
def test_invalid_reference(reference, field):
    r = verify("puzzle", "B", reference)
    assert r.reward == 0.0 and field in (r.error or "")
