"""`hybridrl model ...`: create and inspect checkpoints of the default policy."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(
    help="Create and inspect the tiny default policy (a Qwen2-VL-family checkpoint).",
    no_args_is_help=True,
)


@app.command("init")
def init(
    out: Path = typer.Option(..., "--out", help="checkpoint directory to write"),
    preset: str = typer.Option(
        "tiny", help="tiny (default policy), tiny-bpe (the same over subword tokens) or test"
    ),
    seed: int = typer.Option(0, help="seed of the random initialisation"),
    force: bool = typer.Option(False, help="overwrite an existing checkpoint in --out"),
) -> None:
    """Write a randomly initialised checkpoint with tokenizer and processor config."""
    from transformers.utils.logging import disable_progress_bar

    from vlm.config import PRESETS
    from vlm.model import count_parameters, create, save

    disable_progress_bar()

    if preset not in PRESETS:
        raise typer.BadParameter(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    if (out / "config.json").exists() and not force:
        raise typer.BadParameter(f"{out} already holds a checkpoint; pass --force to overwrite")
    model, processor = create(preset, seed=seed)
    save(model, processor, out)
    typer.echo(f"wrote {preset} checkpoint ({count_parameters(model):,} parameters) to {out}")


@app.command("info")
def info(
    path: Path = typer.Argument(..., help="checkpoint directory"),
    as_json: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Print parameter counts and a configuration summary of a checkpoint."""
    from transformers.utils.logging import disable_progress_bar

    from vlm.model import load, summary

    disable_progress_bar()
    try:
        model, processor = load(path)
    except (FileNotFoundError, ValueError) as e:
        raise typer.BadParameter(str(e)) from None
    facts = summary(model, processor)
    if as_json:
        typer.echo(json.dumps(facts, indent=2))
        return
    width = max(len(k) for k in facts)
    for key, value in facts.items():
        typer.echo(f"{key:<{width}}  {value}")
