"""Instruction-following checks: IFEval's 25 instructions and a ``regex`` constraint.

Pure functions over the text being judged; `verifiers.instruction` wraps them as the
``instruction`` verifier.
"""

from verifiers.ifeval.base import ConstraintError, Deadline, Verdict
from verifiers.ifeval.constraints import (
    CONSTRAINT_IDS,
    Constraint,
    Mode,
    judge,
    judge_all,
    loose_variants,
    parse_constraint,
)

__all__ = [
    "CONSTRAINT_IDS",
    "Constraint",
    "ConstraintError",
    "Deadline",
    "Mode",
    "Verdict",
    "judge",
    "judge_all",
    "loose_variants",
    "parse_constraint",
]
