"""The `counting` verifier through the public Python API."""

from __future__ import annotations

import pytest

from verifiers import verify


def count(solution: str, n, **options):
    return verify("counting", f"<think>count them</think>{solution}", {"count": n}, options)


@pytest.mark.parametrize(
    "solution, n",
    [
        ("5", 5),
        ("There are 5 circles.", 5),
        ("There are five circles.", 5),
        ("Zero.", 0),
        ("0", 0),
        ("I count twelve triangles", 12),
        ("Nineteen", 19),
        ("thirty", 30),
        ("twenty-one dots", 21),
        ("twenty one dots", 21),
        ("ninety nine", 99),
        ("There are 1,000 dots", 1000),
        ("5.0", 5),
        ("**7**", 7),
        ("I first saw 3, then 4, so 6 in total", 6),  # the last number
        ("The answer is 4. I checked it 2 times.", 4),  # the number after the marker
        ("Answer: 8 (after recounting 3 rows)", 8),
        ("Final answer: eleven", 11),
        (r"there are 3 rows, \boxed{9}", 9),
        ("3D shapes: 2", 2),  # "3D" is not a number
        ("<point>10 20</point><point>30 40</point> makes 2", 2),  # tag numbers are skipped
    ],
)
def test_right_count(solution, n):
    r = count(solution, n)
    assert r.reward == 1.0 and r.correct, r.details
    assert r.details["answer"] == n


@pytest.mark.parametrize(
    "solution, n",
    [
        ("There are 4 circles.", 5),
        ("5 circles, I mean 6", 5),  # the last number is 6
        ("The answer is 6, not 5", 5),
        ("5.5", 5),
        ("-5", 5),
        ("one hundred", 100),  # only up to ninety-nine in words
        ("someone saw five", 1),  # "one" inside a word does not count
        ("x2", 2),
        ("none", 0),
        ("", 3),
        ("9" * 500, 3),
    ],
)
def test_wrong_count(solution, n):
    r = count(solution, n)
    assert r.reward == 0.0 and not r.correct
    assert r.error is None


def test_rule_reported():
    assert count("The answer is 4, not 3", 4).details["rule"] == "answer_marker"
    assert count("4 or 3", 3).details["rule"] == "last_number"
    assert count(r"\boxed{3} and 4", 3).details["rule"] == "boxed"
    r = count("no idea", 3)
    assert r.details["answer"] is None and "no number" in r.details["reason"]


def test_thinking_is_not_read():
    r = verify("counting", "<think>maybe 3</think>There are 4.", {"count": 3})
    assert r.reward == 0.0 and r.details["answer"] == 4


def test_count_points():
    pts = "<point>10 20</point> <point>30, 40</point> <point>(50 60)</point>"
    assert count(pts, 3, count_points=True).reward == 1.0
    assert count(pts, 2, count_points=True).reward == 0.0
    # malformed points are not counted
    r = count(pts + "<point>nan 1</point><point>1</point>", 3, count_points=True)
    assert r.reward == 1.0 and r.details["malformed_points"] == 2
    # the written number is ignored in this mode
    assert count("There are 3: <point>1 1</point>", 3, count_points=True).reward == 0.0
    assert count("none here", 0, count_points=True).reward == 1.0


@pytest.mark.parametrize(
    "reference, text",
    [
        ({"count": -1}, "count"),
        ({"count": 2.5}, "whole number"),
        ({"count": True}, "count"),
        ({"count": "3"}, "count"),
        ({}, "count"),
        ({"count": 3, "extra": 1}, "extra"),
    ],
)
def test_invalid_reference(reference, text):
    r = verify("counting", "3", reference)
    assert r.reward == 0.0 and text in (r.error or "")


def test_float_count_from_parquet_is_accepted():
    assert verify("counting", "3", {"count": 3.0}).reward == 1.0


def test_bad_option():
    r = verify("counting", "3", {"count": 3}, {"count_points": "yes"})
    assert r.reward == 0.0 and "options.count_points" in r.error
