"""Held-out evaluation: greedy generation, verifiers in this process, per-task accuracy.

A record is scored by ``verifiers.verify(extra_info.verifier, response, ground_truth,
{"require_format": True})``: correct needs the ``<think>…</think>answer`` layout, as the RL
reward does. The format rate is reported beside it. Records scored by the reward model
(``reward_model.style: model``) have no verifier and are counted as skipped. With reference
responses present, the teacher-forced loss on them is reported per task too (the
accuracy-vs-loss fit of `pretrain.scaling` reads it).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel

from hybridrl.records import PromptRecord


class TaskScore(BaseModel):
    task: str
    verifier: str | None
    n: int
    accuracy: float
    reward: float
    format_rate: float
    loss: float | None = None  # teacher-forced loss on the reference responses
    # the same loss with each prompt's images/video taken from another prompt of the task, minus
    # `loss`: how much the model reads its visual input (about 0 for a model that ignores it)
    image_gap: float | None = None
    errors: int = 0


class EvalReport(BaseModel):
    tasks: list[TaskScore]
    mean_accuracy: float  # unweighted mean over the scored tasks
    n: int
    skipped: dict[str, int] = {}  # task -> records without a usable verifier
    samples: list[dict[str, Any]] = []  # a few responses per task, for reading

    def by_task(self) -> dict[str, TaskScore]:
        return {t.task: t for t in self.tasks}


def task_of(record: PromptRecord) -> str:
    return record.extra_info.task or record.data_source


def select_records(records: Sequence[PromptRecord], n_per_task: int | None) -> list[PromptRecord]:
    """The first ``n_per_task`` records of each task, in file order."""
    if n_per_task is None:
        return list(records)
    seen: dict[str, int] = defaultdict(int)
    out = []
    for r in records:
        t = task_of(r)
        if seen[t] < n_per_task:
            seen[t] += 1
            out.append(r)
    return out


def _inputs(record: PromptRecord) -> tuple[list[dict], list[Any], list[Any]]:
    from hybridrl.records import load_image
    from vlm.processor import Video

    messages = [m.model_dump() for m in record.prompt]
    images = [load_image(i) for i in record.images]
    videos = [Video([load_image(f) for f in v.frames], v.fps) for v in record.videos]
    return messages, images, videos


def _verifier(record: PromptRecord) -> str | None:
    if record.reward_model.style != "rule":
        return None
    return record.extra_info.verifier


def evaluate(
    model: torch.nn.Module,
    processor: Any,
    records: Sequence[PromptRecord],
    *,
    batch_size: int = 32,
    max_new_tokens: int = 160,
    with_loss: bool = True,
    progress: bool = False,
    keep_samples: int = 3,
) -> EvalReport:
    """Generate greedily for every record with a verifier and score it per task."""
    import verifiers
    from verifiers.registry import UnknownVerifierError
    from vlm.model import generate

    was_training = model.training
    model.eval()
    scored: list[tuple[PromptRecord, str]] = []
    skipped: dict[str, int] = defaultdict(int)
    for r in records:
        name = _verifier(r)
        if name is None:
            skipped[task_of(r)] += 1
            continue
        try:
            verifiers.get(name)
        except UnknownVerifierError:
            skipped[task_of(r)] += 1
            continue
        scored.append((r, name))
    # similar prompts together: less left padding per batch
    order = sorted(
        range(len(scored)), key=lambda i: (len(scored[i][0].images), task_of(scored[i][0]))
    )
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    batches = [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(order), desc="eval", unit="prompt")
    for idx in batches:
        inputs = [_inputs(scored[i][0]) for i in idx]
        batch = processor(
            [m for m, _, _ in inputs],
            [im for _, im, _ in inputs],
            [v for _, _, v in inputs],
            padding_side="left",
        )
        gen = generate(model, processor, batch, max_new_tokens=max_new_tokens)
        for i, text in zip(idx, gen.texts, strict=True):
            record, name = scored[i]
            res = verifiers.verify(
                name, text, record.reward_model.ground_truth, {"require_format": True}
            )
            results[task_of(record)].append(
                {
                    "verifier": name,
                    "correct": bool(res.correct),
                    "reward": float(res.reward),
                    "format_ok": bool(res.format_ok),
                    "error": res.error,
                    "response": text,
                }
            )
        if bar is not None:
            bar.update(len(idx))
    if bar is not None:
        bar.close()
    losses, swapped = {}, {}
    if with_loss:
        losses = reference_losses(model, processor, [r for r, _ in scored], batch_size)
        swapped = reference_losses(
            model, processor, [r for r, _ in scored], batch_size, swap_visuals=True
        )
    if was_training:
        model.train()
    tasks = []
    samples = []
    for task in sorted(results):
        rows = results[task]
        n = len(rows)
        tasks.append(
            TaskScore(
                task=task,
                verifier=rows[0]["verifier"],
                n=n,
                accuracy=sum(r["correct"] for r in rows) / n,
                reward=sum(r["reward"] for r in rows) / n,
                format_rate=sum(r["format_ok"] for r in rows) / n,
                loss=losses.get(task),
                image_gap=(
                    swapped[task] - losses[task] if task in swapped and task in losses else None
                ),
                errors=sum(r["error"] is not None for r in rows),
            )
        )
        samples += [{"task": task, **r} for r in rows[:keep_samples]]
    mean = sum(t.accuracy for t in tasks) / len(tasks) if tasks else 0.0
    return EvalReport(
        tasks=tasks, mean_accuracy=mean, n=len(scored), skipped=dict(skipped), samples=samples
    )


def _swapped_visuals(records: Sequence[PromptRecord]) -> dict[int, PromptRecord]:
    """Index -> the record whose images/videos replace this one's (same task and counts)."""
    groups: dict[tuple[str, int, int], list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        if r.images or r.videos:
            groups[(task_of(r), len(r.images), len(r.videos))].append(i)
    donor = {}
    for members in groups.values():
        if len(members) > 1:
            for k, i in enumerate(members):
                donor[i] = records[members[(k + 1) % len(members)]]
    return donor


@torch.no_grad()
def reference_losses(
    model: torch.nn.Module,
    processor: Any,
    records: Sequence[PromptRecord],
    batch_size: int,
    *,
    swap_visuals: bool = False,
) -> dict[str, float]:
    """Mean per-token loss of each task's reference responses (teacher forcing).

    ``swap_visuals`` gives each record the images and videos of another record of its task
    (records without visual input, or alone in their task, are left out): the rise over the
    plain loss measures how much the model uses what it sees.
    """
    from pretrain.losses import token_losses

    sums: dict[str, float] = defaultdict(float)
    counts: dict[str, int] = defaultdict(int)
    usable = [r for r in records if r.extra_info.reference_response]
    donors = _swapped_visuals(usable) if swap_visuals else {}
    rows = [(r, donors.get(i, r)) for i, r in enumerate(usable) if not swap_visuals or i in donors]
    for start in range(0, len(rows), batch_size):
        chunk = rows[start : start + batch_size]
        # each record's own messages with its donor's images/videos (the record itself unswapped)
        inputs = [([m.model_dump() for m in r.prompt], *_inputs(d)[1:]) for r, d in chunk]
        batch = processor.training_batch(
            [m for m, _, _ in inputs],
            [r.extra_info.reference_response for r, _ in chunk],
            [im for _, im, _ in inputs],
            [v for _, _, v in inputs],
        )
        ce, mask = token_losses(model, dict(batch))
        for row, (r, _) in enumerate(chunk):
            sums[task_of(r)] += float(ce[row].sum())
            counts[task_of(r)] += int(mask[row].sum())
    return {t: sums[t] / counts[t] for t in sums if counts[t]}


def render_table(report: EvalReport, title: str = "held-out accuracy") -> Any:
    """A rich table: one row per task, then the mean."""
    from rich.table import Table

    table = Table(title=title)
    for col in ("task", "verifier", "n", "accuracy", "reward", "format", "ref loss", "image gap"):
        table.add_column(col, justify="left" if col in ("task", "verifier") else "right")
    for t in report.tasks:
        table.add_row(
            t.task,
            t.verifier or "-",
            str(t.n),
            f"{t.accuracy:.1%}",
            f"{t.reward:.3f}",
            f"{t.format_rate:.1%}",
            "-" if t.loss is None else f"{t.loss:.3f}",
            "-" if t.image_gap is None else f"{t.image_gap:+.3f}",
        )
    table.add_row("mean", "", str(report.n), f"{report.mean_accuracy:.1%}", "", "", "", "")
    return table


def write_report(report: EvalReport, path: str | Path, **meta: Any) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**meta, **report.model_dump()}, indent=2) + "\n")
    return path
