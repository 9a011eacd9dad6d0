"""Does a checkpoint read boxes from what it sees, or from where the image sits in the prompt?

Held-out grounding prompts are scored three ways with the same checkpoint: as written
(``<image>Where is the red circle? …``), with a neutral sentence inserted before the image, and
with the same sentence between the image and the question. The first insertion moves the whole
prompt; the second changes only the distance from the image tokens to the answer. A model that
locates the object from its image tokens (on easy scenes the position ramp tells where a token
sits) should box about as well all three ways; one that has learnt the answer's M-RoPE offset
to the image for each cell falls to chance when that offset changes. The script prints each
accuracy and its ratio to the plain prompt's.

Run: ``.venv/bin/python bench/grounding_offset.py runs/base-model/model runs/base-model/data/test.parquet``
"""

from __future__ import annotations

import argparse
import os

import torch

FILLER = "Look at this picture very carefully. "


def shifted(record, where: str):
    """The record with ``FILLER`` before the image (``before``), after it (``after``), or as is."""
    from hybridrl.records import Message

    text = record.prompt[-1].content
    if "<image>" not in text:
        raise ValueError(f"record {record.extra_info.index} has no <image> in its last message")
    if where == "before":
        text = FILLER + text
    elif where == "after":
        text = text.replace("<image>", "<image>" + FILLER, 1)
    messages = [*record.prompt[:-1], Message(role=record.prompt[-1].role, content=text)]
    return record.model_copy(update={"prompt": messages})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="checkpoint directory")
    parser.add_argument("data", help="prompt records (parquet/JSONL) holding grounding prompts")
    parser.add_argument("--task", default="grounding", help="the task whose records are scored")
    parser.add_argument("--limit", type=int, default=64, help="records scored per variant")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    import vlm
    from hybridrl.records import read_records
    from pretrain.evaluate import evaluate

    records = [r for r in read_records(args.data) if r.extra_info.task == args.task]
    records = records[: args.limit]
    if not records:
        raise SystemExit(f"no {args.task!r} records in {args.data}")
    model, processor = vlm.load(args.model, dtype=torch.float32)
    accuracy = {}
    for where in ("plain", "before", "after"):
        report = evaluate(model, processor, [shifted(r, where) for r in records], with_loss=False)
        (task,) = report.tasks
        accuracy[where] = task.accuracy
    print(f"{args.task}: {len(records)} held-out prompts, {args.model}")
    print(f"{'prompt':<42} {'accuracy':>9} {'ratio':>7}")
    labels = {
        "plain": "as written",
        "before": "sentence before the image (all moved)",
        "after": "sentence after the image (offset moved)",
    }
    for where, acc in accuracy.items():
        ratio = acc / accuracy["plain"] if accuracy["plain"] else float("nan")
        print(f"{labels[where]:<42} {acc:>9.3f} {ratio:>6.2f}x")


if __name__ == "__main__":
    main()
