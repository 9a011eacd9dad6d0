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
