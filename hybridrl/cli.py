"""The `hybridrl` command line.

Each role contributes its own typer app from a module of its own (``<role>/cli.py``); this
file only mounts them, so that a role's heavy imports (torch, transformers) happen inside
its commands, not when the CLI starts.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="hybridrl",
    help="Hybrid PPO post-training (RLHF + RLVR) for vision-language models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

# (module, attribute, mount name or None to merge its commands at top level)
_SUBAPPS: list[tuple[str, str, str | None]] = [
    ("verifiers.cli", "app", None),  # hybridrl verify
    ("services.cli", "serve_app", "serve"),  # hybridrl serve verifier|reward-model
    ("services.up_cli", "app", None),  # hybridrl up|down
    ("synth.cli", "app", "data"),  # hybridrl data synth
    ("vlm.cli", "app", "model"),  # hybridrl model init|info
    ("rl.cli", "app", None),  # hybridrl train, hybridrl report
    ("pretrain.cli", "app", None),  # hybridrl pretrain, sft, eval
    ("reward_model.cli", "app", "rm"),  # hybridrl rm data|train|eval|compare
    ("rl.rs_cli", "app", None),  # hybridrl rs-iteration
]


def _mount() -> None:
    for module, attr, name in _SUBAPPS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:  # that role has no CLI yet
                continue
            raise
        sub = getattr(mod, attr)
        if name is None:
            for cmd in sub.registered_commands:
                app.registered_commands.append(cmd)
            for grp in sub.registered_groups:
                app.registered_groups.append(grp)
        else:
            app.add_typer(sub, name=name)


@app.callback()
def main() -> None:
    """Hybrid PPO post-training (RLHF + RLVR) for vision-language models."""


@app.command("version")
def version() -> None:
    """Print the hybridrl version."""
    from hybridrl import __version__

    typer.echo(__version__)


_mount()

if __name__ == "__main__":
    app()
