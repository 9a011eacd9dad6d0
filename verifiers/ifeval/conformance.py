"""Agreement of the `instruction` verifier with the official IFEval checker's verdicts.

Reads the conformance data kept beside the project (``input_data.jsonl`` and the official
``eval_results_{strict,loose}.jsonl``), runs every prompt's GPT-4 response through
``verify("instruction", …)`` and compares verdict by verdict. Used by the tests and by
``bench/ifeval_conformance.py``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from verifiers.registry import verify

DEFAULT_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "conformance" / "ifeval"


@dataclass(frozen=True)
class Case:
    key: int
    prompt: str
    response: str
    instruction_ids: list[str]
    kwargs: list[dict]
    expected: list[bool]


@dataclass(frozen=True)
class Disagreement:
    key: int
    instruction_id: str
    expected: bool
    got: bool
    reason: str


@dataclass
class Agreement:
    mode: str
    total: int = 0
    agreed: int = 0
    per_instruction: dict[str, list[int]] = field(
        default_factory=lambda: defaultdict(lambda: [0, 0])
    )
    disagreements: list[Disagreement] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.agreed / self.total if self.total else 0.0


def load_cases(data_dir: Path = DEFAULT_DIR, mode: str = "strict") -> list[Case]:
    """Prompts joined with the official verdicts of ``mode`` (joined on the prompt text)."""
    inputs = {}
    for line in (data_dir / "input_data.jsonl").read_text().splitlines():
        row = json.loads(line)
        inputs[row["prompt"]] = row
    cases = []
    for line in (data_dir / f"eval_results_{mode}.jsonl").read_text().splitlines():
        res = json.loads(line)
        row = inputs[res["prompt"]]
        if row["instruction_id_list"] != res["instruction_id_list"]:
            raise ValueError(f"instruction lists differ for prompt key {row['key']}")
        cases.append(
            Case(
                row["key"],
                row["prompt"],
                res["response"],
                row["instruction_id_list"],
                row["kwargs"],
                res["follow_instruction_list"],
            )
        )
    return cases


def measure(cases: list[Case], mode: str) -> Agreement:
    """Verdict-level agreement of ``verify("instruction")`` with the official verdicts."""
    out = Agreement(mode)
    for case in cases:
        reference = {"instruction_id_list": case.instruction_ids, "kwargs": case.kwargs}
        result = verify("instruction", case.response, reference, {"mode": mode})
        if result.error:
            out.errors.append(f"key {case.key}: {result.error}")
            verdicts = [{"ok": None, "reason": "error"}] * len(case.expected)
        else:
            verdicts = result.details["per_constraint"]
        for iid, want, got in zip(case.instruction_ids, case.expected, verdicts, strict=True):
            counts = out.per_instruction[iid]
            counts[1] += 1
            out.total += 1
            if got["ok"] == want:
                counts[0] += 1
                out.agreed += 1
            else:
                out.disagreements.append(
                    Disagreement(case.key, iid, want, got["ok"], got["reason"])
                )
    return out


def table(results: list[Agreement]) -> str:
    """A plain-text agreement table: overall, then each instruction id, per mode."""
    ids = sorted({i for r in results for i in r.per_instruction})
    header = f"{'instruction':45s}" + "".join(f"{r.mode:>16s}" for r in results)
    lines = [header, "-" * len(header)]
    row = f"{'ALL':45s}"
    for r in results:
        row += f"{f'{r.agreed}/{r.total} {100 * r.rate:.2f}%':>16s}"
    lines.append(row)
    for iid in ids:
        row = f"{iid:45s}"
        for r in results:
            a, n = r.per_instruction.get(iid, [0, 0])
            row += f"{f'{a}/{n}':>16s}"
        lines.append(row)
    return "\n".join(lines)
