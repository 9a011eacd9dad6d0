"""``report.md`` of a run: reward and per-task accuracy over iterations (PNG plots) and the
before/after eval table, from ``metrics.jsonl`` and ``eval.jsonl``."""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any

from rl.tracking import latest_per_iteration, read_jsonl


def eval_table(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A markdown table: one row per eval figure, columns before / after / change.

    The change of an accuracy shows ± one standard error. When both evals hold per-prompt
    results of the same prompts (``outcomes/<key>``), it is the paired one, from the
    prompt-by-prompt differences (`paired_se`); otherwise the two evals are taken as
    independent, sqrt(se_before² + se_after²) from their ``se/<key>``.
    """
    skip = ("iteration", "label", "n", "excluded")
    keys = [
        k for k in {**before, **after} if k not in skip and not k.startswith(("se/", "outcomes/"))
    ]
    order = ["verifiable_acc", "model_reward", "format_rate"]
    keys = [k for k in order if k in keys] + sorted(k for k in keys if k not in order)
    paired = paired_errors(before, after)
    lines = ["| held-out (greedy) | before | after | change (± 1 s.e.) |", "|---|---:|---:|---:|"]
    for k in keys:
        b, a = before.get(k), after.get(k)
        change = ""
        if isinstance(a, int | float) and isinstance(b, int | float):
            change = f"{a - b:+.3f}"
            se_b, se_a = before.get(f"se/{k}"), after.get(f"se/{k}")
            if k in paired:
                change += f" ± {paired[k]:.3f}"
            elif isinstance(se_b, int | float) and isinstance(se_a, int | float):
                change += f" ± {math.hypot(se_b, se_a):.3f}"
        lines.append(f"| {k} | {_fmt(b)} | {_fmt(a)} | {change} |")
    n_b, n_a = before.get("n"), after.get("n")
    lines.append(f"| prompts (excluded) | {_fmt_n(n_b, before)} | {_fmt_n(n_a, after)} | |")
    return "\n".join(lines)


def binomial_se(p: float, n: int) -> float:
    """Standard error of an accuracy ``p`` measured on ``n`` independent prompts."""
    return math.sqrt(p * (1.0 - p) / n) if n > 0 else float("nan")


def paired_se(before: str, after: str) -> float | None:
    """Standard error of the mean change in accuracy over the prompts both evals scored, from
    two outcome strings of the same prompts (``1``/``0``, ``-`` excluded); None when they do not
    line up or fewer than two prompts were scored in both."""
    if len(before) != len(after):
        return None
    diffs = [int(a) - int(b) for b, a in zip(before, after, strict=True) if "-" not in (a, b)]
    return statistics.stdev(diffs) / math.sqrt(len(diffs)) if len(diffs) >= 2 else None


def paired_errors(before: dict[str, Any], after: dict[str, Any]) -> dict[str, float]:
    """Paired standard errors keyed like their figures (``acc/<task>``, ``verifiable_acc``),
    from the ``outcomes/<figure>`` strings both evals hold."""
    out: dict[str, float] = {}
    for key, b in before.items():
        a = after.get(key)
        if key.startswith("outcomes/") and isinstance(b, str) and isinstance(a, str):
            se = paired_se(b, a)
            if se is not None:
                out[key.removeprefix("outcomes/")] = se
    return out


def _fmt(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, int | float) else "–"


def _fmt_n(n: Any, row: dict[str, Any]) -> str:
    return f"{int(n)} ({int(row.get('excluded', 0))})" if isinstance(n, int | float) else "–"


def _plot(rows: list[dict[str, Any]], keys: list[str], title: str, out: Path) -> bool:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawn = False
    fig, ax = plt.subplots(figsize=(7, 4))
    for k in keys:
        pts = [(r["iteration"], r[k]) for r in rows if r.get(k) is not None]
        if pts:
            xs, ys = zip(*pts, strict=True)
            ax.plot(xs, ys, label=k, marker="." if len(pts) < 40 else None)
            drawn = True
    if drawn:
        ax.set_xlabel("iteration")
        ax.set_title(title)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        fig.tight_layout()
        fig.savefig(out, dpi=100)
    plt.close(fig)
    return drawn


def write_report(run_dir: str | Path) -> Path:
    """Write ``RUN_DIR/report.md`` (and its PNGs); returns the path."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir} is not a run directory")
    rows = latest_per_iteration(read_jsonl(run_dir / "metrics.jsonl"))
    evals = read_jsonl(run_dir / "eval.jsonl")
    parts = [f"# Run report: {run_dir.name}", ""]
    if not rows and not evals:
        parts.append("No metrics yet.")
    before = next((e for e in evals if e.get("label") == "before"), None)
    after = next((e for e in reversed(evals) if e.get("label") == "after"), None)
    if before or after:
        parts += [
            "## Held-out evaluation (before / after)",
            "",
            eval_table(before or {}, after or {}),
            "",
        ]
    if rows:
        last = rows[-1]
        parts += [
            f"{len(rows)} iterations logged; last iteration {last['iteration']}: "
            f"reward {last.get('reward/mean', float('nan')):.3f}, "
            f"KL {last.get('kl/mean', float('nan')):.2e}, "
            f"entropy {last.get('entropy/mean', float('nan')):.3f}, "
            f"{last.get('time/iteration', float('nan')):.1f} s per iteration.",
            "",
        ]
        plots = [
            (
                "reward.png",
                "Reward (train rollouts)",
                ["reward/mean", "reward/rule", "reward/model", "format/rate"],
            ),
            (
                "accuracy.png",
                "Accuracy per task (train rollouts)",
                sorted({k for r in rows for k in r if k.startswith("acc/task/")}),
            ),
            (
                "kl_entropy.png",
                "KL and entropy",
                ["kl/mean", "kl/rule", "kl/model", "entropy/mean"],
            ),
            (
                "critic.png",
                "Critic",
                ["critic/vf_loss", "critic/explained_variance", "critic/value_mean"],
            ),
        ]
        for name, title, keys in plots:
            if _plot(rows, keys, title, run_dir / name):
                parts += [f"![{title}]({name})", ""]
    if len(evals) > 2:
        eval_rows = [{"iteration": e["iteration"], **e} for e in evals]
        keys = sorted(
            {
                k
                for e in evals
                for k in e
                if k.startswith("acc/") or k in ("verifiable_acc", "model_reward")
            }
        )
        if _plot(eval_rows, keys, "Held-out eval", run_dir / "eval.png"):
            parts += ["![Held-out eval](eval.png)", ""]
    out = run_dir / "report.md"
    out.write_text("\n".join(parts) + "\n")
    return out
