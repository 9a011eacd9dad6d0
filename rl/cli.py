"""``hybridrl train`` and ``hybridrl report``: the PPO run and its report."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(help="Hybrid PPO training.", no_args_is_help=True, add_completion=False)


@app.command("train", context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def train(
    ctx: typer.Context,
    config: Path = typer.Option(..., "--config", "-c", help="run config YAML"),
    resume: bool = typer.Option(False, "--resume", help="continue from the run's last checkpoint"),
) -> None:
    """Hybrid PPO: verifier and reward-model rewards, one critic. Extra args: dotted.key=value."""
    from hybridrl.config import ConfigError, dump_config, load_config
    from rl.config import TrainConfig

    try:
        cfg = load_config(TrainConfig, config, list(ctx.args))
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo("# resolved config")
    typer.echo(dump_config(cfg).rstrip())
    typer.echo(
        f"# {cfg.rollouts_per_iteration} rollouts and {cfg.updates_per_iteration} gradient "
        f"updates per iteration"
    )

    from rl.controller import Controller
    from rl.report import eval_table, write_report

    try:
        controller = Controller(cfg, resume=resume, log=typer.echo)
    except (FileNotFoundError, ValueError) as e:  # missing model/data, bad records, bad engine
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    try:
        result = controller.run()
    finally:
        controller.close()
    report = write_report(controller.run_dir)
    typer.echo("\n" + eval_table(result["before"], result["after"]))
    typer.echo(f"\nrun dir: {controller.run_dir}\nreport: {report}")


@app.command("report")
def report(run_dir: Path = typer.Argument(..., help="runs/<name> directory")) -> None:
    """Write RUN_DIR/report.md with plots and the before/after eval table."""
    from rl.report import write_report

    try:
        out = write_report(run_dir)
    except FileNotFoundError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo(out.read_text())
    typer.echo(f"written: {out}")


@app.command("filter-prompts")
def filter_prompts(
    model: Path = typer.Option(..., "--model", help="the starting policy (checkpoint dir)"),
    data: Path = typer.Option(..., "--data", help="prompt records (parquet/jsonl)"),
    out: Path = typer.Option(..., "--out", help="where the kept records go (parquet/jsonl)"),
    samples: int = typer.Option(4, "--samples", "-k", help="sampled responses per prompt"),
    low: float = typer.Option(0.05, "--low", help="lowest mean reward kept"),
    high: float = typer.Option(0.95, "--high", help="highest mean reward kept"),
    limit: int | None = typer.Option(None, "--limit", help="only the first N records"),
    max_new_tokens: int = typer.Option(224, "--max-new-tokens"),
    reward_model: str | None = typer.Option(None, "--reward-model", help="RM dir (in process)"),
    reward_model_address: str | None = typer.Option(None, "--reward-model-address"),
    verifier_url: str | None = typer.Option(None, "--verifier-url"),
    batch: int = typer.Option(
        64, "--batch", help="prompts per generate call (and the engine's micro-batch of sequences)"
    ),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Keep prompts of moderate difficulty for the policy (mean sampled reward in [low, high])."""
    from hybridrl.records import RecordFileError, read_records, write_records
    from rl.config import FormatConfig, ModelConfig, RewardConfig
    from rl.filtering import keep_moderate, score_samples
    from rl.rewards import RewardRouter
    from rl.rollout import TransformersEngine

    try:
        records = read_records(data)[:limit]
        engine = TransformersEngine(ModelConfig(path=str(model)), micro_batch_size=batch)
    except (RecordFileError, FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    router = RewardRouter(
        RewardConfig(
            reward_model_path=reward_model,
            reward_model_address=reward_model_address,
            verifier_url=verifier_url,
        ),
        FormatConfig(),
    )
    scores = score_samples(
        engine, router, records, samples, max_new_tokens, seed, chunk=batch, progress=True
    )
    kept, stats = keep_moderate(records, scores, low, high)
    router.close()
    for s in stats:
        typer.echo(
            f"{s.task:<16} kept {s.kept:>5}/{s.total:<5} mean reward {s.mean_reward:.3f}"
            f"  well-formed {s.well_formed}/{s.samples}"
        )
    if not kept:
        typer.echo("error: no prompt of moderate difficulty; widen --low/--high", err=True)
        raise typer.Exit(code=1)
    write_records(kept, out)
    typer.echo(f"wrote {len(kept)} of {len(records)} records to {out}")
