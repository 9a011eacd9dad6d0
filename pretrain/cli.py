"""``hybridrl pretrain``, ``hybridrl sft`` and ``hybridrl eval``.

- ``hybridrl pretrain --stage 0|1|2 --config configs/pretrain_tiny.yaml [key=value ...]``
- ``hybridrl pretrain data --config configs/base_model.yaml``: write the synthetic datasets
- ``hybridrl pretrain fit RUN_DIR``: scaling-law fits and plots of a run
- ``hybridrl sft --config configs/sft_tiny.yaml [key=value ...]``
- ``hybridrl eval --model DIR --data PARQUET [--n N] [--batch-size B]``

Overrides are dotted ``key=value`` pairs; a key that is not a top-level field of the file's
config applies to the selected stage (``steps=10`` = ``stage1.steps=10`` under ``--stage 1``)
or, for ``sft``, to its ``train`` section.
"""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True)


def _fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=code)


def _scoped(overrides: list[str], top_level: set[str], prefix: str) -> list[str]:
    out = []
    for item in overrides:
        key = item.split("=", 1)[0].strip()
        out.append(item if key.split(".")[0] in top_level else f"{prefix}.{item}")
    return out


def _load(model, path: Path | None, overrides: list[str]):
    from hybridrl.config import ConfigError, load_config

    if path is None:
        _fail("--config is required")
    try:
        return load_config(model, path, overrides)
    except ConfigError as e:
        _fail(str(e))


@app.command(
    "pretrain",
    context_settings={"allow_interspersed_args": True},
)
def pretrain_command(
    args: list[str] = typer.Argument(
        None, help="key=value overrides; or 'fit RUN_DIR'; or 'data' (with --config)"
    ),
    stage: int | None = typer.Option(None, "--stage", help="pretraining stage: 0, 1 or 2"),
    config: Path | None = typer.Option(None, "--config", help="YAML config"),
    nproc: int | None = typer.Option(None, "--nproc", help="data-parallel processes"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest step_N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a previous run"),
    skip_frac: float = typer.Option(0.1, "--skip-frac", help="fit: ignore the first tokens"),
) -> None:
    """Pretraining stage 0/1/2 of a profile (or: 'fit RUN_DIR', 'data --config ...')."""
    args = list(args or [])
    if args and args[0] == "fit":
        if len(args) != 2:
            _fail("usage: hybridrl pretrain fit RUN_DIR")
        _fit(Path(args[1]), skip_frac)
        return
    if args and args[0] == "data":
        _data(config, args[1:])
        return
    from pretrain.config import PretrainConfig

    if stage not in (0, 1, 2):
        _fail("--stage must be 0, 1 or 2")
    overrides = _scoped(args, set(PretrainConfig.model_fields), f"stage{stage}")
    if nproc is not None:
        overrides.append(f"stage{stage}.nproc={nproc}")
    cfg = _load(PretrainConfig, config, overrides)
    from pretrain.stages import run_stage

    try:
        final = run_stage(cfg, stage, resume=resume, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        _fail(str(e), code=1)
    typer.echo(f"stage {stage} done: {final}")


def _fit(run_dir: Path, skip_frac: float) -> None:
    from rich.console import Console
    from rich.table import Table

    from pretrain.scaling import fit_run

    try:
        fits = fit_run(run_dir, skip_frac=skip_frac)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), code=1)
    table = Table(title=f"log L = -a log D + b  ({run_dir})")
    for col in ("domain", "a", "b", "points", "R^2"):
        table.add_column(col, justify="left" if col == "domain" else "right")
    for dom, f in fits["loss_vs_tokens"].items():
        table.add_row(dom, f"{f['a']:.4f}", f"{f['b']:.4f}", str(f["points"]), f"{f['r2']:.3f}")
    console = Console()
    console.print(table)
    if fits["accuracy_vs_log_loss"]:
        acc = Table(title="accuracy = slope * log L + intercept")
        for col in ("task", "slope", "intercept", "points", "R^2"):
            acc.add_column(col, justify="left" if col == "task" else "right")
        for task, f in fits["accuracy_vs_log_loss"].items():
            acc.add_row(
                task,
                f"{f['slope']:.4f}",
                f"{f['intercept']:.4f}",
                str(f["points"]),
                f"{f['r2']:.3f}",
            )
        console.print(acc)
    typer.echo(f"wrote {run_dir / 'scaling_fits.json'} and plots")


def _data(config: Path | None, overrides: list[str]) -> None:
    from pretrain.config import BaseModelConfig
    from pretrain.stages import make_datasets

    cfg = _load(BaseModelConfig, config, overrides)
    try:
        paths = make_datasets(cfg)
    except ValueError as e:
        _fail(str(e), code=1)
    for p in paths:
        typer.echo(f"wrote {p}")


@app.command("sft", context_settings={"allow_interspersed_args": True})
def sft_command(
    overrides: list[str] = typer.Argument(None, help="key=value overrides"),
    config: Path | None = typer.Option(None, "--config", help="YAML config"),
    nproc: int | None = typer.Option(None, "--nproc", help="data-parallel processes"),
    resume: bool = typer.Option(False, "--resume", help="continue from the newest step_N"),
    overwrite: bool = typer.Option(False, "--overwrite", help="replace a previous run"),
) -> None:
    """Supervised fine-tuning on <think>...</think>answer targets, vision encoder frozen."""
    from pretrain.config import SFTConfig

    items = _scoped(list(overrides or []), set(SFTConfig.model_fields), "train")
    if nproc is not None:
        items.append(f"train.nproc={nproc}")
    cfg = _load(SFTConfig, config, items)
    from pretrain.stages import run_sft

    try:
        final = run_sft(cfg, resume=resume, overwrite=overwrite)
    except (FileNotFoundError, FileExistsError, ValueError) as e:
        _fail(str(e), code=1)
    typer.echo(f"sft done: {final}" + (f" (exported to {cfg.export_to})" if cfg.export_to else ""))


@app.command("eval")
def eval_command(
    model: Path = typer.Option(..., "--model", help="checkpoint directory"),
    data: Path = typer.Option(..., "--data", help="prompt-record parquet/JSONL"),
    n: int | None = typer.Option(None, "--n", help="records per task (default: all)"),
    batch_size: int = typer.Option(32, "--batch-size"),
    max_new_tokens: int = typer.Option(160, "--max-new-tokens"),
    out: Path | None = typer.Option(None, "--out", help="JSON report (default: MODEL/eval.json)"),
    threads: int | None = typer.Option(None, "--threads", help="torch threads"),
) -> None:
    """Greedy generation + verifiers in process: per-task accuracy and format rate."""
    import time

    from rich.console import Console

    from hybridrl.records import RecordFileError, read_records
    from pretrain.distributed import setup_process
    from pretrain.evaluate import evaluate, render_table, select_records, write_report

    if n is not None and n < 1:
        _fail("--n must be at least 1")
    setup_process(threads)
    try:
        records = select_records(read_records(data), n)
    except RecordFileError as e:
        _fail(str(e), code=1)
    import torch

    import vlm

    try:
        policy, processor = vlm.load(model, dtype=torch.float32)
    except (FileNotFoundError, ValueError) as e:
        _fail(str(e), code=1)
    t0 = time.time()
    report = evaluate(
        policy,
        processor,
        records,
        batch_size=batch_size,
        max_new_tokens=max_new_tokens,
        progress=True,
    )
    # at least 110 columns: in a pipe (80 by default) the task names would be cut
    Console(width=max(Console().width, 110)).print(
        render_table(report, title=f"{model} on {data.name}")
    )
    if report.skipped:
        skipped = ", ".join(f"{t} {k}" for t, k in sorted(report.skipped.items()))
        typer.echo(f"skipped (no verifier): {skipped}")
    path = write_report(
        report,
        out or model / "eval.json",
        model=str(model),
        data=str(data),
        seconds=round(time.time() - t0, 1),
    )
    typer.echo(f"wrote {path}")
