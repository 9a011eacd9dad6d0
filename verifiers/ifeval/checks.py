"""The 25 instruction checks of Google's IFEval release, with IFEval's kwargs and semantics.

Each check is a pure function ``(text, args, deadline) -> Verdict`` over the text being judged,
paired with a pydantic model of its kwargs (IFEval's argument names, verbatim). Where IFEval
would pick a random value for a missing argument, the argument is required here instead.
Keywords, forbidden words, postscript markers and section splitters are regular expressions in
IFEval; they run through `safe_regex` with a timeout, and a string that does not compile as a
regex is matched literally (IFEval would crash on it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

import regex
from pydantic import (
    Field,
    NonNegativeInt,
    PositiveInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from verifiers.ifeval import safe_regex
from verifiers.ifeval.base import Args, Deadline, Relation, Verdict, compare
from verifiers.ifeval.language import detect_language, supported_languages
from verifiers.ifeval.segment import count_capital_words, count_sentences, count_words

# User-supplied regular expressions; IFEval strips some of them and not others.
Pattern = Annotated[str, StringConstraints(min_length=1, max_length=safe_regex.MAX_PATTERN_CHARS)]
StrippedPattern = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=safe_regex.MAX_PATTERN_CHARS),
]
PatternList = Annotated[list[Pattern], Field(min_length=1, max_length=64)]


@dataclass(frozen=True)
class Check:
    """One instruction id: its kwargs model and its check function."""

    args: type[Args]
    fn: Callable[[str, Args, Deadline], Verdict]


CHECKS: dict[str, Check] = {}


def _check(instruction_id: str, args: type[Args]):
    def deco(fn):
        CHECKS[instruction_id] = Check(args, fn)
        return fn

    return deco


def _user_pattern(pattern: str, flags: int = 0) -> regex.Pattern:
    try:
        return safe_regex.compile_pattern(pattern, flags)
    except regex.error:
        return safe_regex.compile_pattern(regex.escape(pattern), flags)


class NoArgs(Args):
    pass


# --- keywords -------------------------------------------------------------------------------


class KeywordsArgs(Args):
    keywords: PatternList


@_check("keywords:existence", KeywordsArgs)
def keyword_existence(text: str, a: KeywordsArgs, dl: Deadline) -> Verdict:
    for kw in a.keywords:
        if not safe_regex.search(_user_pattern(kw, regex.IGNORECASE), text, dl):
            return Verdict(False, f"missing keyword {kw!r}")
    return Verdict(True, f"all {len(a.keywords)} keywords present")


class KeywordFrequencyArgs(Args):
    keyword: StrippedPattern
    frequency: NonNegativeInt
    relation: Relation


@_check("keywords:frequency", KeywordFrequencyArgs)
def keyword_frequency(text: str, a: KeywordFrequencyArgs, dl: Deadline) -> Verdict:
    n = safe_regex.count(_user_pattern(a.keyword, regex.IGNORECASE), text, dl)
    ok = compare(n, a.relation, a.frequency)
    return Verdict(ok, f"{a.keyword!r} appears {n} times, need {a.relation} {a.frequency}")


class ForbiddenWordsArgs(Args):
    forbidden_words: PatternList


@_check("keywords:forbidden_words", ForbiddenWordsArgs)
def forbidden_words(text: str, a: ForbiddenWordsArgs, dl: Deadline) -> Verdict:
    for word in a.forbidden_words:
        try:
            pattern = safe_regex.compile_pattern(rf"\b{word}\b", regex.IGNORECASE)
        except regex.error:
            pattern = safe_regex.compile_pattern(rf"\b{regex.escape(word)}\b", regex.IGNORECASE)
        if safe_regex.search(pattern, text, dl):
            return Verdict(False, f"uses forbidden word {word!r}")
    return Verdict(True, "no forbidden word")


class LetterFrequencyArgs(Args):
    letter: str
    let_frequency: NonNegativeInt
    let_relation: Relation

    @field_validator("letter")
    @classmethod
    def _one_char(cls, v: str) -> str:
        # IFEval swaps anything but an ASCII letter for a random letter (its data has "#" and
        # "!"); counting the character the prompt names is the deterministic reading.
        v = v.strip().lower()
        if len(v) != 1:
            raise ValueError(f"letter must be one character, got {v!r}")
        return v


@_check("keywords:letter_frequency", LetterFrequencyArgs)
def letter_frequency(text: str, a: LetterFrequencyArgs, dl: Deadline) -> Verdict:
    n = text.lower().count(a.letter)
    ok = compare(n, a.let_relation, a.let_frequency)
    return Verdict(
        ok, f"letter {a.letter!r} appears {n} times, need {a.let_relation} {a.let_frequency}"
    )


# --- language and case ----------------------------------------------------------------------


class LanguageArgs(Args):
    language: str

    @field_validator("language")
    @classmethod
    def _known(cls, v: str) -> str:
        if v not in supported_languages():
            raise ValueError(
                f"unsupported language {v!r}; use one of {', '.join(sorted(supported_languages()))}"
            )
        return v


@_check("language:response_language", LanguageArgs)
def response_language(text: str, a: LanguageArgs, dl: Deadline) -> Verdict:
    lang = detect_language(text)
    if lang is None:  # IFEval counts an undetectable language as followed
        return Verdict(True, "language not detectable")
    return Verdict(lang == a.language, f"detected {lang!r}, want {a.language!r}")


def _cased_english(text: str, upper: bool) -> Verdict:
    case = "upper" if upper else "lower"
    if not (text.isupper() if upper else text.islower()):
        return Verdict(False, f"not all {case} case")
    lang = detect_language(text)
    if lang is None:
        return Verdict(True, f"all {case} case; language not detectable")
    return Verdict(lang == "en", f"all {case} case; detected {lang!r}")


@_check("change_case:english_capital", NoArgs)
def english_capital(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    return _cased_english(text, upper=True)


@_check("change_case:english_lowercase", NoArgs)
def english_lowercase(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    return _cased_english(text, upper=False)


class CapitalFrequencyArgs(Args):
    capital_frequency: NonNegativeInt
    capital_relation: Relation


@_check("change_case:capital_word_frequency", CapitalFrequencyArgs)
def capital_word_frequency(text: str, a: CapitalFrequencyArgs, dl: Deadline) -> Verdict:
    n = count_capital_words(text)
    ok = compare(n, a.capital_relation, a.capital_frequency)
    return Verdict(ok, f"{n} all-capital words, need {a.capital_relation} {a.capital_frequency}")


# --- length ---------------------------------------------------------------------------------


class SentencesArgs(Args):
    num_sentences: NonNegativeInt
    relation: Relation


@_check("length_constraints:number_sentences", SentencesArgs)
def number_sentences(text: str, a: SentencesArgs, dl: Deadline) -> Verdict:
    n = count_sentences(text)
    return Verdict(
        compare(n, a.relation, a.num_sentences),
        f"{n} sentences, need {a.relation} {a.num_sentences}",
    )


class WordsArgs(Args):
    num_words: NonNegativeInt
    relation: Relation


@_check("length_constraints:number_words", WordsArgs)
def number_words(text: str, a: WordsArgs, dl: Deadline) -> Verdict:
    n = count_words(text)
    return Verdict(
        compare(n, a.relation, a.num_words), f"{n} words, need {a.relation} {a.num_words}"
    )


class ParagraphsArgs(Args):
    num_paragraphs: NonNegativeInt


_DIVIDER = re.compile(r"\s?\*\*\*\s?")


@_check("length_constraints:number_paragraphs", ParagraphsArgs)
def number_paragraphs(text: str, a: ParagraphsArgs, dl: Deadline) -> Verdict:
    parts = _DIVIDER.split(text)
    n = len(parts)
    for i, part in enumerate(parts):
        if not part.strip():
            if i in (0, len(parts) - 1):
                n -= 1  # a divider at either end opens no paragraph
            else:
                return Verdict(False, "empty paragraph between *** dividers")
    return Verdict(n == a.num_paragraphs, f"{n} paragraphs (*** dividers), need {a.num_paragraphs}")


class NthParagraphArgs(Args):
    num_paragraphs: PositiveInt
    nth_paragraph: PositiveInt
    first_word: str = Field(min_length=1)

    @model_validator(mode="after")
    def _in_range(self) -> NthParagraphArgs:
        if self.nth_paragraph > self.num_paragraphs:
            raise ValueError(
                f"nth_paragraph {self.nth_paragraph} exceeds num_paragraphs {self.num_paragraphs}"
            )
        return self


_FIRST_WORD_STOP = frozenset(".,?!'\"")


@_check("length_constraints:nth_paragraph_first_word", NthParagraphArgs)
def nth_paragraph_first_word(text: str, a: NthParagraphArgs, dl: Deadline) -> Verdict:
    parts = text.split("\n\n")
    n = sum(1 for p in parts if p.strip())
    # IFEval indexes the raw split (blank pieces included) with the non-blank count as bound.
    if a.nth_paragraph > n:
        return Verdict(False, f"{n} paragraphs, no paragraph {a.nth_paragraph}")
    paragraph = parts[a.nth_paragraph - 1].strip()
    if not paragraph:
        return Verdict(False, f"paragraph {a.nth_paragraph} is empty")
    word = paragraph.split()[0].strip().lstrip("'").lstrip('"')
    first = ""
    for ch in word:
        if ch in _FIRST_WORD_STOP:
            break
        first += ch.lower()
    want = a.first_word.lower()
    ok = n == a.num_paragraphs and first == want
    return Verdict(
        ok,
        f"{n} paragraphs (need {a.num_paragraphs}); paragraph {a.nth_paragraph} starts {first!r}, want {want!r}",
    )


# --- detectable content ---------------------------------------------------------------------


class PlaceholdersArgs(Args):
    num_placeholders: NonNegativeInt


_PLACEHOLDER = re.compile(r"\[.*?\]")


@_check("detectable_content:number_placeholders", PlaceholdersArgs)
def number_placeholders(text: str, a: PlaceholdersArgs, dl: Deadline) -> Verdict:
    n = len(_PLACEHOLDER.findall(text))
    return Verdict(
        n >= a.num_placeholders, f"{n} [placeholders], need at least {a.num_placeholders}"
    )


class PostscriptArgs(Args):
    postscript_marker: StrippedPattern


@_check("detectable_content:postscript", PostscriptArgs)
def postscript(text: str, a: PostscriptArgs, dl: Deadline) -> Verdict:
    # IFEval's two stock markers tolerate a space between the letters; others are patterns.
    if a.postscript_marker == "P.P.S":
        pattern = safe_regex.compile_pattern(r"\s*p\.\s?p\.\s?s.*$", regex.MULTILINE)
    elif a.postscript_marker == "P.S.":
        pattern = safe_regex.compile_pattern(r"\s*p\.\s?s\..*$", regex.MULTILINE)
    else:
        marker = a.postscript_marker.lower()
        try:
            pattern = safe_regex.compile_pattern(rf"\s*{marker}.*$", regex.MULTILINE)
        except regex.error:
            pattern = safe_regex.compile_pattern(rf"\s*{regex.escape(marker)}.*$", regex.MULTILINE)
    found = safe_regex.search(pattern, text.lower(), dl)
    return Verdict(found, f"postscript {a.postscript_marker!r} {'found' if found else 'missing'}")


# --- detectable format ----------------------------------------------------------------------


class BulletsArgs(Args):
    num_bullets: NonNegativeInt


_STAR_BULLET = re.compile(r"^\s*\*[^\*].*$", re.MULTILINE)
_DASH_BULLET = re.compile(r"^\s*-.*$", re.MULTILINE)


@_check("detectable_format:number_bullet_lists", BulletsArgs)
def number_bullet_lists(text: str, a: BulletsArgs, dl: Deadline) -> Verdict:
    n = len(_STAR_BULLET.findall(text)) + len(_DASH_BULLET.findall(text))
    return Verdict(n == a.num_bullets, f"{n} bullet points, need exactly {a.num_bullets}")


_CONSTRAINED_OPTIONS = ("My answer is yes.", "My answer is no.", "My answer is maybe.")


@_check("detectable_format:constrained_response", NoArgs)
def constrained_response(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    stripped = text.strip()
    for option in _CONSTRAINED_OPTIONS:
        if option in stripped:
            return Verdict(True, f"contains {option!r}")
    return Verdict(False, "none of the fixed answer options")


class HighlightsArgs(Args):
    num_highlights: NonNegativeInt


_HIGHLIGHT = re.compile(r"\*[^\n\*]*\*")
_DOUBLE_HIGHLIGHT = re.compile(r"\*\*[^\n\*]*\*\*")


@_check("detectable_format:number_highlighted_sections", HighlightsArgs)
def number_highlighted_sections(text: str, a: HighlightsArgs, dl: Deadline) -> Verdict:
    n = sum(1 for h in _HIGHLIGHT.findall(text) if h.strip("*").strip())
    n += sum(1 for h in _DOUBLE_HIGHLIGHT.findall(text) if h[2:-2].strip())
    return Verdict(
        n >= a.num_highlights, f"{n} *highlighted* sections, need at least {a.num_highlights}"
    )


class SectionsArgs(Args):
    section_spliter: StrippedPattern
    num_sections: NonNegativeInt


@_check("detectable_format:multiple_sections", SectionsArgs)
def multiple_sections(text: str, a: SectionsArgs, dl: Deadline) -> Verdict:
    try:
        pattern = safe_regex.compile_pattern(rf"\s?{a.section_spliter}\s?\d+\s?")
    except regex.error:
        pattern = safe_regex.compile_pattern(rf"\s?{regex.escape(a.section_spliter)}\s?\d+\s?")
    n = safe_regex.split_count(pattern, text, dl) - 1
    return Verdict(
        n >= a.num_sections, f"{n} '{a.section_spliter} N' sections, need at least {a.num_sections}"
    )


@_check("detectable_format:json_format", NoArgs)
def json_format(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    body = text.strip()
    for fence in ("```json", "```Json", "```JSON", "```"):
        body = body.removeprefix(fence)
    body = body.removesuffix("```").strip()
    try:
        json.loads(body)
    except ValueError as e:
        return Verdict(False, f"not JSON: {e}"[:120])
    return Verdict(True, "valid JSON")


_TITLE = re.compile(r"<<[^\n]+>>")


@_check("detectable_format:title", NoArgs)
def title(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    for t in _TITLE.findall(text):
        if t.lstrip("<").rstrip(">").strip():
            return Verdict(True, f"title {t[:60]!r}")
    return Verdict(False, "no <<title>>")


# --- combination ----------------------------------------------------------------------------


@_check("combination:two_responses", NoArgs)
def two_responses(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    parts = text.split("******")
    answers = []
    for i, part in enumerate(parts):
        if part.strip():
            answers.append(part)
        elif i not in (0, len(parts) - 1):
            return Verdict(False, "empty response between ****** separators")
    if len(answers) != 2:
        return Verdict(False, f"{len(answers)} responses separated by ******, need 2")
    if answers[0].strip() == answers[1].strip():
        return Verdict(False, "the two responses are identical")
    return Verdict(True, "two different responses")


class RepeatPromptArgs(Args):
    prompt_to_repeat: str = Field(min_length=1)


@_check("combination:repeat_prompt", RepeatPromptArgs)
def repeat_prompt(text: str, a: RepeatPromptArgs, dl: Deadline) -> Verdict:
    ok = text.strip().lower().startswith(a.prompt_to_repeat.strip().lower())
    return Verdict(
        ok, "starts with the prompt" if ok else "does not start with the prompt, verbatim"
    )


# --- start and end --------------------------------------------------------------------------


class EndArgs(Args):
    end_phrase: str = Field(min_length=1)


@_check("startend:end_checker", EndArgs)
def end_checker(text: str, a: EndArgs, dl: Deadline) -> Verdict:
    want = a.end_phrase.strip().lower()
    ok = text.strip().strip('"').lower().endswith(want)
    return Verdict(ok, f"{'ends' if ok else 'does not end'} with {a.end_phrase.strip()!r}")


@_check("startend:quotation", NoArgs)
def quotation(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    t = text.strip()
    ok = len(t) > 1 and t[0] == '"' and t[-1] == '"'
    return Verdict(ok, "wrapped in double quotes" if ok else "not wrapped in double quotes")


# --- punctuation ----------------------------------------------------------------------------


@_check("punctuation:no_comma", NoArgs)
def no_comma(text: str, a: NoArgs, dl: Deadline) -> Verdict:
    n = text.count(",")
    return Verdict(n == 0, f"{n} commas")
