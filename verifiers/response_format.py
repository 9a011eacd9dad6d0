"""Parsing of the response layout every policy answer follows: ``<think>…</think>`` then a solution.

Pure functions; the `format` verifier and every other verifier use them to find the solution.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_THINK = re.compile(r"<think>(.*?)</think>", re.DOTALL)


@dataclass(frozen=True)
class FormatCheck:
    ok: bool
    think: str | None
    solution: str
    reason: str | None


def check_format(response: str) -> FormatCheck:
    """Does ``response`` read ``<think>…</think>`` followed by a non-empty solution?

    Leading whitespace is allowed; exactly one think block, at the start; the solution is the
    text after ``</think>`` and must contain a non-space character and no further think tags.
    """
    text = response.lstrip()
    if not text.startswith("<think>"):
        return FormatCheck(
            False, None, extract_solution(response), "response does not start with <think>"
        )
    m = _THINK.match(text)
    if m is None:
        return FormatCheck(False, None, extract_solution(response), "unclosed <think> block")
    solution = text[m.end() :]
    if "<think>" in solution or "</think>" in solution:
        return FormatCheck(False, m.group(1), solution.strip(), "more than one think block")
    if not solution.strip():
        return FormatCheck(False, m.group(1), "", "empty solution after </think>")
    return FormatCheck(True, m.group(1), solution.strip(), None)


def extract_solution(response: str) -> str:
    """The part of a response that holds the answer: after the last ``</think>``, else all of it."""
    idx = response.rfind("</think>")
    if idx >= 0:
        return response[idx + len("</think>") :].strip()
    if response.lstrip().startswith("<think>"):
        # an unclosed think block holds no solution
        return ""
    return response.strip()
