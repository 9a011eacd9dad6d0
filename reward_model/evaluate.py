"""Held-out evaluation of a reward model on preference pairs: accuracy, consistency, position gap."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from reward_model.model import PairInput, RewardModel
from reward_model.pairs import Pair
from reward_model.scoring import Comparison, pair_metrics

EVAL_FILE = "eval.json"


def kind_group(kind: str) -> str:
    """The family of a pair kind: ``caption/colour`` → ``caption``, ``format/no_think`` → ``format``."""
    return kind.split("/", 1)[0] if kind else "unlabelled"


def metrics_report(pairs: Sequence[Pair], comparisons: Sequence[Comparison]) -> dict[str, Any]:
    """Overall, per-family and per-kind metrics of comparisons (chosen shown as A first)."""
    if len(pairs) != len(comparisons):
        raise ValueError(f"{len(pairs)} pairs but {len(comparisons)} comparisons")
    report: dict[str, Any] = {
        "overall": asdict(pair_metrics(comparisons)),
        "groups": {},
        "kinds": {},
    }
    for key, name_of in (("groups", kind_group), ("kinds", lambda k: k or "unlabelled")):
        buckets: dict[str, list[Comparison]] = {}
        for pair, c in zip(pairs, comparisons, strict=True):
            buckets.setdefault(name_of(pair.kind), []).append(c)
        report[key] = {name: asdict(pair_metrics(cs)) for name, cs in sorted(buckets.items())}
    return report


def evaluate_pairs(
    rm: RewardModel, pairs: Sequence[Pair], *, batch_size: int = 32
) -> dict[str, Any]:
    """Score each (chosen, rejected) pair in both orders and report the metrics."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    items = [PairInput(p.prompt, p.images, p.chosen, p.rejected) for p in pairs]
    was_training = rm.model.training
    rm.model.eval()
    try:
        comparisons = rm.compare(items, batch_size=batch_size)
    finally:
        rm.model.train(was_training)
    return metrics_report(pairs, comparisons)


def format_report(report: dict[str, Any]) -> str:
    """A small table: rows overall / per family / per kind; columns n, accuracy, consistency, gap."""
    lines = [f"{'pairs':<28}{'n':>6}{'accuracy':>10}{'consistency':>13}{'mean gap':>10}"]

    def row(name: str, m: dict[str, Any]) -> str:
        return (
            f"{name:<28}{m['n']:>6}{m['accuracy']:>10.3f}{m['consistency']:>13.3f}"
            f"{m['mean_gap']:>10.3f}"
        )

    lines.append(row("all", report["overall"]))
    for name, m in report["groups"].items():
        lines.append(row(f"  {name}", m))
    for name, m in report["kinds"].items():
        if "/" in name:
            lines.append(row(f"    {name}", m))
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (creating folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
