"""Rejection sampling for the next SFT round (Seed1.5-VL §4.5), the pure part.

After an RL model, sample several responses per new prompt, keep the verified-correct ones on
prompts the policy solves only sometimes (its frontier), drop bad patterns (endless
repetition, overthinking, configured regexes), dedupe and cap per prompt. Everything here is
a pure function of its inputs; generation, verification, files and training live in
`rl.rs_iteration`.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pretrain.config import TrainConfig
from verifiers.response_format import check_format


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


# --------------------------------------------------------------------------- config


class PromptsConfig(_Section):
    """Where the iteration's new prompts come from: a records file, or a fresh synth draw."""

    data: str | None = Field(None, description="prompt-record parquet/JSONL; None: synthesize")
    n: int = Field(112, ge=1, description="prompts per iteration (synth: round robin over tasks)")
    tasks: list[str] = Field(
        default_factory=lambda: ["math", "grounding", "counting", "spot_difference", "puzzle"],
        description="synth tasks (a file: keep only these tasks; empty: all)",
    )
    difficulty: Literal["easy", "hard"] = "easy"
    task_overrides: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="synth task config fields over the difficulty preset"
    )
    seed: int = Field(1000, description="synth seed of iteration k is seed + k (train split)")


class SamplingConfig(_Section):
    n: int = Field(4, ge=1, description="sampled responses per prompt")
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(160, ge=1)
    micro_batch_size: int = Field(64, ge=1, description="sequences per generate call")
    seed: int = Field(0, description="sampling seed of iteration k is seed + k")


class VerifyConfig(_Section):
    """The RL reward path's verifiers: HTTP service, sandbox processes, or this process."""

    url: str | None = Field(None, description="verifier API base URL; None: no service")
    api_key: str | None = None
    sandbox_workers: int = Field(0, ge=0, description="no URL: N killable processes (0: inline)")
    timeout_s: float = Field(30.0, gt=0)


class PassRateBounds(_Section):
    """Pass-rate bounds of the prompts kept (inclusive)."""

    min_pass_rate: float = Field(0.0, ge=0, le=1, description="keep prompts with rate >= this")
    max_pass_rate: float = Field(0.75, ge=0, le=1, description="keep prompts with rate <= this")

    @model_validator(mode="after")
    def _ordered(self) -> PassRateBounds:
        if self.min_pass_rate > self.max_pass_rate:
            raise ValueError(
                f"min_pass_rate ({self.min_pass_rate}) is above max_pass_rate ({self.max_pass_rate})"
            )
        return self


class SelectConfig(PassRateBounds):
    """Which prompts count as challenging, and how many responses each contributes."""

    per_task: dict[str, PassRateBounds] = Field(
        default_factory=dict,
        description="bounds of one task (e.g. a floor above chance for multiple choice)",
    )
    max_per_prompt: int = Field(2, ge=1, description="kept responses per prompt, at most")
    prefer: Literal["shortest", "first"] = Field(
        "shortest", description="which distinct correct responses fill the cap"
    )

    def bounds(self, task: str | None) -> PassRateBounds:
        return self.per_task.get(task, self) if task is not None else self


class RepetitionFilter(_Section):
    """Endless repetition: a unit of 1..max_unit characters repeated back to back at least
    max(min_repeats, ceil(min_span / unit length)) times."""

    enabled: bool = True
    min_repeats: int = Field(4, ge=2)
    max_unit: int = Field(64, ge=1)
    min_span: int = Field(24, ge=1, description="characters the repeated run covers, at least")


class OverthinkingFilter(_Section):
    """Overthinking: a think block longer than an absolute bound, or much longer than the
    shortest correct think block of the same prompt."""

    enabled: bool = True
    max_think_chars: int | None = Field(256, ge=1, description="None: no absolute bound")
    max_ratio_to_shortest: float | None = Field(
        3.0, gt=1, description="think > ratio x max(shortest, ratio_min_chars) (None: off)"
    )
    ratio_min_chars: int = Field(32, ge=1, description="floor of the shortest think length")


def _check_regex(pattern: str, groups: int = 0) -> str:
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise ValueError(f"pattern {pattern!r} is not a valid regex: {e}") from None
    if compiled.groups < groups:
        raise ValueError(f"pattern {pattern!r} needs a capture group (the answer)")
    return pattern


class ConsistencyRule(_Section):
    """The answer a think block concludes (group 1 of ``think``) must equal the answer the
    solution gives (group 1 of ``solution``); a correct answer the reasoning does not lead to
    is a lucky guess. No judgement when either regex finds nothing."""

    think: str
    solution: str = r"(\S+)\s*$"

    @field_validator("think", "solution")
    @classmethod
    def _one_group(cls, value: str) -> str:
        return _check_regex(value, groups=1)


class FiltersConfig(_Section):
    repetition: RepetitionFilter = Field(default_factory=RepetitionFilter)
    overthinking: OverthinkingFilter = Field(default_factory=OverthinkingFilter)
    consistency: dict[str, ConsistencyRule] = Field(
        default_factory=dict, description="per task: think/solution answer regexes"
    )
    patterns: list[str] = Field(
        default_factory=list, description="extra regexes (Python re, DOTALL); a match drops it"
    )

    @field_validator("patterns")
    @classmethod
    def _compiles(cls, value: list[str]) -> list[str]:
        return [_check_regex(p) for p in value]


class MixConfig(_Section):
    """The previous round's SFT data added to this round's kept responses."""

    previous: bool = Field(True, description="add iter_{k-1}/sft_data.parquet (k=1: cold_start)")
    cold_start: str | None = Field(
        "runs/base-model/data/sft_train.parquet", description="iteration 1's previous SFT data"
    )
    ratio: float | None = Field(
        1.0, ge=0, description="previous records per kept response (None: max_previous alone)"
    )
    max_previous: int = Field(512, ge=0, description="records drawn from it, at most (seeded)")
    seed: int = 0


class SFTSection(_Section):
    init: str = Field(
        "policy", description="'policy' (the sampling policy), 'base' (base_model), or a dir"
    )
    train: TrainConfig = Field(
        default_factory=lambda: TrainConfig(
            name="rs_sft", steps=40, global_batch=16, micro_batch=16
        )
    )


class EvalSection(_Section):
    data: str | None = Field(
        "runs/base-model/data/test.parquet", description="held-out records; None: no eval"
    )
    n_per_task: int = Field(16, ge=1)
    batch_size: int = Field(56, ge=1)
    max_new_tokens: int = Field(160, ge=1)


class RSConfig(_Section):
    """One rejection-sampling fine-tuning iteration (`hybridrl rs-iteration`)."""

    run_dir: str = "runs/rs"
    policy: str | None = Field(
        None, description="checkpoint dir or RL run dir; None: previous iteration, rl_run, base"
    )
    rl_run: str | None = Field(None, description="RL run dir whose newest actor iteration 1 uses")
    base_model: str = "runs/base-model/model"
    threads: int | None = Field(None, ge=1, description="torch threads (default: all cores)")
    prompts: PromptsConfig = Field(default_factory=PromptsConfig)
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    select: SelectConfig = Field(default_factory=SelectConfig)
    filters: FiltersConfig = Field(default_factory=FiltersConfig)
    mix: MixConfig = Field(default_factory=MixConfig)
    sft: SFTSection = Field(default_factory=SFTSection)
    eval: EvalSection = Field(default_factory=EvalSection)


# --------------------------------------------------------------------------- filters


def think_of(response: str) -> str:
    """The think block's text ('' when the response has none)."""
    return check_format(response).think or ""


@lru_cache(maxsize=4096)
def _run_pattern(unit: int, repeats: int) -> re.Pattern[str]:
    return re.compile(rf"(.{{{unit}}})\1{{{repeats - 1},}}", re.DOTALL)


def find_repetition(text: str, cfg: RepetitionFilter) -> tuple[str, int] | None:
    """The first (unit, times) that ``text`` repeats back to back beyond the filter's bounds."""
    for unit in range(1, cfg.max_unit + 1):
        repeats = max(cfg.min_repeats, math.ceil(cfg.min_span / unit))
        if unit * repeats > len(text):
            continue  # not monotonic in unit (ceil), so a longer unit may still fit
        m = _run_pattern(unit, repeats).search(text)
        if m is not None:
            return m.group(1), len(m.group(0)) // unit
    return None


def overthinks(think_chars: int, shortest_chars: int | None, cfg: OverthinkingFilter) -> bool:
    """Is a think block of ``think_chars`` too long, alone or against the prompt's shortest?"""
    if cfg.max_think_chars is not None and think_chars > cfg.max_think_chars:
        return True
    if cfg.max_ratio_to_shortest is not None and shortest_chars is not None:
        return think_chars > cfg.max_ratio_to_shortest * max(shortest_chars, cfg.ratio_min_chars)
    return False


def _same_answer(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    try:
        return float(a) == float(b)  # "3.0" seconds in the think, \boxed{3} in the solution
    except ValueError:
        return False


def inconsistent(response: str, rule: ConsistencyRule) -> bool:
    """Does the think block conclude an answer other than the one the solution gives?"""
    fmt = check_format(response)
    if fmt.think is None:
        return False
    concluded = re.search(rule.think, fmt.think, re.DOTALL)
    given = re.search(rule.solution, fmt.solution, re.DOTALL)
    if concluded is None or given is None:
        return False
    return not _same_answer(concluded.group(1), given.group(1))


def reject_reason(
    response: str, shortest_think: int | None, cfg: FiltersConfig, task: str | None = None
) -> str | None:
    """Why a correct response is dropped: 'repetition', 'overthinking', 'inconsistent',
    'pattern:<i>', or None (kept)."""
    if cfg.repetition.enabled and find_repetition(response, cfg.repetition) is not None:
        return "repetition"
    if cfg.overthinking.enabled and overthinks(
        len(think_of(response)), shortest_think, cfg.overthinking
    ):
        return "overthinking"
    rule = cfg.consistency.get(task) if task is not None else None
    if rule is not None and inconsistent(response, rule):
        return "inconsistent"
    for i, pattern in enumerate(cfg.patterns):
        if re.search(pattern, response, re.DOTALL):
            return f"pattern:{i}"
    return None


# --------------------------------------------------------------------------- selection


@dataclass(frozen=True)
class Sample:
    """One sampled response, verified: ``error`` set means the verifier could not score it."""

    prompt: int  # index into the iteration's prompt list
    text: str
    correct: bool
    format_ok: bool
    reward: float | None = None
    error: str | None = None


def pass_rate(samples: Sequence[Sample]) -> float | None:
    """Correct / scored samples (verifier errors left out); None when nothing was scored."""
    scored = [s for s in samples if s.error is None]
    if not scored:
        return None
    return sum(s.correct for s in scored) / len(scored)


def prompt_verdict(rate: float | None, cfg: PassRateBounds) -> str:
    """'selected', or why a prompt contributes nothing: unscored, unsolved, too_hard, too_easy."""
    if rate is None:
        return "unscored"
    if rate == 0:
        return "unsolved"
    if rate < cfg.min_pass_rate:
        return "too_hard"
    if rate > cfg.max_pass_rate:
        return "too_easy"
    return "selected"


def previous_count(kept: int, ratio: float | None, max_previous: int) -> int:
    """How many previous-round records join ``kept`` new ones: ratio x kept, capped."""
    if ratio is None:
        return max_previous
    return min(max_previous, round(ratio * kept))


def normalise(text: str) -> str:
    """The dedupe key: whitespace runs collapsed, ends stripped."""
    return " ".join(text.split())


@dataclass
class Selection:
    """The outcome of one iteration's filtering."""

    kept: list[Sample]  # in prompt order
    verdicts: list[str]  # per input sample: 'kept' or the reason it was left out
    pass_rates: list[float | None]  # per prompt
    stats: dict[str, Any]


_SAMPLE_REASONS = (
    "error",
    "incorrect",
    "unsolved",
    "too_hard",
    "too_easy",
    "repetition",
    "overthinking",
    "inconsistent",
    "pattern",
    "duplicate",
    "over_cap",
    "kept",
)
_PROMPT_VERDICTS = ("unscored", "unsolved", "too_hard", "too_easy", "selected")


def select_responses(
    samples: Sequence[Sample],
    n_prompts: int,
    select: SelectConfig,
    filters: FiltersConfig,
    tasks: Sequence[str] | None = None,
) -> Selection:
    """Keep correct responses on prompts whose pass rate lies in the bounds, minus bad patterns,
    duplicates and those over the per-prompt cap; counts overall and per task (``tasks[i]`` is
    prompt i's task)."""
    task_of = list(tasks) if tasks is not None else ["all"] * n_prompts
    if len(task_of) != n_prompts:
        raise ValueError(f"{len(task_of)} task names for {n_prompts} prompts")
    by_prompt: dict[int, list[int]] = defaultdict(list)
    for i, s in enumerate(samples):
        if not 0 <= s.prompt < n_prompts:
            raise ValueError(f"sample {i} names prompt {s.prompt}, outside 0..{n_prompts - 1}")
        by_prompt[s.prompt].append(i)
    verdicts = [""] * len(samples)
    rates: list[float | None] = []
    prompt_verdicts: list[str] = []
    pattern_hits: Counter[str] = Counter()
    kept_idx: list[int] = []
    for p in range(n_prompts):
        idx = by_prompt.get(p, [])
        rate = pass_rate([samples[i] for i in idx])
        rates.append(rate)
        pv = prompt_verdict(rate, select.bounds(task_of[p]))
        prompt_verdicts.append(pv)
        correct = []
        for i in idx:
            s = samples[i]
            if s.error is not None:
                verdicts[i] = "error"
            elif not s.correct:
                verdicts[i] = "incorrect"
            elif pv != "selected":
                verdicts[i] = pv
            else:
                correct.append(i)
        shortest = min((len(think_of(samples[i].text)) for i in correct), default=None)
        clean = []
        for i in correct:
            reason = reject_reason(samples[i].text, shortest, filters, task_of[p])
            if reason is None:
                clean.append(i)
            elif reason.startswith("pattern:"):
                verdicts[i] = "pattern"
                pattern_hits[filters.patterns[int(reason.split(":", 1)[1])]] += 1
            else:
                verdicts[i] = reason
        seen: set[str] = set()
        distinct = []
        for i in clean:
            key = normalise(samples[i].text)
            if key in seen:
                verdicts[i] = "duplicate"
            else:
                seen.add(key)
                distinct.append(i)
        if select.prefer == "shortest":
            distinct.sort(key=lambda i: (len(samples[i].text), i))
        for rank, i in enumerate(distinct):
            verdicts[i] = "kept" if rank < select.max_per_prompt else "over_cap"
        kept_idx += sorted(i for i in distinct[: select.max_per_prompt])
    stats = _stats(samples, verdicts, rates, prompt_verdicts, task_of)
    stats["pattern_hits"] = dict(pattern_hits)
    return Selection([samples[i] for i in kept_idx], verdicts, rates, stats)


def _counts(
    samples: Sequence[Sample],
    verdicts: Sequence[str],
    rates: Sequence[float | None],
    prompt_verdicts: Sequence[str],
    prompts: set[int],
) -> dict[str, Any]:
    mine = [i for i, s in enumerate(samples) if s.prompt in prompts]
    sample_counts = Counter(verdicts[i] for i in mine)
    pv = Counter(prompt_verdicts[p] for p in prompts)
    scored = [rates[p] for p in prompts if rates[p] is not None]
    hist = Counter(f"{r:.2f}" for r in scored)
    return {
        "prompts": len(prompts),
        "samples": len(mine),
        "correct": sum(samples[i].correct and samples[i].error is None for i in mine),
        "format_ok": sum(samples[i].format_ok for i in mine),
        "mean_pass_rate": sum(scored) / len(scored) if scored else None,
        "pass_rate_histogram": dict(sorted(hist.items())),
        "prompt_verdicts": {k: pv.get(k, 0) for k in _PROMPT_VERDICTS},
        "sample_verdicts": {k: sample_counts.get(k, 0) for k in _SAMPLE_REASONS},
        "kept": sample_counts.get("kept", 0),
        "kept_prompts": len({samples[i].prompt for i in mine if verdicts[i] == "kept"}),
    }


def _stats(
    samples: Sequence[Sample],
    verdicts: Sequence[str],
    rates: Sequence[float | None],
    prompt_verdicts: Sequence[str],
    tasks: Sequence[str],
) -> dict[str, Any]:
    out = _counts(samples, verdicts, rates, prompt_verdicts, set(range(len(tasks))))
    per_task: dict[str, set[int]] = defaultdict(set)
    for p, t in enumerate(tasks):
        per_task[t].add(p)
    out["per_task"] = {
        t: _counts(samples, verdicts, rates, prompt_verdicts, ps)
        for t, ps in sorted(per_task.items())
    }
    return out
