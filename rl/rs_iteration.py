"""One rejection-sampling fine-tuning iteration, end to end (`hybridrl rs-iteration`).

The steps, in order (Seed1.5-VL §4.5):

1. resolve the policy (an explicit dir or RL run, the previous iteration's model, the newest
   actor of ``rl_run``, or the base model);
2. draw new prompts (a fresh synth seed per iteration, train split; or a block of a file);
3. sample ``sampling.n`` responses per prompt at temperature ~1 (the RL rollout engine);
4. verify them with the RL reward path's verifiers (``require_format``: HTTP, sandbox or inline);
5. keep correct responses on prompts of pass rate within bounds, minus bad patterns, deduped,
   capped (`rl.rejection.select_responses`);
6. write the SFT parquet (kept responses as ``extra_info.response``, plus a capped sample of
   the previous round's SFT data);
7. SFT with the shared trainer (`pretrain.stages.run_sft`), exported to ``iter_k/model``;
8. evaluate before and after on the held-out split (`pretrain.evaluate`), write a summary.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from hybridrl.config import dump_config
from hybridrl.records import PromptRecord, read_records, write_records
from rl.rejection import (
    RSConfig,
    Sample,
    Selection,
    previous_count,
    select_responses,
    think_of,
)

SUMMARY_JSON = "summary.json"  # written last: its presence marks a complete iteration
_ITER = re.compile(r"^iter_(\d+)$")


# --------------------------------------------------------------------------- run layout


def iteration_dir(run_dir: str | Path, k: int) -> Path:
    return Path(run_dir) / f"iter_{k}"


def iterations(run_dir: str | Path) -> dict[int, bool]:
    """Iteration numbers found under ``run_dir`` -> whether each one completed."""
    root = Path(run_dir)
    if not root.is_dir():
        return {}
    out = {}
    for d in root.iterdir():
        m = _ITER.match(d.name)
        if m and d.is_dir():
            out[int(m.group(1))] = (d / SUMMARY_JSON).is_file()
    return dict(sorted(out.items()))


def next_iteration(run_dir: str | Path) -> int:
    """1 + the highest completed iteration (1 for a fresh run dir)."""
    done = [k for k, ok in iterations(run_dir).items() if ok]
    return max(done, default=0) + 1


def _is_checkpoint(path: Path) -> bool:
    return (path / "config.json").is_file()


def newest_actor(rl_run: str | Path) -> Path | None:
    """The newest actor checkpoint of an RL run dir: ``step_N/actor`` of highest N, else
    ``final/actor`` or ``final``."""
    root = Path(rl_run)
    steps = []
    if root.is_dir():
        for d in root.iterdir():
            m = re.match(r"^step_(\d+)$", d.name)
            if m and _is_checkpoint(d / "actor"):
                steps.append((int(m.group(1)), d / "actor"))
    if steps:
        return max(steps)[1]
    for cand in (root / "final" / "actor", root / "final"):
        if _is_checkpoint(cand):
            return cand
    return None


def resolve_policy(cfg: RSConfig, k: int) -> tuple[Path, str]:
    """(checkpoint dir, how it was chosen) of iteration ``k``'s sampling policy."""
    if cfg.policy:
        path = Path(cfg.policy)
        if _is_checkpoint(path):
            return path, "policy"
        actor = newest_actor(path)
        if actor is not None:
            return actor, f"policy: newest actor of RL run {path}"
        raise FileNotFoundError(
            f"policy {str(path)!r} is neither a checkpoint dir (config.json) nor an RL run dir "
            "with step_N/actor or final/ checkpoints"
        )
    if k > 1:
        prev = iteration_dir(cfg.run_dir, k - 1) / "model"
        if not _is_checkpoint(prev):
            raise FileNotFoundError(
                f"iteration {k} starts from iteration {k - 1}'s model {prev}, which does not "
                f"exist: run iteration {k - 1} first, or set policy=<dir>"
            )
        return prev, f"iteration {k - 1}'s model"
    if cfg.rl_run:
        actor = newest_actor(cfg.rl_run)
        if actor is not None:
            return actor, f"newest actor of RL run {cfg.rl_run}"
    base = Path(cfg.base_model)
    if _is_checkpoint(base):
        note = f" (no actor checkpoint in {cfg.rl_run})" if cfg.rl_run else ""
        return base, "base_model" + note
    raise FileNotFoundError(
        f"no policy: base_model {str(base)!r} is not a checkpoint dir (run `make base-model`), "
        "and no policy / rl_run checkpoint was found"
    )


def resolve_sft_init(cfg: RSConfig, policy: Path) -> Path:
    if cfg.sft.init == "policy":
        return policy
    path = Path(cfg.base_model if cfg.sft.init == "base" else cfg.sft.init)
    if not _is_checkpoint(path):
        raise FileNotFoundError(f"sft.init {cfg.sft.init!r}: {path} is not a checkpoint dir")
    return path


def previous_sft_data(cfg: RSConfig, k: int) -> Path | None:
    """The previous round's SFT data: ``iter_{k-1}/sft_data.parquet``, or ``mix.cold_start``."""
    if not cfg.mix.previous or cfg.mix.max_previous == 0:
        return None
    if k > 1:
        prev = iteration_dir(cfg.run_dir, k - 1) / "sft_data.parquet"
        if prev.is_file():
            return prev
    if cfg.mix.cold_start and Path(cfg.mix.cold_start).is_file():
        return Path(cfg.mix.cold_start)
    return None


# --------------------------------------------------------------------------- prompts


def iteration_prompts(cfg: RSConfig, k: int) -> tuple[list[PromptRecord], str]:
    """Iteration ``k``'s new prompts and a line saying where they came from."""
    p = cfg.prompts
    if p.data:
        records = read_records(p.data)
        if p.tasks:
            wanted = set(p.tasks)
            records = [r for r in records if (r.extra_info.task or r.data_source) in wanted]
        if not records:
            raise ValueError(f"{p.data}: no records of tasks {p.tasks}")
        order = list(range(len(records)))
        random.Random(p.seed).shuffle(order)
        # iteration k reads the k-th block of n, so iterations see different prompts
        start = (k - 1) * p.n
        picked = [records[order[(start + i) % len(order)]] for i in range(min(p.n, len(order)))]
        return picked, f"{p.data}: block {k} of {p.n} (shuffle seed {p.seed})"
    import synth
    from pretrain.data import task_configs

    unknown = [t for t in p.tasks if t not in synth.TASKS]
    if unknown or not p.tasks:
        raise ValueError(
            f"prompts.tasks: unknown synth task(s) {unknown or '(none given)'}; "
            f"known: {', '.join(synth.TASKS)}"
        )
    configs = task_configs(p.difficulty, p.task_overrides)
    seed = p.seed + k
    records = synth.generate(
        p.tasks,
        p.n,
        seed=seed,
        split="train",
        difficulty=p.difficulty,
        configs={t: configs[t] for t in p.tasks},
    )
    return records, f"synth {','.join(p.tasks)} {p.difficulty}, seed {seed}, train split"


def _task(record: PromptRecord) -> str:
    return record.extra_info.task or record.data_source


# --------------------------------------------------------------------------- sampling


def sample_and_verify(
    cfg: RSConfig,
    policy: Path,
    records: Sequence[PromptRecord],
    seed: int,
    *,
    progress: bool = True,
) -> list[Sample]:
    """``sampling.n`` responses per record from the policy, verified as the RL reward does;
    each generated chunk is verified in the background while the next one is generated."""
    from rl.config import FormatConfig, ModelConfig, RewardConfig
    from rl.rewards import RewardRouter
    from rl.rollout import RolloutPrompt, SamplingParams, TransformersEngine, chunk_seed

    s = cfg.sampling
    engine = TransformersEngine(ModelConfig(path=str(policy)), micro_batch_size=s.micro_batch_size)
    params = SamplingParams(
        n=s.n, temperature=s.temperature, top_p=s.top_p, max_tokens=s.max_new_tokens
    )
    v = cfg.verify
    router = RewardRouter(
        RewardConfig(
            verifier_url=v.url,
            verifier_api_key=v.api_key,
            verifier_timeout_s=v.timeout_s,
            verifier_sandbox_workers=v.sandbox_workers,
        ),
        FormatConfig(penalty=0.0),
    )
    per_call = max(1, s.micro_batch_size // s.n)  # prompts whose samples fill one generate call
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(records), desc="rs sample", unit="prompt", dynamic_ncols=True)
    # similar prompts share a generate call (video and two-image prompts are long): less padding
    order = sorted(range(len(records)), key=lambda i: _shape_key(records[i]))
    pending = []
    try:
        for c, start in enumerate(range(0, len(records), per_call)):
            chunk_ids = order[start : start + per_call]
            chunk = [records[i] for i in chunk_ids]
            prompts = [
                RolloutPrompt(
                    messages=[m.model_dump() for m in r.prompt],
                    images=[i.model_dump() for i in r.images],
                    videos=[v.model_dump() for v in r.videos],
                )
                for r in chunk
            ]
            outs = engine.generate(prompts, params, chunk_seed(seed, c))
            ids = [chunk_ids[o.prompt] for o in outs]
            texts = [o.text for o in outs]
            pending.append((ids, texts, router.submit([records[i] for i in ids], texts)))
            if bar is not None:
                bar.update(len(chunk))
        samples = []
        for ids, texts, future in pending:
            for i, text, sc in zip(ids, texts, future.result(), strict=True):
                samples.append(
                    Sample(i, text, bool(sc.correct), bool(sc.format_ok), sc.reward, sc.error)
                )
        return sorted(samples, key=lambda x: x.prompt)  # stable: sample order kept per prompt
    finally:
        if bar is not None:
            bar.close()
        router.close()


def _shape_key(record: PromptRecord) -> tuple[int, int, str]:
    return (len(record.videos), len(record.images), _task(record))


# --------------------------------------------------------------------------- files


def write_samples(
    samples: Sequence[Sample],
    selection: Selection,
    records: Sequence[PromptRecord],
    path: Path,
) -> Path:
    """Every sampled response with its verification, pass rate and filter verdict (flat)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    seen: dict[int, int] = {}
    sample_no = []
    for s in samples:
        sample_no.append(seen.get(s.prompt, 0))
        seen[s.prompt] = sample_no[-1] + 1
    table = pa.table(
        {
            "prompt": [s.prompt for s in samples],
            "sample": sample_no,
            "task": [_task(records[s.prompt]) for s in samples],
            "record_index": [records[s.prompt].extra_info.index for s in samples],
            "response": [s.text for s in samples],
            "correct": [s.correct for s in samples],
            "format_ok": [s.format_ok for s in samples],
            "reward": [s.reward for s in samples],
            "error": [s.error for s in samples],
            "pass_rate": [selection.pass_rates[s.prompt] for s in samples],
            "think_chars": [len(think_of(s.text)) for s in samples],
            "verdict": selection.verdicts,
        }
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def with_response(record: PromptRecord, response: str, **extra: Any) -> PromptRecord:
    """A copy of ``record`` whose SFT target is ``response`` (``extra_info.response``)."""
    info = record.extra_info.model_dump()
    info.update(response=response, **extra)
    return record.model_copy(update={"extra_info": type(record.extra_info).model_validate(info)})


def kept_records(
    selection: Selection, records: Sequence[PromptRecord], k: int
) -> list[PromptRecord]:
    return [
        with_response(
            records[s.prompt],
            s.text,
            rs_iteration=k,
            rs_pass_rate=float(selection.pass_rates[s.prompt] or 0.0),
        )
        for s in selection.kept
    ]


def previous_records(path: Path | None, limit: int, seed: int) -> list[PromptRecord]:
    """Up to ``limit`` records of the previous SFT data (seeded), each with its target set as
    ``extra_info.response``, so the mixed file has one target column."""
    if path is None or limit == 0:
        return []
    from pretrain.data import response_of

    records = read_records(path)
    if len(records) > limit:
        records = random.Random(seed).sample(records, limit)
    return [with_response(r, response_of(r)) for r in records]


# --------------------------------------------------------------------------- evaluation


def _eval_settings(cfg: RSConfig) -> dict[str, Any]:
    e = cfg.eval
    return {"data": e.data, "n_per_task": e.n_per_task, "max_new_tokens": e.max_new_tokens}


def reusable_eval(cfg: RSConfig, model_dir: Path, k: int) -> dict[str, Any] | None:
    """The previous iteration's after-eval, when it scored this very model the same way."""
    path = iteration_dir(cfg.run_dir, k - 1) / "eval_after.json"
    if k < 2 or not path.is_file():
        return None
    report = json.loads(path.read_text())
    same = all(report.get(key) == value for key, value in _eval_settings(cfg).items())
    return report if same and report.get("model") == str(model_dir) else None


def evaluate_model(cfg: RSConfig, model_dir: Path, out: Path) -> dict[str, Any] | None:
    """`hybridrl eval`'s scoring of ``model_dir`` on the held-out records; the JSON report."""
    if not cfg.eval.data:
        return None
    import torch

    import vlm
    from pretrain.evaluate import evaluate, select_records, write_report

    records = select_records(read_records(cfg.eval.data), cfg.eval.n_per_task)
    model, processor = vlm.load(model_dir, dtype=torch.float32)
    t0 = time.time()
    report = evaluate(
        model,
        processor,
        records,
        batch_size=cfg.eval.batch_size,
        max_new_tokens=cfg.eval.max_new_tokens,
    )
    meta = {**_eval_settings(cfg), "model": str(model_dir), "seconds": round(time.time() - t0, 1)}
    write_report(report, out, **meta)
    return json.loads(out.read_text())


def compare_rows(before: dict[str, Any] | None, after: dict[str, Any] | None) -> list[list[str]]:
    """Rows (task, n, accuracy before, after, change, format before, after) plus the mean."""
    if before is None or after is None:
        return []
    b = {t["task"]: t for t in before["tasks"]}
    a = {t["task"]: t for t in after["tasks"]}
    rows = []
    for task in sorted(set(a) | set(b)):
        tb, ta = b.get(task), a.get(task)
        acc_b = tb["accuracy"] if tb else None
        acc_a = ta["accuracy"] if ta else None
        rows.append(
            [
                task,
                str((ta or tb)["n"]),
                _pct(acc_b),
                _pct(acc_a),
                _delta(acc_b, acc_a),
                _pct(tb["format_rate"] if tb else None),
                _pct(ta["format_rate"] if ta else None),
            ]
        )
    mb, ma = before["mean_accuracy"], after["mean_accuracy"]
    rows.append(["mean", str(after["n"]), _pct(mb), _pct(ma), _delta(mb, ma), "", ""])
    return rows


_COMPARE_HEADER = ["task", "n", "acc before", "acc after", "change", "format before", "after"]


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _delta(b: float | None, a: float | None) -> str:
    return "-" if a is None or b is None else f"{(a - b) * 100:+.1f} pt"


def _md_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(lines)


def filter_rows(stats: dict[str, Any]) -> list[list[Any]]:
    """Per task and overall: prompts, mean pass rate, selected, correct, drops, kept."""
    rows = []
    for name, st in [*stats["per_task"].items(), ("all", stats)]:
        sv, pv = st["sample_verdicts"], st["prompt_verdicts"]
        rate = st["mean_pass_rate"]
        rows.append(
            [
                name,
                st["prompts"],
                "-" if rate is None else f"{rate:.2f}",
                pv["selected"],
                pv["too_easy"],
                pv["unsolved"] + pv["too_hard"],
                st["samples"],
                st["correct"],
                sv["repetition"],
                sv["overthinking"],
                sv["inconsistent"],
                sv["pattern"],
                sv["duplicate"],
                sv["over_cap"],
                st["kept"],
            ]
        )
    return rows


_FILTER_HEADER = [
    "task",
    "prompts",
    "pass rate",
    "selected",
    "too easy",
    "unsolved/too hard",
    "samples",
    "correct",
    "repetition",
    "overthinking",
    "inconsistent",
    "pattern",
    "duplicate",
    "over cap",
    "kept",
]


# --------------------------------------------------------------------------- the iteration


def check_iteration(cfg: RSConfig, iteration: int | None, overwrite: bool) -> tuple[int, Path]:
    """The iteration number (given, or the next after the completed ones) and its directory,
    which must be free of an earlier attempt unless ``overwrite``; nothing is written."""
    k = iteration if iteration is not None else next_iteration(cfg.run_dir)
    if k < 1:
        raise ValueError(f"iteration must be at least 1, got {k}")
    out = iteration_dir(cfg.run_dir, k)
    if out.exists() and any(out.iterdir()) and not overwrite:
        state = "a completed" if (out / SUMMARY_JSON).is_file() else "an unfinished"
        raise FileExistsError(
            f"{out} holds {state} iteration {k}: rerun with --overwrite to replace it"
            + ("" if iteration is not None else ", or pass --iteration")
        )
    return k, out


def prepare_dir(cfg: RSConfig, iteration: int | None, overwrite: bool) -> tuple[int, Path]:
    """`check_iteration`, then an empty directory for it (an earlier attempt removed)."""
    k, out = check_iteration(cfg, iteration, overwrite)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    return k, out


def run_iteration(
    cfg: RSConfig,
    iteration: int | None = None,
    *,
    overwrite: bool = False,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Run one rejection-sampling fine-tuning iteration; returns its summary (summary.json)."""
    from pretrain.config import SFTConfig
    from pretrain.distributed import setup_process
    from pretrain.stages import run_sft

    t_start = time.time()
    times: dict[str, float] = {}
    # everything that can fail on bad input fails before the iteration's directory is touched
    k, _ = check_iteration(cfg, iteration, overwrite)
    policy, how = resolve_policy(cfg, k)
    sft_init = resolve_sft_init(cfg, policy)
    t0 = time.time()
    records, origin = iteration_prompts(cfg, k)
    n_model = sum(r.reward_model.style != "rule" for r in records)
    records = [r for r in records if r.reward_model.style == "rule"]
    if not records:
        raise ValueError("no verifiable (reward_model.style: rule) prompts to sample on")
    k, out = prepare_dir(cfg, k, overwrite)
    setup_process(cfg.threads)
    log(f"[rs] iteration {k}: {out}")
    log(f"[rs] policy {policy} ({how}); SFT starts from {sft_init}")
    if not cfg.prompts.data:
        write_records(records, out / "prompts.parquet")
    times["prompts"] = time.time() - t0
    seed = cfg.sampling.seed + k
    resolved = {
        "iteration": k,
        "policy": str(policy),
        "policy_source": how,
        "sft_init": str(sft_init),
        "prompts": origin,
        "prompts_skipped_reward_model": n_model,
        "sampling_seed": seed,
    }
    dump_config(cfg, out / "config.yaml")
    with (out / "config.yaml").open("a") as f:
        f.write("# resolved for this iteration\n")
        f.write("resolved:\n" + "".join(f"  {k_}: {json.dumps(v)}\n" for k_, v in resolved.items()))
    log(f"[rs] {len(records)} prompts ({origin}); {n_model} reward-model prompts skipped")

    t0 = time.time()
    samples = sample_and_verify(cfg, policy, records, seed)
    times["sample_and_verify"] = time.time() - t0
    selection = select_responses(
        samples, len(records), cfg.select, cfg.filters, [_task(r) for r in records]
    )
    stats = selection.stats
    write_samples(samples, selection, records, out / "samples.parquet")
    kept = kept_records(selection, records, k)
    if kept:
        write_records(kept, out / "kept.parquet")
    (out / "filter_stats.json").write_text(
        json.dumps({"iteration": k, **resolved, **stats}, indent=2) + "\n"
    )
    sv = stats["sample_verdicts"]
    log(
        f"[rs] {stats['samples']} samples: {stats['correct']} correct; prompts selected "
        f"{stats['prompt_verdicts']['selected']}/{stats['prompts']}; dropped repetition "
        f"{sv['repetition']}, overthinking {sv['overthinking']}, inconsistent "
        f"{sv['inconsistent']}, pattern {sv['pattern']}, "
        f"duplicate {sv['duplicate']}, over cap {sv['over_cap']}; kept {stats['kept']}"
    )

    prev_path = previous_sft_data(cfg, k)
    n_previous = previous_count(len(kept), cfg.mix.ratio, cfg.mix.max_previous)
    previous = previous_records(prev_path, n_previous, cfg.mix.seed + k)
    sft_records = kept + previous
    if not kept and not previous:
        raise ValueError(
            "nothing to train on: no response survived the selection (widen "
            "select.*_pass_rate, sample more prompts or samples, or set mix.ratio=null to "
            "train on previous data alone)"
        )
    sft_data = write_records(sft_records, out / "sft_data.parquet")
    log(f"[rs] SFT data: {len(kept)} new + {len(previous)} previous ({prev_path}) -> {sft_data}")

    t0 = time.time()
    sft_cfg = SFTConfig(
        model=str(sft_init),
        data=[str(sft_data)],
        run_dir=str(out / "sft"),
        response_field="response",
        train=cfg.sft.train,
        export_to=str(out / "model"),
    )
    run_sft(sft_cfg)
    times["sft"] = time.time() - t0

    t0 = time.time()
    before = reusable_eval(cfg, policy, k)
    if before is not None:  # iteration k-1 already scored this model: same numbers, no cost
        before = {**before, "reused_from": str(iteration_dir(cfg.run_dir, k - 1))}
        (out / "eval_before.json").write_text(json.dumps(before, indent=2) + "\n")
    else:
        before = evaluate_model(cfg, policy, out / "eval_before.json")
    after = evaluate_model(cfg, out / "model", out / "eval_after.json")
    times["eval"] = time.time() - t0
    times["total"] = time.time() - t_start

    rows = compare_rows(before, after)
    summary = {
        "iteration": k,
        **resolved,
        "model": str(out / "model"),
        "prompts_n": len(records),
        "samples": stats["samples"],
        "correct": stats["correct"],
        "kept": len(kept),
        "previous": len(previous),
        "previous_data": str(prev_path) if prev_path else None,
        "sft_records": len(sft_records),
        "sft_steps": cfg.sft.train.total_steps(len(sft_records)),
        "sft_last_loss": _last_loss(out / "sft" / "metrics.jsonl"),
        "eval_before": before["mean_accuracy"] if before else None,
        "eval_after": after["mean_accuracy"] if after else None,
        "seconds": {k_: round(v, 1) for k_, v in times.items()},
    }
    (out / "summary.md").write_text(_summary_md(summary, stats, rows))
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    return {**summary, "table": rows}


def _last_loss(metrics: Path) -> float | None:
    if not metrics.is_file():
        return None
    loss = None
    for line in metrics.read_text().splitlines():
        row = json.loads(line) if line.strip() else {}
        if "loss" in row:
            loss = row["loss"]
    return loss


def _summary_md(summary: dict[str, Any], stats: dict[str, Any], rows: list[list[str]]) -> str:
    s = summary
    secs = ", ".join(f"{k} {v:.0f} s" for k, v in s["seconds"].items())
    parts = [
        f"# Rejection-sampling iteration {s['iteration']}",
        "",
        f"- policy: `{s['policy']}` ({s['policy_source']})",
        f"- prompts: {s['prompts_n']} ({s['prompts']}; sampling seed {s['sampling_seed']})",
        f"- samples: {s['samples']}, correct {s['correct']}, kept {s['kept']}",
        f"- SFT: {s['sft_records']} records ({s['kept']} new + {s['previous']} from "
        f"`{s['previous_data']}`), {s['sft_steps']} steps from `{s['sft_init']}`, "
        f"last loss {s['sft_last_loss']}",
        f"- model: `{s['model']}`",
        f"- time: {secs}",
        "",
        "## Selection and filters",
        "",
        _md_table(_FILTER_HEADER, filter_rows(stats)),
        "",
    ]
    if stats.get("pattern_hits"):
        parts += ["Pattern hits: " + json.dumps(stats["pattern_hits"]), ""]
    if rows:
        parts += ["## Held-out accuracy, before and after", "", _md_table(_COMPARE_HEADER, rows)]
    return "\n".join(parts) + "\n"
