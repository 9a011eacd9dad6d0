"""Regexes over user-supplied patterns, run with the `regex` module's per-call timeout.

Python's ``re`` cannot be interrupted, so a pattern like ``(a|aa)+$`` on ``"aaaa…!"`` would
hang a worker; every call here passes ``timeout=`` and caps pattern and text length.
"""

from __future__ import annotations

import functools

import regex

from verifiers.ifeval.base import Deadline, RegexTimeout, RegexTooLong

MAX_PATTERN_CHARS = 1_000
MAX_TEXT_CHARS = 100_000


@functools.lru_cache(maxsize=512)
def compile_pattern(pattern: str, flags: int = 0) -> regex.Pattern:
    """Compile ``pattern`` (``re``-compatible syntax); raises ``regex.error`` or ValueError."""
    if len(pattern) > MAX_PATTERN_CHARS:
        raise ValueError(f"pattern has {len(pattern)} chars; at most {MAX_PATTERN_CHARS} allowed")
    return regex.compile(pattern, flags)


def _guard(text: str) -> None:
    if len(text) > MAX_TEXT_CHARS:
        raise RegexTooLong(
            f"text has {len(text)} chars; regex checks scan at most {MAX_TEXT_CHARS}"
        )


def search(pattern: regex.Pattern, text: str, deadline: Deadline) -> bool:
    """Does ``pattern`` match anywhere in ``text``?"""
    _guard(text)
    try:
        return pattern.search(text, timeout=deadline.timeout()) is not None
    except TimeoutError as e:
        raise RegexTimeout(str(e)) from None


def count(pattern: regex.Pattern, text: str, deadline: Deadline) -> int:
    """The number of non-overlapping matches of ``pattern`` in ``text``."""
    _guard(text)
    try:
        return sum(1 for _ in pattern.finditer(text, timeout=deadline.timeout()))
    except TimeoutError as e:
        raise RegexTimeout(str(e)) from None


def split_count(pattern: regex.Pattern, text: str, deadline: Deadline) -> int:
    """How many pieces ``pattern.split(text)`` returns (captured groups included, as in ``re``)."""
    _guard(text)
    try:
        return sum(1 for _ in pattern.splititer(text, timeout=deadline.timeout()))
    except TimeoutError as e:
        raise RegexTimeout(str(e)) from None
