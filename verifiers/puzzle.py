"""The `puzzle` verifier: reward 1 when the final answer matches the answer or an alias.

The final answer is decided first, never searched for: the content of the last ``\\boxed{}``,
else the text after the last "answer is" / "answer:" (up to the end of its sentence), else the
whole solution. It is then normalised (LaTeX wrappers, markdown, case, whitespace and
punctuation between words) and compared by equality. Option letters ("(B)", "B.", "B)",
"[B]", "option b", "choice B", "B) triangle") reduce to the letter; when the reference holds
a letter, the letter alone decides. An answer naming two or more option letters is ambiguous
and matches no letter.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from verifiers.geometry import MAX_PARSE_CHARS
from verifiers.registry import register
from verifiers.response_format import extract_solution
from verifiers.schemas import VerifyResult

NAME = "puzzle"

_BOXED = re.compile(r"\\boxed\s*\{")
_MARKER = re.compile(r"\banswer\s*(?:is\s*:?|:|=)\s*", re.IGNORECASE)
# a sentence ends at ". " / "! " / "? " / newline (a "3.5" keeps its point, "1, 2" its comma)
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")
_WRAPPER = re.compile(
    r"\\(?:boxed|text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
# words and numbers; a minus sign before a digit is kept ("-3" is not "3")
_TOKEN = re.compile(r"(?:(?<!\w)[-−](?=\d))?\w+(?:[.\-/']\w+)*")
# "(B)", "[B]", "B)", "B.", "B:", "B" alone; "option b" / "choice b" followed by a word break
_LETTER = re.compile(
    r"^(?:(?:option|choice)\s+\(?(?P<named>[a-z])\b\)?"
    r"|\((?P<paren>[a-z])\)|\[(?P<square>[a-z])\]"
    r"|(?P<bare>[a-z])(?:[).:]|$))"
    r"(?P<rest>.*)$",
    re.IGNORECASE | re.DOTALL,
)
# any option-letter mark anywhere, to spot answers that name several letters
_LETTER_MARK = re.compile(
    r"(?:^|(?<=[\s,;/]))(?:\((?P<a>[a-z])\)|\[(?P<b>[a-z])\]|(?P<c>[a-z])[).:](?=\s|$))"
    r"|\b(?:option|choice)\s+\(?(?P<d>[a-z])\b",
    re.IGNORECASE,
)


class PuzzleReference(BaseModel):
    """The expected answer and accepted aliases: ``{"answer": "B", "aliases": ["triangle"]}``."""

    model_config = ConfigDict(extra="forbid")

    answer: str = Field(..., min_length=1, max_length=10_000)
    aliases: list[str] = Field(default_factory=list, max_length=1000)

    @field_validator("answer")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not normalize(v):
            raise ValueError("answer has no letters or digits after normalisation")
        return v


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (nested braces allowed), or None."""
    starts = [m.end() for m in _BOXED.finditer(text)]
    if not starts:
        return None
    i = start = starts[-1]
    depth = 1
    while i < len(text):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start:i]
        i += 1
    return None  # unclosed


def final_answer(solution: str) -> tuple[str, str]:
    """The final answer text of a solution and the rule that chose it: boxed, marker or whole."""
    text = solution[:MAX_PARSE_CHARS]
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed, "boxed"
    marks = list(_MARKER.finditer(text))
    if marks:
        rest = text[marks[-1].end() :]
        end = _SENTENCE_END.search(rest)
        return (rest[: end.start()] if end else rest), "answer_marker"
    return text, "whole_solution"


def clean(text: str) -> str:
    """Strip LaTeX text wrappers, ``$``, markdown emphasis and outer whitespace."""
    for _ in range(4):  # wrappers may nest: \text{\textbf{B}}; deeper is not an answer
        text, n = _WRAPPER.subn(r"\1", text)
        if n == 0:
            break
    return re.sub(r"[$*_`]", " ", text).strip()


def normalize(text: str) -> str:
    """Lower-case words and numbers of ``text`` joined by single spaces."""
    return " ".join(_TOKEN.findall(clean(text).casefold()))


def option_letter(text: str) -> tuple[str | None, str, bool]:
    """``(letter, rest, ambiguous)`` for an answer written as an option letter."""
    text = clean(text)
    marks = {next(g for g in m.groups() if g).lower() for m in _LETTER_MARK.finditer(text)}
    m = _LETTER.match(text)
    if m is None:
        return None, text, len(marks) > 1
    letter = next(m.group(k) for k in ("named", "paren", "square", "bare") if m.group(k)).lower()
    if len(marks | {letter}) > 1:
        return None, text, True
    return letter, m.group("rest"), False


def accepted_answers(answers: list[str]) -> tuple[set[str], set[str]]:
    """Normalised accepted texts and option letters of a reference ("B) triangle" gives both)."""
    texts, letters = set(), set()
    for a in answers:
        texts.add(normalize(a))
        letter, rest, ambiguous = option_letter(a)
        if letter is not None and not ambiguous:
            letters.add(letter)
            texts.add(normalize(rest))
    return texts - {""}, letters


@register(NAME, version="1", reference=PuzzleReference)
def verify_puzzle(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Reward 1 if the final answer equals the answer or an alias after normalisation."""
    ref = PuzzleReference.model_validate(reference)
    accepted, ref_letters = accepted_answers([ref.answer, *ref.aliases])

    answer, rule = final_answer(extract_solution(response))
    letter, rest, ambiguous = option_letter(answer)
    norm = normalize(answer)
    details: dict[str, Any] = {"rule": rule, "answer": norm[:200], "letter": letter}
    if ambiguous:
        details["reason"] = "the answer names several option letters"
        return VerifyResult(reward=0.0, correct=False, details=details)
    if letter is not None and ref_letters:
        ok = letter in ref_letters
    elif letter is not None:
        # the reference is text: "B) triangle" may match by its text
        ok = norm in accepted or normalize(rest) in accepted
    else:
        ok = norm in accepted
    if not norm:
        details["reason"] = "empty final answer"
    return VerifyResult(reward=1.0 if ok else 0.0, correct=ok, details=details)
