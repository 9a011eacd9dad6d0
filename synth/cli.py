"""``hybridrl data synth``: write synthetic prompt records to DIR/<split>.parquet (+ previews)."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(
    help="Datasets: synthetic visual tasks with ground truth.",
    no_args_is_help=True,
    add_completion=False,
)

PREVIEWS_PER_TASK = 2


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command("synth")
def synth_command(
    out: Path = typer.Option(..., "--out", help="output folder (created)"),
    n: int = typer.Option(..., "--n", help="number of records (tasks interleaved)"),
    tasks: str = typer.Option("", "--tasks", help="comma-separated task names (default: all)"),
    seed: int = typer.Option(0, "--seed", help="base seed; same seed, same bytes"),
    split: str = typer.Option("train", "--split", help="train | test (never share content)"),
    difficulty: str = typer.Option("easy", "--difficulty", help="easy | hard"),
    jsonl: bool = typer.Option(False, "--jsonl", help="also write <split>.jsonl"),
    previews: bool = typer.Option(True, "--previews/--no-previews", help="write preview PNGs"),
    system: str = typer.Option("", "--system", help="system message to add to every prompt"),
) -> None:
    """Generate N synthetic prompt records into OUT/<split>.parquet."""
    from hybridrl.records import load_image, write_records
    from synth.registry import TASKS, iter_generate
    from synth.task import DIFFICULTIES, SPLITS

    names = [t.strip() for t in tasks.split(",") if t.strip()] or list(TASKS)
    unknown = [t for t in names if t not in TASKS]
    if unknown:
        _fail(f"unknown task(s) {', '.join(unknown)}; known tasks: {', '.join(TASKS)}")
    if n <= 0:
        _fail(f"--n must be a positive integer, got {n}")
    if split not in SPLITS:
        _fail(f"--split must be one of {', '.join(SPLITS)}, got {split!r}")
    if difficulty not in DIFFICULTIES:
        _fail(f"--difficulty must be one of {', '.join(DIFFICULTIES)}, got {difficulty!r}")

    records, duplicates = [], 0
    for g in iter_generate(
        names, n, seed=seed, split=split, difficulty=difficulty, system=system or None
    ):
        records.append(g.record)
        duplicates += g.duplicate
    out.mkdir(parents=True, exist_ok=True)
    path = write_records(records, out / f"{split}.parquet")
    written = [path]
    if jsonl:
        written.append(write_records(records, out / f"{split}.jsonl"))
    if previews:
        written += _write_previews(records, out / "previews", load_image)
    counts = {t: sum(r.extra_info.task == t for r in records) for t in names}
    typer.echo(
        f"wrote {len(records)} records ({', '.join(f'{t} {c}' for t, c in counts.items())}) "
        f"split={split} difficulty={difficulty} seed={seed}"
    )
    if duplicates:
        typer.echo(
            f"note: {duplicates} records repeat earlier content (the task's content space "
            f"is small for n={n} at {difficulty})"
        )
    for p in written[:3]:
        typer.echo(f"  {p}")
    if len(written) > 3:
        typer.echo(f"  ... and {len(written) - 3} preview files in {out / 'previews'}")


def _write_previews(records: list, folder: Path, load_image) -> list[Path]:
    """The first images (or video frames) of a few records per task, with their prompt and answer."""
    folder.mkdir(parents=True, exist_ok=True)
    written, per_task = [], {}
    for rec in records:
        task = rec.extra_info.task or "record"
        k = per_task.get(task, 0)
        if k >= PREVIEWS_PER_TASK:
            continue
        per_task[task] = k + 1
        stem = f"{task}_{rec.extra_info.index:05d}"
        media = list(rec.images) or list(rec.videos[0].frames if rec.videos else [])
        for j, ref in enumerate(media):
            p = folder / f"{stem}_{j}.png"
            p.write_bytes(ref.bytes) if ref.bytes is not None else load_image(ref).save(p)
            written.append(p)
        txt = folder / f"{stem}.txt"
        txt.write_text(
            f"prompt: {rec.user_text()}\nreference: {rec.extra_info.reference_response}\n"
            f"ground_truth: {rec.reward_model.ground_truth}\n",
            encoding="utf-8",
        )
        written.append(txt)
    return written
