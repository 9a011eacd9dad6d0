"""Flags of ``hybridrl serve reward-model`` → server settings (env ``HYBRIDRL_RM_*`` fills the rest)."""

from __future__ import annotations

from typing import Any

import typer


def serve_from_flags(**flags: Any) -> None:
    """Validate the settings (errors name the field), load the model, serve until signalled."""
    from pydantic import ValidationError

    from reward_model.server import RewardModelServerSettings, serve

    try:
        settings = RewardModelServerSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        for err in e.errors():
            typer.echo(f"error: {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
        raise typer.Exit(2) from None
    try:
        serve(settings)
    except (FileNotFoundError, ValueError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
