"""``hybridrl rm data|train|eval|compare``: build preference pairs, train and evaluate the RM."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="The generative pairwise reward model: pairs, training, evaluation.",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command("data", context_settings={"allow_extra_args": True})
def data_command(
    ctx: typer.Context,
    out: Path = typer.Option(..., "--out", help="folder for train.parquet and eval.parquet"),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="RM config YAML (its data section)"
    ),
) -> None:
    """Build synthetic preference pairs into OUT/train.parquet and OUT/eval.parquet.

    Extra args are dotted overrides of the config, e.g. ``data.train_prompts=2000``.
    """
    from hybridrl.config import ConfigError, load_config
    from reward_model.train import RMTrainConfig, build_synthetic_pairs

    try:
        cfg = load_config(RMTrainConfig, config, list(ctx.args))
    except ConfigError as e:
        _fail(str(e))
    try:
        written = build_synthetic_pairs(cfg.data, out)
    except ValueError as e:
        _fail(str(e))
    for split, (path, counts) in written.items():
        summary = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        typer.echo(f"{split}: {path} ({sum(counts.values())} pairs: {summary})")


@app.command("train", context_settings={"allow_extra_args": True})
def train_command(
    ctx: typer.Context,
    config: Path | None = typer.Option(None, "--config", "-c", help="RM config YAML"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest step_N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a previous run"),
) -> None:
    """Fine-tune the RM on preference pairs (swap-augmented), then evaluate it on held-out pairs.

    Extra args are dotted overrides, e.g. ``init=runs/base/model train.max_minutes=3``.
    """
    from hybridrl.config import ConfigError, dump_config, load_config
    from reward_model.evaluate import format_report
    from reward_model.train import RMTrainConfig, train

    try:
        cfg = load_config(RMTrainConfig, config, list(ctx.args))
    except ConfigError as e:
        _fail(str(e))
    typer.echo("# resolved config")
    typer.echo(dump_config(cfg).rstrip())
    try:
        result = train(cfg, log=typer.echo, resume=resume, overwrite=overwrite)
    except (OSError, ValueError) as e:
        _fail(str(e))
    typer.echo("\n" + format_report(result.report))
    typer.echo(f"\nmodel: {result.model_dir}\neval: {result.eval_path}")


@app.command("eval")
def eval_command(
    model: Path = typer.Option(..., "--model", help="RM checkpoint directory"),
    data: Path = typer.Option(
        ..., "--data", help="pair parquet (prompt, images, chosen, rejected)"
    ),
    out: Path | None = typer.Option(None, "--out", help="JSON report (default MODEL/eval.json)"),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="pairs per forward pass"),
    limit: int = typer.Option(0, "--limit", min=0, help="evaluate the first N pairs only (0: all)"),
    evidence: bool = typer.Option(
        False,
        "--evidence/--no-evidence",
        help="also ask the quote question: does the RM give the chosen response's differing "
        "words a higher likelihood than the rejected one's (RMs trained with quote examples)",
    ),
) -> None:
    """Held-out pairwise accuracy, position consistency and mean position gap."""
    from reward_model.evaluate import EVAL_FILE, evaluate_pairs, format_report, write_report
    from reward_model.model import RewardModel
    from reward_model.pairs import read_pairs

    try:
        pairs = read_pairs(data)
        rm = RewardModel.load(model)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e))
    if limit:
        pairs = pairs[:limit]
    if not pairs:
        _fail(f"{data} holds no pairs")
    report = evaluate_pairs(rm, pairs, batch_size=batch_size, evidence=evidence)
    report["model"], report["data"] = str(model), str(data)
    path = write_report(report, out or model / EVAL_FILE)
    typer.echo(format_report(report))
    typer.echo(f"\nwritten: {path}")


@app.command("compare")
def compare_command(
    model: Path = typer.Option(..., "--model", help="RM checkpoint directory"),
    prompt: str = typer.Option(..., "--prompt", help="user prompt text"),
    a: str = typer.Option(..., "--a", help="response A"),
    b: str = typer.Option(..., "--b", help="response B"),
    image: list[Path] = typer.Option([], "--image", help="image file (repeat for several)"),
) -> None:
    """Compare two responses with a local RM checkpoint; prints p, p_a_first, p_b_first."""
    import json

    from reward_model.model import PairInput, RewardModel

    try:
        rm = RewardModel.load(model)
        (c,) = rm.compare([PairInput(prompt, [p.read_bytes() for p in image], a, b)])
    except (FileNotFoundError, ValueError, OSError) as e:
        _fail(str(e))
    typer.echo(json.dumps({"p": c.p, "p_a_first": c.p_a_first, "p_b_first": c.p_b_first}))
