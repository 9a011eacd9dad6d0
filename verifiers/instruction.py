"""The `instruction` verifier: instruction following checked by rules (IFEval's 25 and regexes).

Seed1.5-VL verifies visual instruction following with regular expressions; this verifier takes
a list of constraints, each a ``regex`` or one of Google IFEval's instruction ids with IFEval's
kwargs, and judges the *solution* part of the response (the text after ``</think>``): the
think block is the model's scratch space, and constraints such as "no commas" or "end with
this phrase" are about the answer the user sees.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from verifiers.ifeval import Deadline, judge_all, parse_constraint
from verifiers.ifeval.constraints import CONSTRAINT_IDS
from verifiers.registry import register
from verifiers.response_format import extract_solution
from verifiers.schemas import VerifyResult

MAX_CONSTRAINTS = 64


class ConstraintSpec(BaseModel):
    """One constraint: an id and its kwargs (null values mean "not given")."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(
        ..., description="'regex' or an IFEval instruction id", examples=list(CONSTRAINT_IDS)
    )
    kwargs: dict[str, Any] | None = Field(None, description="the constraint's arguments")

    @model_validator(mode="after")
    def _checkable(self) -> ConstraintSpec:
        parse_constraint(self.id, self.kwargs)  # ConstraintError is a ValueError: names the id
        return self


class InstructionReference(BaseModel):
    """Reference of the `instruction` verifier: the constraints the solution must satisfy.

    An IFEval row (``instruction_id_list`` + ``kwargs``, optionally ``key`` and ``prompt``) is
    accepted too and read as the same list.
    """

    model_config = ConfigDict(extra="forbid")

    constraints: list[ConstraintSpec] = Field(..., min_length=1, max_length=MAX_CONSTRAINTS)

    @model_validator(mode="before")
    @classmethod
    def _from_ifeval_row(cls, data: Any) -> Any:
        if isinstance(data, dict) and "instruction_id_list" in data and "constraints" not in data:
            ids = data["instruction_id_list"]
            kwargs = data.get("kwargs") or [None] * len(ids)
            if not isinstance(ids, list) or not isinstance(kwargs, list) or len(ids) != len(kwargs):
                raise ValueError("instruction_id_list and kwargs must be lists of equal length")
            return {
                "constraints": [{"id": i, "kwargs": k} for i, k in zip(ids, kwargs, strict=True)]
            }
        return data


class InstructionOptions(BaseModel):
    """Options this verifier reads; other keys (e.g. ``require_format``) are left to the caller."""

    model_config = ConfigDict(extra="ignore")

    mode: Literal["strict", "loose"] = "strict"
    aggregate: Literal["all", "fraction"] = "all"


def _errors(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:4]:
        loc = ".".join(str(x) for x in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


@register("instruction", version="1", reference=InstructionReference)
def verify_instruction(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """Instruction following: IFEval instructions and regex constraints on the solution text."""
    try:
        opts = InstructionOptions.model_validate(options or {})
    except ValidationError as e:
        return VerifyResult.failure("instruction", f"invalid options: {_errors(e)}")
    try:
        ref = InstructionReference.model_validate(reference)
    except ValidationError as e:
        return VerifyResult.failure("instruction", f"invalid reference: {_errors(e)}")

    constraints = [parse_constraint(c.id, c.kwargs) for c in ref.constraints]
    solution = extract_solution(response)
    verdicts = judge_all(constraints, solution, opts.mode, Deadline())

    satisfied = sum(v.ok for v in verdicts)
    total = len(verdicts)
    all_ok = satisfied == total
    reward = satisfied / total if opts.aggregate == "fraction" else float(all_ok)
    return VerifyResult(
        reward=reward,
        correct=all_ok,
        details={
            "mode": opts.mode,
            "aggregate": opts.aggregate,
            "satisfied": satisfied,
            "total": total,
            "judged": "solution",
            "per_constraint": [
                {"id": c.id, "ok": v.ok, "reason": v.reason}
                for c, v in zip(constraints, verdicts, strict=True)
            ],
        },
    )
