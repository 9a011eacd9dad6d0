"""Per-iteration metrics: ``metrics.jsonl``, TensorBoard events and a progress bar."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

PROGRESS_KEYS = ("reward/mean", "acc/rule", "kl/mean", "response/length", "time/iteration")


class Tracker:
    def __init__(
        self,
        run_dir: str | Path,
        total: int,
        start: int = 0,
        tensorboard: bool = True,
        progress_bar: bool = True,
    ):
        self.run_dir = Path(run_dir)
        self.metrics_file = self.run_dir / "metrics.jsonl"
        self.eval_file = self.run_dir / "eval.jsonl"
        self.writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.run_dir / "tensorboard"), purge_step=start + 1)
        self.bar = None
        if progress_bar:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, desc="ppo", unit="it", dynamic_ncols=True)

    def log(self, iteration: int, metrics: dict[str, Any]) -> None:
        row = {"iteration": iteration, **metrics}
        with self.metrics_file.open("a") as f:
            f.write(json.dumps(_clean(row)) + "\n")
        if self.writer is not None:
            for k, v in metrics.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self.writer.add_scalar(k, v, iteration)
            self.writer.flush()
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(
                {k.split("/")[-1]: f"{metrics[k]:.3g}" for k in PROGRESS_KEYS if k in metrics}
            )

    def log_eval(self, iteration: int, label: str, result: dict[str, Any]) -> None:
        with self.eval_file.open("a") as f:
            f.write(json.dumps(_clean({"iteration": iteration, "label": label, **result})) + "\n")
        if self.writer is not None:
            for k, v in result.items():
                if isinstance(v, int | float) and math.isfinite(v):
                    self.writer.add_scalar(f"eval/{k}", v, iteration)
            self.writer.flush()

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            print(text, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.writer is not None:
            self.writer.close()


def _clean(row: dict[str, Any]) -> dict[str, Any]:
    # NaN/inf are not JSON: keep the key, write null
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()
    }


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    p = Path(path)
    if not p.is_file():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def latest_per_iteration(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The last row of each iteration (a resumed run re-logs the iterations it redid)."""
    by_iter: dict[int, dict[str, Any]] = {}
    for r in rows:
        by_iter[int(r["iteration"])] = r
    return [by_iter[k] for k in sorted(by_iter)]
