"""The `instruction` verifier: regex constraints, IFEval instructions, modes, aggregation, errors,
and agreement with the official IFEval checker on its published GPT-4 verdicts."""

from __future__ import annotations

from pathlib import Path

import pytest

from verifiers import reference_schemas, verify
from verifiers.ifeval.conformance import load_cases, measure, table
from verifiers.ifeval.segment import count_capital_words, count_sentences, count_words

CONFORMANCE = Path(__file__).resolve().parents[1] / ".." / "shared" / "conformance" / "ifeval"


def run(response: str, *constraints: dict, **options):
    return verify("instruction", response, {"constraints": list(constraints)}, options)


def rx(pattern: str, **kw) -> dict:
    return {"id": "regex", "kwargs": {"pattern": pattern, **kw}}


def reasons(result) -> list[str]:
    return [c["reason"] for c in result.details["per_constraint"]]


# --- regex constraint ---------------------------------------------------------------------


def test_regex_match_and_no_match():
    hit = run("The answer is 42.", rx(r"\b\d+\b"))
    assert hit.error is None and hit.correct and hit.reward == 1.0
    miss = run("The answer is forty-two.", rx(r"\b\d+\b"))
    assert not miss.correct and miss.reward == 0.0
    assert reasons(miss) == ["no match"]


def test_regex_must_not_match():
    assert run("all lower case", rx("[A-Z]", must_match=False)).correct
    r = run("One capital", rx("[A-Z]", must_match=False))
    assert not r.correct and reasons(r) == ["matched but must not"]


def test_regex_counts():
    text = "cat dog cat bird cat"
    assert run(text, rx("cat", count_min=3)).correct
    assert not run(text, rx("cat", count_min=4)).correct
    assert run(text, rx("cat", count_min=1, count_max=3)).correct
    r = run(text, rx("cat", count_max=2))
    assert not r.correct and reasons(r) == ["3 matches, need 0..2"]
    assert run(text, rx("fish", count_max=0)).correct


def test_regex_flags_letters_and_names():
    text = "Hello\nWORLD"
    assert not run(text, rx("^world$")).correct
    assert not run(text, rx("^world$", flags="i")).correct  # needs multiline too
    assert run(text, rx("^world$", flags="im")).correct
    assert run(text, rx("^world$", flags=["IGNORECASE", "m"])).correct
    assert not run(text, rx("hello.world", flags="i")).correct
    assert run(text, rx("hello.world", flags="is")).correct


def test_regex_bad_inputs_are_errors_naming_the_constraint():
    r = run("x", rx("(unclosed"))
    assert r.error and "regex" in r.error and "(unclosed" in r.error and r.reward == 0.0
    r = run("x", rx("x", flags="q"))
    assert r.error and "unknown regex flag 'q'" in r.error
    r = run("x", rx("x", count_min=3, count_max=1))
    assert r.error and "count_min 3 > count_max 1" in r.error
    r = run("x", rx("x" * 5000))
    assert r.error and "regex" in r.error


@pytest.mark.timeout(60)  # a hang is the bug this guards; the verdict proves the timeout path
def test_redos_pattern_fails_with_regex_timeout():
    evil = "a" * 5000 + "!"
    r = run(evil, rx(r"(a|aa)+$"), {"id": "punctuation:no_comma"}, mode="loose")
    assert r.error is None
    per = r.details["per_constraint"]
    assert per[0] == {"id": "regex", "ok": False, "reason": "regex timeout"}
    assert per[1]["ok"]  # the other constraints are still judged
    assert r.reward == 0.0


@pytest.mark.timeout(60)
def test_redos_through_an_ifeval_keyword_and_a_shared_budget():
    evil = "a" * 5000 + "!"
    bad_kw = {"id": "keywords:existence", "kwargs": {"keywords": [r"(a|a)+$"]}}
    r = run(evil, *([bad_kw] * 20), aggregate="fraction")
    assert r.error is None
    assert reasons(r) == ["regex timeout"] * 20
    assert r.reward == 0.0


# --- aggregation and modes ----------------------------------------------------------------


def test_fraction_aggregation():
    constraints = (
        {"id": "punctuation:no_comma"},
        {"id": "change_case:english_lowercase"},
        rx("moon"),
    )
    text = "the sun is bright today and the sky is clear and very blue"
    all_mode = run(text, *constraints)
    assert all_mode.reward == 0.0 and not all_mode.correct
    frac = run(text, *constraints, aggregate="fraction")
    assert frac.reward == pytest.approx(2 / 3)
    assert not frac.correct
    assert frac.details["satisfied"] == 2 and frac.details["total"] == 3
    assert [c["ok"] for c in frac.details["per_constraint"]] == [True, True, False]


def test_strict_vs_loose():
    text = 'Sure, here is the JSON you asked for:\n{"name": "Ada", "born": 1815}'
    json_c = {"id": "detectable_format:json_format"}
    strict = run(text, json_c)
    loose = run(text, json_c, mode="loose")
    assert not strict.correct and loose.correct
    assert "first line removed" in reasons(loose)[0]

    ending = {"id": "startend:end_checker", "kwargs": {"end_phrase": "Any other questions?"}}
    bold = "Here is my answer.\n**Any other questions?**"
    assert not run(bold, ending).correct
    assert run(bold, ending, mode="loose").correct


def test_invalid_options_are_errors():
    r = run("x", {"id": "punctuation:no_comma"}, mode="lenient")
    assert r.error and "mode" in r.error
    r = run("x", {"id": "punctuation:no_comma"}, aggregate="mean")
    assert r.error and "aggregate" in r.error


# --- errors -------------------------------------------------------------------------------


def test_unknown_constraint_id_is_an_error_naming_it():
    r = run("hello", {"id": "punctuation:no_comma"}, {"id": "keywords:nonexistent"})
    assert r.error is not None and r.reward == 0.0 and not r.correct
    assert "'keywords:nonexistent'" in r.error and "constraints.1" in r.error


def test_bad_kwargs_are_errors_naming_constraint_and_argument():
    r = run("x", {"id": "length_constraints:number_words", "kwargs": {"num_words": 10}})
    assert r.error and "'length_constraints:number_words'" in r.error and "relation" in r.error
    r = run(
        "x",
        {
            "id": "length_constraints:number_words",
            "kwargs": {"num_words": 10, "relation": "more than"},
        },
    )
    assert r.error and "less than" in r.error
    r = run("x", {"id": "punctuation:no_comma", "kwargs": {"num_words": 3}})
    assert r.error and "'punctuation:no_comma'" in r.error and "num_words" in r.error


def test_null_kwargs_mean_not_given():
    # the Hugging Face copy of IFEval fills every kwarg slot, with nulls for unused ones
    kwargs = {"num_words": 3, "relation": "at least", "keywords": None, "letter": None}
    r = run("one two three", {"id": "length_constraints:number_words", "kwargs": kwargs})
    assert r.error is None and r.correct
    assert run("no args", {"id": "punctuation:no_comma", "kwargs": None}).correct


def test_ifeval_row_is_accepted_as_reference():
    row = {
        "key": 1,
        "prompt": "Say hi without commas.",
        "instruction_id_list": ["punctuation:no_comma", "keywords:existence"],
        "kwargs": [{}, {"keywords": ["hi"]}],
    }
    assert verify("instruction", "hi there", row).correct
    assert not verify("instruction", "hi, there", row).correct


def test_reference_schema_is_published():
    schema = reference_schemas()["instruction"]
    assert schema["version"] == "1"
    assert "constraints" in schema["reference_schema"]["properties"]


# --- what is judged -----------------------------------------------------------------------


def test_only_the_solution_is_judged():
    c = {"id": "punctuation:no_comma"}
    assert run("<think>commas, commas, everywhere</think>No commas here.", c).correct
    r = run("<think>none here</think>But, here, yes.", c)
    assert not r.correct and r.details["judged"] == "solution"
    assert r.format_ok


def test_empty_solution_follows_nothing():
    r = run("<think>unfinished thought", {"id": "punctuation:no_comma"}, mode="loose")
    assert not r.correct and reasons(r) == ["empty response"]


def test_ifeval_checks_by_hand():
    assert run(
        "first\n\nsecond",
        {
            "id": "length_constraints:nth_paragraph_first_word",
            "kwargs": {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "Second"},
        },
    ).correct
    assert run('"wrapped"', {"id": "startend:quotation"}).correct
    assert not run('"half', {"id": "startend:quotation"}).correct
    assert run(
        "A *b* and *c*",
        {"id": "detectable_format:number_highlighted_sections", "kwargs": {"num_highlights": 2}},
    ).correct
    assert run(
        "x\n* one\n* two\n- three",
        {"id": "detectable_format:number_bullet_lists", "kwargs": {"num_bullets": 3}},
    ).correct
    assert run(
        "Body\nP.S. bye",
        {"id": "detectable_content:postscript", "kwargs": {"postscript_marker": "P.S."}},
    ).correct
    assert run(
        "SECTION 1\na\nSECTION 2\nb",
        {
            "id": "detectable_format:multiple_sections",
            "kwargs": {"section_spliter": "SECTION", "num_sections": 2},
        },
    ).correct
    assert run("one\n******\ntwo", {"id": "combination:two_responses"}).correct
    assert not run("one\n******\none", {"id": "combination:two_responses"}).correct
    assert run(
        "a bb #x #y",
        {
            "id": "keywords:letter_frequency",
            "kwargs": {"letter": "#", "let_frequency": 2, "let_relation": "at least"},
        },
    ).correct


def test_language_detection_is_deterministic():
    lang = {"id": "language:response_language", "kwargs": {"language": "fr"}}
    text = "Le chat dort sur le canapé pendant que la pluie tombe doucement dehors."
    results = [run(text, lang) for _ in range(3)]
    assert all(r.correct for r in results)
    assert not run("The cat sleeps on the sofa while the rain falls outside.", lang).correct
    r = run("x", {"id": "language:response_language", "kwargs": {"language": "xx"}})
    assert r.error and "unsupported language 'xx'" in r.error


# --- tokenizers (word and capital-word counts checked against NLTK's own tokenizers; sentence
# counts follow Punkt's procedure, whose English tables cannot be loaded here) ---


def test_sentence_and_word_counts():
    assert count_words("Hello, world! It's 2023.") == 5
    assert count_sentences("Dr. Smith arrived. He sat down.") == 2
    assert count_sentences("1. First item\n2. second item.") == 2  # "1." stands alone
    assert count_sentences("No final period\nand a second line") == 1
    assert count_sentences('He said "Stop." Then he left.') == 2
    assert count_sentences("Wait... what? Yes!") == 2
    assert count_capital_words("I DON'T KNOW. IT'S AT&T (NASA) WELL-KNOWN, AI/ML CANNOT") == 13


# --- conformance with the official checker -------------------------------------------------


@pytest.mark.skipif(not CONFORMANCE.is_dir(), reason=f"no conformance data at {CONFORMANCE}")
@pytest.mark.parametrize("mode", ["strict", "loose"])
def test_agreement_with_official_ifeval_verdicts(mode):
    result = measure(load_cases(CONFORMANCE, mode), mode)
    print(table([result]))
    for d in result.disagreements:
        print(
            f"{mode} key={d.key} {d.instruction_id}: official={d.expected} ours={d.got} ({d.reason})"
        )
    assert result.errors == []
    assert result.total == 832
    assert result.rate >= 0.99, f"{mode} agreement {result.rate:.4f}"
    # The only loose disagreement: key 1122 asks for the "letter" '#', which IFEval swaps for
    # a random letter (its strict and loose runs disagree on the very same text).
    allowed = {(1122, "keywords:letter_frequency")}
    assert {(d.key, d.instruction_id) for d in result.disagreements} <= allowed
