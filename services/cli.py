"""``hybridrl serve ...``: the long-running services (verifier API; the reward-model server)."""

from __future__ import annotations

import typer

serve_app = typer.Typer(help="Run hybridrl's services.", no_args_is_help=True)


@serve_app.callback()
def _serve() -> None:
    """Run hybridrl's services (the verifier HTTP API, the reward-model server)."""


@serve_app.command("verifier")
def serve_verifier(
    host: str | None = typer.Option(
        None, help="bind address (env HYBRIDRL_HOST, default 127.0.0.1)"
    ),
    port: int | None = typer.Option(None, help="port (env HYBRIDRL_PORT, default 8000)"),
    workers: int | None = typer.Option(
        None, help="sandbox worker processes (env HYBRIDRL_WORKERS)"
    ),
    timeout: float | None = typer.Option(
        None, help="seconds one verification may take (env HYBRIDRL_TIMEOUT_S, default 3)"
    ),
    memory_mb: int | None = typer.Option(
        None, help="address-space limit per worker in MiB (env HYBRIDRL_MEMORY_MB, default 2048)"
    ),
    redis_url: str | None = typer.Option(
        None, help="shared cache, e.g. redis://127.0.0.1:6379/0 (env HYBRIDRL_REDIS_URL)"
    ),
    access_log: bool | None = typer.Option(
        None, "--access-log/--no-access-log", help="log every request"
    ),
) -> None:
    """Serve the verifier HTTP API (FastAPI + uvicorn) over a sandboxed worker pool."""
    from pydantic import ValidationError

    from services.settings import VerifierServiceSettings

    flags = {
        "host": host,
        "port": port,
        "workers": workers,
        "timeout_s": timeout,
        "memory_mb": memory_mb,
        "redis_url": redis_url,
        "access_log": access_log,
    }
    try:
        settings = VerifierServiceSettings(**{k: v for k, v in flags.items() if v is not None})
    except ValidationError as e:
        for err in e.errors():
            typer.echo(f"error: {'.'.join(map(str, err['loc']))}: {err['msg']}", err=True)
        raise typer.Exit(2) from None

    from services.verifier_api import serve

    serve(settings)


@serve_app.command("reward-model")
def serve_reward_model(
    model: str | None = typer.Option(None, help="RM checkpoint dir (env HYBRIDRL_RM_MODEL)"),
    host: str | None = typer.Option(
        None, help="bind address (env HYBRIDRL_RM_HOST, default 127.0.0.1)"
    ),
    port: int | None = typer.Option(
        None, help="port, 0 for a free one (env HYBRIDRL_RM_PORT, default 50051)"
    ),
    max_batch: int | None = typer.Option(None, help="most pairs per forward pass (default 32)"),
    max_wait_ms: float | None = typer.Option(
        None, help="how long a batch waits to fill (default 10)"
    ),
    device: str | None = typer.Option(None, help="torch device, e.g. cuda (default cpu)"),
) -> None:
    """Serve the pairwise reward model over gRPC (Compare, CompareBatch, Stats, health)."""
    from reward_model.cli_serve import serve_from_flags

    serve_from_flags(
        model=model,
        host=host,
        port=port,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        device=device,
    )
