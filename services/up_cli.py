"""``hybridrl up`` / ``hybridrl down``: the compose file's services as local processes."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer()


@app.command("up")
def up(
    services: str | None = typer.Option(
        None, "--services", help="comma-separated services to start (their dependencies too)"
    ),
    detach: bool = typer.Option(False, "--detach", "-d", help="start, wait for health, return"),
    until: str | None = typer.Option(
        None, "--until", help="stop everything when this service exits, with its exit code"
    ),
    file: Path = typer.Option(Path("docker-compose.yml"), "--file", "-f", help="compose file"),
) -> None:
    """Start docker-compose.yml's services as local processes (no Docker engine needed)."""
    from services.compose import ComposeError
    from services.launcher import Launcher, LaunchError, console

    wanted = [s.strip() for s in services.split(",") if s.strip()] if services else None
    try:
        launcher = Launcher(file)
        names = launcher.up(wanted, detach=detach)
    except (ComposeError, LaunchError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2 if isinstance(e, ComposeError) else 1) from None
    except KeyboardInterrupt:
        raise typer.Exit(130) from None
    if detach:
        console.print(
            f"started {', '.join(names)}; logs in {launcher.state_file.parent / 'logs'}; "
            "stop them with `hybridrl down`"
        )
        return
    raise typer.Exit(launcher.wait(until))


@app.command("down")
def down(
    project: Path = typer.Option(Path("."), "--project", help="folder holding docker-compose.yml"),
) -> None:
    """Stop every process that `hybridrl up --detach` started here."""
    from services.launcher import down as stop_all

    names = stop_all(project)
    typer.echo(f"stopped {', '.join(names)}" if names else "nothing was running")
