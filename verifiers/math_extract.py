"""Finding the final answer in a math solution, and stripping the wrappers around an answer.

Order of preference: the last ``\\boxed{}`` (or ``\\fbox{}``), then an "answer is …" /
"Answer: …" phrase, then the last math span (``$…$``, ``\\(…\\)``, ``\\[…\\]``), then the last
number in the text. Pure string functions; every scan is linear in the text length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_BOX_CMDS = ("\\boxed", "\\fbox")
_PHRASE = re.compile(
    r"(?:final\s+answer|the\s+answer|answer)\s*(?:is\s*[:：]?|[:：]|=)\s*",
    re.IGNORECASE,
)
# spans are bounded so that a text full of unclosed "\\(" stays linear-ish
_MATH_SPANS = re.compile(
    r"\$\$(?P<dd>[^$]{1,1000}?)\$\$|\\\[(?P<br>.{1,1000}?)\\\]|\\\((?P<pa>.{1,1000}?)\\\)"
    r"|\$(?P<d>[^$]{1,1000}?)\$",
    re.DOTALL,
)
TAIL_CHARS = 4_000  # the final answer sits at the end; phrases and spans are searched there
MAX_BOX_TRIES = 16  # boxes tried from the end (empty or unbalanced ones are skipped)
MAX_BOX_CHARS = 5_000
_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:\s*/\s*\d+)?%?|-?\.\d+%?")


@dataclass(frozen=True)
class Extraction:
    answer: str | None
    how: str  # "boxed" | "answer_phrase" | "last_math" | "last_number" | "none"


def _braced(text: str, open_idx: int) -> tuple[str, int] | None:
    """The content of the brace group opening at ``text[open_idx] == '{'`` and the end index."""
    depth = 0
    for i in range(open_idx, min(len(text), open_idx + MAX_BOX_CHARS)):
        ch = text[i]
        if ch == "{" and (i == 0 or text[i - 1] != "\\"):
            depth += 1
        elif ch == "}" and (i == 0 or text[i - 1] != "\\"):
            depth -= 1
            if depth == 0:
                return text[open_idx + 1 : i], i + 1
    return None


def last_boxed(text: str) -> str | None:
    """Content of the last non-empty ``\\boxed{…}`` / ``\\fbox{…}`` (or ``\\boxed 5``)."""
    end = len(text)
    for _ in range(MAX_BOX_TRIES):
        idx = max(text.rfind(cmd, 0, end) for cmd in _BOX_CMDS)
        if idx < 0:
            return None
        cmd = "\\boxed" if text.startswith("\\boxed", idx) else "\\fbox"
        j = idx + len(cmd)
        while j < len(text) and text[j] == " ":
            j += 1
        content: str | None = None
        if j < len(text) and text[j] == "{":
            got = _braced(text, j)
            content = got[0] if got else None
        elif j > idx + len(cmd):  # "\boxed 5": one token up to space, $ or end
            m = re.match(r"[^\s$]+", text[j:])
            content = m.group(0) if m else None
        if content is not None and content.strip():
            return content.strip()
        end = idx
    return None


def _after_phrase(text: str) -> str | None:
    last = None
    for m in _PHRASE.finditer(text):
        last = m
    if last is None:
        return None
    rest = text[last.end() :]
    span = _MATH_SPANS.search(rest)
    line = rest.split("\n", 1)[0].strip()
    if span is not None and span.start() <= max(len(line), 1):
        return next(g for g in span.groups() if g is not None).strip()
    # "5, because ..." / "5. Next, ...": the answer ends at the first clause break
    line = re.split(r"\.\s|,\s+(?:because|since|which|as|so)\b|\s+(?:because|since)\b", line)[0]
    line = re.sub(r"[.。]\s*$", "", line.strip("* ")).strip("* ")
    return line or None


def _last_math(text: str) -> str | None:
    last = None
    for m in _MATH_SPANS.finditer(text):
        content = next(g for g in m.groups() if g is not None).strip()
        if content:
            last = content
    if last is None:
        return None
    # "a = b = 5": a chain of equalities ends in the value; one "=" may be an equation answer
    parts = [p for p in re.split(r"(?<![<>!\\])=", last)]
    if len(parts) > 2 and parts[-1].strip():
        return parts[-1].strip()
    return last


def extract_answer(solution: str) -> Extraction:
    """The final answer of a solution text, and how it was found."""
    boxed = last_boxed(solution)
    if boxed is not None:
        return Extraction(boxed, "boxed")
    solution = solution[-TAIL_CHARS:]
    phrase = _after_phrase(solution)
    if phrase:
        return Extraction(phrase, "answer_phrase")
    math = _last_math(solution)
    if math:
        return Extraction(math, "last_math")
    nums = _NUMBER.findall(solution)
    if nums:
        return Extraction(nums[-1].strip(), "last_number")
    return Extraction(None, "none")


_WRAPPERS = (
    (re.compile(r"^\$\$(.*)\$\$$", re.DOTALL), 1),
    (re.compile(r"^\$(.*)\$$", re.DOTALL), 1),
    (re.compile(r"^\\\((.*)\\\)$", re.DOTALL), 1),
    (re.compile(r"^\\\[(.*)\\\]$", re.DOTALL), 1),
)


def unwrap_reference(reference: str) -> str:
    """A reference answer without ``$…$``, ``\\(…\\)``, ``\\[…\\]`` or ``\\boxed{}`` around it."""
    text = reference.strip()
    if "\\boxed" in text or "\\fbox" in text:
        boxed = last_boxed(text)
        if boxed is not None:
            return boxed
    for _ in range(3):
        before = text
        for pat, group in _WRAPPERS:
            m = pat.match(text)
            if m:
                text = m.group(group).strip()
        if text == before:
            break
    return text
