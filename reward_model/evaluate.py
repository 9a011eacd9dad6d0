"""Held-out evaluation of a reward model on preference pairs: accuracy, consistency, position
gap, and (optionally) its evidence: whether its quote head picks the right words."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from reward_model.layout import QUOTE_QUESTION, clean_response, comparison_messages, differing_span
from reward_model.model import PairInput, RewardModel
from reward_model.pairs import Pair
from reward_model.scoring import Comparison, pair_metrics
from rl.batching import token_logprobs
from vlm.processor import to_pil

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
    rm: RewardModel, pairs: Sequence[Pair], *, batch_size: int = 32, evidence: bool = False
) -> dict[str, Any]:
    """Score each (chosen, rejected) pair in both orders and report the metrics; with
    ``evidence``, also the quote head's accuracy (`evidence_report`)."""
    if not pairs:
        raise ValueError("no pairs to evaluate")
    items = [PairInput(p.prompt, p.images, p.chosen, p.rejected) for p in pairs]
    was_training = rm.model.training
    rm.model.eval()
    try:
        comparisons = rm.compare(items, batch_size=batch_size)
        report = metrics_report(pairs, comparisons)
        if evidence:
            report["evidence"] = evidence_report(rm, pairs, batch_size=batch_size)
    finally:
        rm.model.train(was_training)
    return report


def evidence_report(
    rm: RewardModel, pairs: Sequence[Pair], *, batch_size: int = 32
) -> dict[str, Any]:
    """How often the RM, asked `QUOTE_QUESTION` in the comparison layout, gives the chosen
    response's differing words a higher likelihood than the rejected one's, in each order.

    An RM trained with quote examples (`data.quote_share`) reads the evidence for its verdict
    there; evidence far above the verdict's accuracy says the model sees the difference but its
    verdict does not use it, evidence at chance that it does not see it. Pairs whose visible
    responses are identical are left out. Returns overall, per-family and per-kind
    ``{n, accuracy, first_accuracy, second_accuracy}`` (n: pairs; the accuracy over both orders).
    """
    rows: list[tuple[int, bool, list[dict[str, str]], list[Any], str, str]] = []
    for i, p in enumerate(pairs):
        chosen = clean_response(p.chosen, strip_think=rm.strip_think)
        rejected = clean_response(p.rejected, strip_think=rm.strip_think)
        right, wrong = differing_span(chosen, rejected), differing_span(rejected, chosen)
        if not right or not wrong:
            continue
        images = [to_pil(im) for im in p.images]
        for chosen_first in (True, False):
            first, second = (p.chosen, p.rejected) if chosen_first else (p.rejected, p.chosen)
            messages = comparison_messages(
                p.prompt,
                first,
                second,
                n_images=len(images),
                strip_think=rm.strip_think,
                question=QUOTE_QUESTION,
            )
            rows.append((i, chosen_first, messages, images, right, wrong))
    hits: dict[int, dict[bool, bool]] = {}
    step = max(1, batch_size // 2)  # two sequences (right and wrong words) per row
    for start in range(0, len(rows), step):
        chunk = rows[start : start + step]
        logp = _target_logprobs(
            rm,
            [r[2] for r in chunk for _ in (0, 1)],
            [r[3] for r in chunk for _ in (0, 1)],
            [w for r in chunk for w in (r[4], r[5])],
        )
        for j, (i, chosen_first, *_rest) in enumerate(chunk):
            hits.setdefault(i, {})[chosen_first] = logp[2 * j] > logp[2 * j + 1]
    report: dict[str, Any] = {
        "overall": _evidence_metrics(hits.values()),
        "groups": {},
        "kinds": {},
    }
    for key, name_of in (("groups", kind_group), ("kinds", lambda k: k or "unlabelled")):
        buckets: dict[str, list[dict[bool, bool]]] = {}
        for i, h in hits.items():
            buckets.setdefault(name_of(pairs[i].kind), []).append(h)
        report[key] = {name: _evidence_metrics(hs) for name, hs in sorted(buckets.items())}
    return report


def _evidence_metrics(hits: Any) -> dict[str, Any]:
    hits = list(hits)
    n = len(hits)
    first = sum(h[True] for h in hits) / n if n else 0.0
    second = sum(h[False] for h in hits) / n if n else 0.0
    return {
        "n": n,
        "accuracy": (first + second) / 2,
        "first_accuracy": first,
        "second_accuracy": second,
    }


@torch.no_grad()
def _target_logprobs(
    rm: RewardModel, messages: list[Any], images: list[Any], targets: list[str]
) -> list[float]:
    """Summed log-likelihood of each target as the assistant's answer (end token included)."""
    batch = rm.processor.training_batch(messages, targets, images)
    labels = batch.pop("labels")
    device = next(rm.model.parameters()).device
    out = rm.model(**{k: v.to(device) for k, v in batch.items()}, use_cache=False)
    labels = labels[:, 1:].to(device)
    token = token_logprobs(out.logits[:, :-1], labels.clamp(min=0))
    return (token * (labels != -100)).sum(-1).cpu().tolist()


def format_report(report: dict[str, Any]) -> str:
    """A small table: rows overall / per family / per kind; columns n, accuracy, consistency,
    gap and the mean P(A) (the slot prior)."""
    lines = [f"{'pairs':<28}{'n':>6}{'accuracy':>10}{'consistency':>13}{'mean gap':>10}{'P(A)':>7}"]

    def row(name: str, m: dict[str, Any]) -> str:
        return (
            f"{name:<28}{m['n']:>6}{m['accuracy']:>10.3f}{m['consistency']:>13.3f}"
            f"{m['mean_gap']:>10.3f}{m['mean_p_a']:>7.3f}"
        )

    lines.append(row("all", report["overall"]))
    for name, m in report["groups"].items():
        lines.append(row(f"  {name}", m))
    for name, m in report["kinds"].items():
        if "/" in name:
            lines.append(row(f"    {name}", m))
    evidence = report.get("evidence")
    if evidence:
        lines += [
            "",
            f"{'evidence (quote head)':<28}{'n':>6}{'accuracy':>10}{'first':>8}{'second':>8}",
        ]
        named = [("all", evidence["overall"])]
        named += [(f"  {k}", m) for k, m in evidence["groups"].items()]
        named += [(f"    {k}", m) for k, m in evidence["kinds"].items() if "/" in k]
        for name, m in named:
            lines.append(
                f"{name:<28}{m['n']:>6}{m['accuracy']:>10.3f}"
                f"{m['first_accuracy']:>8.3f}{m['second_accuracy']:>8.3f}"
            )
    return "\n".join(lines)


def write_report(report: dict[str, Any], path: str | Path) -> Path:
    """Write the report as JSON (creating folders)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
