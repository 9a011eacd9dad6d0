"""Checkpoint layout of a run directory, and the RNG/trainer state that makes resume exact.

``run_dir/step_N/`` holds the model in Hugging Face format (``save_pretrained`` + processor
files, loadable with `vlm.load`), ``ds/`` (the DeepSpeed engine checkpoint: weights,
optimizer partitions per rank), ``rng_rank{r}.pt`` and ``trainer_state.json`` (step, data
position, token counts, eval history). A checkpoint is written under ``.step_N.tmp`` and
renamed when complete, so a run killed while saving leaves no half checkpoint behind.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

STATE_FILE = "trainer_state.json"
DS_DIR = "ds"
DS_TAG = "state"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def step_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f"step_{step}"


def tmp_dir(run_dir: Path, step: int) -> Path:
    return run_dir / f".step_{step}.tmp"


def complete_steps(run_dir: Path) -> list[int]:
    """Steps with a complete checkpoint (its trainer state written last), ascending."""
    if not run_dir.is_dir():
        return []
    steps = []
    for child in run_dir.iterdir():
        m = _STEP_DIR.match(child.name)
        if m and (child / STATE_FILE).is_file():
            steps.append(int(m.group(1)))
    return sorted(steps)


def latest_step(run_dir: Path) -> int | None:
    steps = complete_steps(run_dir)
    return steps[-1] if steps else None


def rng_state() -> dict[str, Any]:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_rng(path: Path, rank: int) -> None:
    torch.save(rng_state(), path / f"rng_rank{rank}.pt")


def load_rng(path: Path, rank: int) -> None:
    file = path / f"rng_rank{rank}.pt"
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: the checkpoint was written by fewer ranks")
    set_rng_state(torch.load(file, weights_only=False))


def write_state(path: Path, state: dict[str, Any]) -> None:
    (path / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n")


def read_state(path: Path) -> dict[str, Any]:
    file = path / STATE_FILE
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: not a complete checkpoint")
    return json.loads(file.read_text())


def prune(run_dir: Path, keep: int, protect: set[int]) -> list[int]:
    """Delete all but the newest ``keep`` step dirs (never those in ``protect``)."""
    steps = complete_steps(run_dir)
    doomed = [s for s in steps[:-keep] if s not in protect] if keep else []
    for s in doomed:
        shutil.rmtree(step_dir(run_dir, s), ignore_errors=True)
    return doomed


def clear_stale(run_dir: Path) -> None:
    """Remove half-written checkpoints (``.step_N.tmp``) a killed run left behind."""
    if run_dir.is_dir():
        for child in run_dir.glob(".step_*.tmp"):
            shutil.rmtree(child, ignore_errors=True)


def remove_run(run_dir: Path) -> None:
    """Delete a previous run's checkpoints, logs and final/ (other files stay)."""
    clear_stale(run_dir)
    for s in complete_steps(run_dir):
        shutil.rmtree(step_dir(run_dir, s), ignore_errors=True)
    for name in ("final", "tb"):
        shutil.rmtree(run_dir / name, ignore_errors=True)
    (run_dir / "metrics.jsonl").unlink(missing_ok=True)


def export_model(src: Path, dst: Path, *, with_optimizer: bool = True) -> Path:
    """Copy a checkpoint to ``dst`` (replacing it): HF files, and the DeepSpeed state if asked."""
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    ignore = None if with_optimizer else shutil.ignore_patterns(DS_DIR, "rng_rank*.pt")
    shutil.copytree(src, tmp, ignore=ignore)
    shutil.rmtree(dst, ignore_errors=True)
    tmp.rename(dst)
    return dst
