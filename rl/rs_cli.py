"""``hybridrl rs-iteration``: one rejection-sampling fine-tuning iteration (docs/rs.md)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


@app.command("rs-iteration", context_settings={"allow_interspersed_args": True})
def rs_iteration(
    overrides: list[str] = typer.Argument(None, help="dotted key=value config overrides"),
    config: Path = typer.Option(Path("configs/rs.yaml"), "--config", "-c", help="YAML config"),
    iteration: int | None = typer.Option(
        None, "--iteration", help="iteration number (default: 1 + the last completed one)"
    ),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace an existing iter_<k>/"),
) -> None:
    """Sample on new prompts, keep verified-correct filtered responses, SFT, eval before/after."""
    from hybridrl.config import ConfigError, dump_config, load_config
    from hybridrl.records import RecordFileError
    from rl.rejection import RSConfig

    try:
        cfg = load_config(RSConfig, config, list(overrides or []))
    except ConfigError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=2) from None
    typer.echo("# resolved config")
    typer.echo(dump_config(cfg).rstrip())

    from rl.rs_iteration import _COMPARE_HEADER, run_iteration

    try:
        summary = run_iteration(cfg, iteration, overwrite=overwrite, log=typer.echo)
    except (FileNotFoundError, FileExistsError, ValueError, RecordFileError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(code=1) from None
    if summary["table"]:
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"rs iteration {summary['iteration']}: held-out accuracy")
        for col in _COMPARE_HEADER:
            table.add_column(col, justify="left" if col == "task" else "right")
        for row in summary["table"]:
            table.add_row(*row)
        Console().print(table)
    out = Path(cfg.run_dir) / f"iter_{summary['iteration']}"
    typer.echo(
        f"rs iteration {summary['iteration']} done in {summary['seconds']['total']:.0f} s: "
        f"kept {summary['kept']} of {summary['samples']} samples; model {summary['model']}; "
        f"summary {out / 'summary.md'}"
    )
