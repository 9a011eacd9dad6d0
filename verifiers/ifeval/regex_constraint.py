"""The ``regex`` constraint: a user-written regular expression that must (not) match, or match
a number of times — Seed1.5-VL's "instruction following verified with regular expressions"."""

from __future__ import annotations

from typing import Annotated

import regex
from pydantic import Field, NonNegativeInt, StringConstraints, model_validator

from verifiers.ifeval import safe_regex
from verifiers.ifeval.base import Args, Deadline, Verdict

_FLAG_BITS = {
    "i": regex.IGNORECASE,
    "m": regex.MULTILINE,
    "s": regex.DOTALL,
    "x": regex.VERBOSE,
    "a": regex.ASCII,
    "u": regex.UNICODE,
}
_FLAG_NAMES = {
    "ignorecase": "i",
    "multiline": "m",
    "dotall": "s",
    "verbose": "x",
    "ascii": "a",
    "unicode": "u",
}


def flag_bits(flags: str | list[str]) -> int:
    """``"im"`` or ``["i", "MULTILINE"]`` -> regex flag bits; raises ValueError on unknown flags."""
    letters: list[str] = []
    for item in [flags] if isinstance(flags, str) else flags:
        name = item.strip().lower()
        if name in _FLAG_NAMES:
            letters.append(_FLAG_NAMES[name])
        else:
            letters.extend(name)
    bits = 0
    for letter in letters:
        if letter not in _FLAG_BITS:
            raise ValueError(
                f"unknown regex flag {letter!r}; use letters of 'imsxau' or names like 'IGNORECASE'"
            )
        bits |= _FLAG_BITS[letter]
    return bits


class RegexArgs(Args):
    """kwargs of the ``regex`` constraint."""

    pattern: Annotated[
        str, StringConstraints(min_length=1, max_length=safe_regex.MAX_PATTERN_CHARS)
    ] = Field(description="a regular expression (Python `re` syntax), searched anywhere")
    flags: str | list[str] = Field("", description='letters of "imsxau" or a list of flag names')
    must_match: bool = Field(True, description="false: the pattern must not match")
    count_min: NonNegativeInt | None = Field(None, description="at least this many matches")
    count_max: NonNegativeInt | None = Field(None, description="at most this many matches")

    @model_validator(mode="after")
    def _consistent(self) -> RegexArgs:
        bits = flag_bits(self.flags)
        try:
            safe_regex.compile_pattern(self.pattern, bits)
        except regex.error as e:
            raise ValueError(f"invalid regex {self.pattern!r}: {e}") from None
        if (
            self.count_min is not None
            and self.count_max is not None
            and self.count_min > self.count_max
        ):
            raise ValueError(f"count_min {self.count_min} > count_max {self.count_max}")
        if not self.must_match and (self.count_min is not None or self.count_max is not None):
            raise ValueError("must_match=false cannot be combined with count_min/count_max")
        return self


def check_regex(text: str, a: RegexArgs, dl: Deadline) -> Verdict:
    """Search (or count) ``a.pattern`` in ``text`` under the deadline."""
    pattern = safe_regex.compile_pattern(a.pattern, flag_bits(a.flags))
    if a.count_min is not None or a.count_max is not None:
        n = safe_regex.count(pattern, text, dl)
        lo = a.count_min or 0
        hi = a.count_max
        ok = n >= lo and (hi is None or n <= hi)
        want = f"{lo}..{hi}" if hi is not None else f"at least {lo}"
        return Verdict(ok, f"{n} matches, need {want}")
    found = safe_regex.search(pattern, text, dl)
    if a.must_match:
        return Verdict(found, "matched" if found else "no match")
    return Verdict(not found, "matched but must not" if found else "no match, as required")
