"""Scaling-law fits of a run (Seed1.5-VL §3): per-domain loss vs tokens, accuracy vs loss.

The paper finds per-domain training loss L follows ``log L = -a log D + b`` in the tokens D
trained on, and downstream accuracy is about linear in ``log L``. Here D is the tokens of
that domain seen so far (prompt, image and target tokens of its samples), read from the
``tokens/<domain>`` and ``loss/<domain>`` columns of ``metrics.jsonl``; accuracy-vs-loss pairs
each periodic eval's per-task accuracy with the teacher-forced loss on the same records.
A directory of stages (``stage0``, ``stage1``, ... with their own metrics) is read in name
order with token counts carried over, so later stages continue the curve.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """Rows of a run's metrics.jsonl, or of its stage subdirectories chained in name order."""
    run_dir = Path(run_dir)
    single = run_dir / "metrics.jsonl"
    if single.is_file():
        return _rows(single)
    parts = sorted(p for p in run_dir.iterdir() if (p / "metrics.jsonl").is_file())
    if not parts:
        raise FileNotFoundError(f"{run_dir} has no metrics.jsonl (nor subdirs with one)")
    rows: list[dict[str, Any]] = []
    offsets: dict[str, float] = {}
    step_offset = 0
    for part in parts:
        last: dict[str, float] = {}
        part_rows = _rows(part / "metrics.jsonl")
        for row in part_rows:
            row = dict(row)
            for key, value in list(row.items()):
                if key.startswith("tokens/") or key == "tokens":
                    row[key] = value + offsets.get(key, 0)
                    last[key] = row[key]
            row["stage"] = part.name
            row["step"] = row.get("step", 0) + step_offset
            rows.append(row)
        offsets.update(last)
        step_offset = max((r["step"] for r in rows), default=step_offset)
    return rows


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def power_law(tokens: np.ndarray, losses: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``log L = -a log D + b`` by least squares on log-log points."""
    if len(tokens) < 2:
        raise ValueError("need at least two points to fit")
    slope, intercept = np.polyfit(np.log(tokens), np.log(losses), 1)
    return float(-slope), float(intercept)


def domain_series(
    rows: list[dict[str, Any]], domain: str, skip_frac: float = 0.1
) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, loss) points of one domain, dropping the first ``skip_frac`` of its tokens."""
    pts = [
        (r[f"tokens/{domain}"], r[f"loss/{domain}"])
        for r in rows
        if f"loss/{domain}" in r and r.get(f"tokens/{domain}", 0) > 0 and r[f"loss/{domain}"] > 0
    ]
    if not pts:
        return np.zeros(0), np.zeros(0)
    top = max(d for d, _ in pts)
    pts = [(d, v) for d, v in pts if d >= skip_frac * top]
    arr = np.asarray(pts, dtype=np.float64)
    return arr[:, 0], arr[:, 1]


def domains(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({k[len("loss/") :] for r in rows for k in r if k.startswith("loss/")})


def fit_domains(rows: list[dict[str, Any]], skip_frac: float = 0.1) -> dict[str, dict[str, Any]]:
    """Per-domain power-law fits with their point counts and R^2 on log-log."""
    out = {}
    for dom in domains(rows):
        d, loss = domain_series(rows, dom, skip_frac)
        if len(d) < 3 or len(np.unique(d)) < 2:
            continue
        a, b = power_law(d, loss)
        pred = -a * np.log(d) + b
        out[dom] = {"a": a, "b": b, "points": len(d), "r2": _r2(np.log(loss), pred)}
    return out


def fit_accuracy(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per task: accuracy = slope * log L + intercept over the periodic evals."""
    tasks = sorted(
        {k.split("/")[1] for r in rows for k in r if k.startswith("eval/") and k.endswith("/loss")}
    )
    out = {}
    for task in tasks:
        pts = [
            (r[f"eval/{task}/loss"], r[f"eval/{task}/accuracy"])
            for r in rows
            if f"eval/{task}/loss" in r and f"eval/{task}/accuracy" in r
        ]
        if len(pts) < 2 or len({p[0] for p in pts}) < 2:
            continue
        arr = np.asarray(pts, dtype=np.float64)
        slope, intercept = np.polyfit(np.log(arr[:, 0]), arr[:, 1], 1)
        pred = slope * np.log(arr[:, 0]) + intercept
        out[task] = {
            "slope": float(slope),
            "intercept": float(intercept),
            "points": len(pts),
            "r2": _r2(arr[:, 1], pred),
        }
    return out


def _r2(y: np.ndarray, pred: np.ndarray) -> float:
    ss = float(((y - y.mean()) ** 2).sum())
    return 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else math.nan


def fit_run(run_dir: str | Path, *, skip_frac: float = 0.1) -> dict[str, Any]:
    """Fit a run; write ``scaling_fits.json``, ``scaling.png`` and ``accuracy_vs_loss.png`` there."""
    run_dir = Path(run_dir)
    rows = read_metrics(run_dir)
    fits = {
        "loss_vs_tokens": fit_domains(rows, skip_frac),
        "accuracy_vs_log_loss": fit_accuracy(rows),
        "skip_frac": skip_frac,
    }
    (run_dir / "scaling_fits.json").write_text(json.dumps(fits, indent=2) + "\n")
    _plot_losses(rows, fits["loss_vs_tokens"], run_dir / "scaling.png", skip_frac)
    if fits["accuracy_vs_log_loss"]:
        _plot_accuracy(rows, fits["accuracy_vs_log_loss"], run_dir / "accuracy_vs_loss.png")
    return fits


def _plot_losses(rows: list[dict[str, Any]], fits: dict, path: Path, skip_frac: float) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for dom in domains(rows):
        d, loss = domain_series(rows, dom, 0.0)
        if not len(d):
            continue
        (line,) = ax.plot(d, loss, ".", alpha=0.4, markersize=3)
        if dom in fits:
            f = fits[dom]
            dd, _ = domain_series(rows, dom, skip_frac)
            xs = np.geomspace(dd.min(), dd.max(), 50)
            ax.plot(
                xs,
                np.exp(-f["a"] * np.log(xs) + f["b"]),
                "-",
                color=line.get_color(),
                label=f"{dom}: a={f['a']:.3f} b={f['b']:.2f}",
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("tokens seen (domain)")
    ax.set_ylabel("training loss")
    ax.set_title("per-domain loss: log L = -a log D + b")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _plot_accuracy(rows: list[dict[str, Any]], fits: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    for task, f in fits.items():
        pts = np.asarray(
            [
                (r[f"eval/{task}/loss"], r[f"eval/{task}/accuracy"])
                for r in rows
                if f"eval/{task}/loss" in r and f"eval/{task}/accuracy" in r
            ]
        )
        (line,) = ax.plot(np.log(pts[:, 0]), pts[:, 1], "o", markersize=4)
        xs = np.linspace(np.log(pts[:, 0]).min(), np.log(pts[:, 0]).max(), 20)
        ax.plot(
            xs,
            f["slope"] * xs + f["intercept"],
            "-",
            color=line.get_color(),
            label=f"{task}: {f['slope']:.3f} log L + {f['intercept']:.3f}",
        )
    ax.set_xlabel("log reference loss")
    ax.set_ylabel("held-out accuracy")
    ax.set_title("accuracy vs log loss per task")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
