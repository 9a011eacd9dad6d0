"""The supervised trainer behind pretraining stages, SFT and reward-model training.

``train(model, data, cfg, run_dir) -> final model dir`` is the stable Python API: ``model`` is
a checkpoint dir, a vlm preset name or a (model, processor) pair; ``data`` is an
`ExampleSource`, a list of `Example` or prompt-record file(s). Every run goes through
DeepSpeed (a world of one included), with the paper's infrastructure at this scale:

- one rank reads and encodes each global batch and broadcasts it (parallelism-aware loading);
- samples are assigned to ranks greedily by compute cost (`pretrain.balance`);
- the loss is the mean over all target tokens of the global batch, whatever the split, so
  ``nproc`` changes where the work runs, not the update;
- checkpoints every ``save_every`` steps with optimizer, data position and RNG states, and
  ``resume=True`` continues from the newest one exactly.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hybridrl.config import dump_config
from pretrain import checkpoint as ckpt
from pretrain.balance import balance, rank_loads, round_robin_assign, split_by_tokens
from pretrain.config import TrainConfig
from pretrain.data import Example, ExampleSource, ListSource, RecordSource
from pretrain.distributed import barrier, broadcast, gather, launch, rank_world
from pretrain.freeze import param_groups, set_trainable
from pretrain.losses import IGNORE_INDEX, token_losses
from pretrain.schedule import lr_at

ModelSpec = str | Path | tuple[Any, Any]
DataSpec = ExampleSource | Sequence[Example] | str | Path | Sequence[str | Path]


# --------------------------------------------------------------------------- batches


@dataclass
class MicroBatch:
    """One forward's worth of samples on one rank."""

    inputs: dict[str, torch.Tensor]
    domains: list[str]
    weight: float = 1.0  # 0: a stand-in so that an otherwise idle rank joins the step


@dataclass
class StepBatch:
    """A global batch, encoded and split across ranks by rank 0, broadcast to all."""

    shards: list[list[MicroBatch]]
    samples: int
    dropped: int  # longer than seq_len
    target_tokens: int
    tokens: int
    domain_tokens: dict[str, int] = field(default_factory=dict)
    loads: list[float] = field(default_factory=list)


def encode_example(processor: Any, example: Example) -> Any:
    """Prompt + target ids with labels on the target (and its end-of-turn token) only."""
    enc = processor.encode(
        example.messages, example.images, example.videos, add_generation_prompt=True
    )
    answer = processor.encode_response(example.target)
    enc.labels = [IGNORE_INDEX] * len(enc.input_ids) + answer
    enc.input_ids = enc.input_ids + answer
    return enc


def vision_patches(enc: Any) -> list[int]:
    """Patches per image/frame of an encoded sample (what the ViT attends over)."""
    return [t * h * w for t, h, w in enc.grids]


def prepare_batch(
    source: ExampleSource,
    processor: Any,
    start: int,
    size: int,
    *,
    world: int,
    seq_len: int,
    micro_batch: int,
    micro_tokens: int | None = None,
    strategy: str = "greedy",
) -> StepBatch:
    """Read, encode, balance and collate samples ``start .. start+size-1`` of the stream."""
    from pretrain.balance import sample_cost

    kept, domains, dropped = [], [], 0
    for i in range(start, start + size):
        example = source.get(i)
        enc = encode_example(processor, example)
        if len(enc.input_ids) > seq_len:
            dropped += 1
            continue
        kept.append(enc)
        domains.append(example.domain)
    if not kept:
        raise ValueError(
            f"every sample of the batch at {start} is longer than seq_len={seq_len}: raise seq_len"
        )
    costs = [sample_cost(vision_patches(e), len(e.input_ids)) for e in kept]
    if strategy == "greedy":
        shards = balance(costs, world)
    else:
        shards = round_robin_assign(len(kept), world)
    domain_tokens: dict[str, int] = defaultdict(int)
    for enc, dom in zip(kept, domains, strict=True):
        domain_tokens[dom] += len(enc.input_ids)
    per_rank: list[list[MicroBatch]] = []
    for shard in shards:
        weight = 1.0
        if not shard:  # fewer samples than ranks: run one at weight 0 so every rank steps
            shard, weight = [0], 0.0
        # similar lengths together, padded size capped: little compute spent on padding
        lengths = [len(kept[i].input_ids) for i in shard]
        micro = []
        for group in split_by_tokens(lengths, micro_batch, micro_tokens):
            rows = [shard[j] for j in group]
            batch = processor.collate([kept[i] for i in rows], padding_side="right")
            micro.append(MicroBatch(dict(batch), [domains[i] for i in rows], weight))
        per_rank.append(micro)
    return StepBatch(
        shards=per_rank,
        samples=len(kept),
        dropped=dropped,
        target_tokens=sum(sum(label != IGNORE_INDEX for label in e.labels) for e in kept),
        tokens=sum(len(e.input_ids) for e in kept),
        domain_tokens=dict(domain_tokens),
        loads=rank_loads(costs, shards),
    )


def deepspeed_config(cfg: TrainConfig) -> dict[str, Any]:
    """The engine config: this trainer owns accumulation (backward per micro-batch, one step)."""
    o = cfg.optim
    return {
        "train_micro_batch_size_per_gpu": cfg.micro_batch,
        "gradient_accumulation_steps": 1,
        "managed_gradient_accumulation": False,
        "gradient_clipping": o.grad_clip,
        "zero_optimization": {"stage": cfg.zero_stage},
        "optimizer": {
            "type": "AdamW",
            "params": {
                "lr": o.lr,
                "betas": list(o.betas),
                "eps": o.eps,
                "weight_decay": o.weight_decay,
                "torch_adam": True,  # no compiled CPU kernels needed
            },
        },
        "bf16": {"enabled": torch.cuda.is_available() and torch.cuda.is_bf16_supported()},
        "steps_per_print": 1 << 30,
        "wall_clock_breakdown": False,
    }


# --------------------------------------------------------------------------- the run


class Trainer:
    """One rank's view of a run; every rank builds one, rank 0 also reads data and logs."""

    def __init__(
        self,
        cfg: TrainConfig,
        run_dir: str | Path,
        model: ModelSpec,
        source: ExampleSource,
        eval_records: Sequence[Any] | None = None,
    ):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.rank, self.world = rank_world()
        self.model, self.processor = load_model(model, seed=cfg.seed)
        self.source = source
        self.eval_records = list(eval_records or [])
        self.total_steps = cfg.total_steps(source.size)
        self.step = 0
        self.tokens = 0
        self.samples = 0
        self.domain_tokens: dict[str, int] = defaultdict(int)
        self.evals: list[dict[str, Any]] = []  # {"step", "mean_accuracy"}
        self.engine: Any = None
        self.writer: Any = None
        self.started = time.time()

    # ---- setup ----------------------------------------------------------------------
    def setup(self, resume: bool = False) -> None:
        """Build the DeepSpeed engine; restore a checkpoint or a previous run's optimizer."""
        import deepspeed

        set_trainable(self.model, self.cfg.trainable)
        self.model.train()
        groups = param_groups(
            self.model, self.cfg.optim.weight_decay, self.cfg.optim.vision_lr_scale
        )
        self.engine, *_ = deepspeed.initialize(
            model=self.model, model_parameters=groups, config=deepspeed_config(self.cfg)
        )
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            ckpt.clear_stale(self.run_dir)
            dump_config(self.cfg, self.run_dir / "config.yaml")
        barrier()
        last = ckpt.latest_step(self.run_dir) if resume else None
        if resume and last is None and self.rank == 0:
            print(f"[{self.cfg.name}] --resume: no checkpoint in {self.run_dir}, starting fresh")
        if last is not None:
            self._restore(ckpt.step_dir(self.run_dir, last))
        elif self.cfg.init_optimizer_from:
            self._continue_optimizer(Path(self.cfg.init_optimizer_from))
        if self.rank == 0:
            self._open_logs(purge_after=self.step)

    def _restore(self, path: Path) -> None:
        state = ckpt.read_state(path)
        if state["world_size"] != self.world:
            raise RuntimeError(
                f"{path} was written by {state['world_size']} ranks; resume with "
                f"nproc={state['world_size']} (ZeRO keeps per-rank optimizer partitions)"
            )
        loaded, _ = self.engine.load_checkpoint(
            str(path / ckpt.DS_DIR), tag=ckpt.DS_TAG, load_lr_scheduler_states=False
        )
        if loaded is None:
            raise FileNotFoundError(f"no DeepSpeed state under {path / ckpt.DS_DIR}")
        ckpt.load_rng(path, self.rank)
        self.step = state["step"]
        self.samples = state["samples"]
        self.tokens = state["tokens"]
        self.domain_tokens = defaultdict(int, state["domain_tokens"])
        self.evals = state.get("evals", [])
        if self.rank == 0:
            print(f"[{self.cfg.name}] resumed from {path} at step {self.step}")

    def _continue_optimizer(self, path: Path) -> None:
        """Load another run's weights and optimizer state (stage 2 continues stage 1's)."""
        state = ckpt.read_state(path)
        if state.get("trainable") != self.cfg.trainable:
            raise ValueError(
                f"{path} trained {state.get('trainable')!r} parameters, this run trains "
                f"{self.cfg.trainable!r}: optimizer states only carry over between equal sets"
            )
        if state["world_size"] != self.world:
            raise RuntimeError(
                f"{path} holds optimizer partitions of {state['world_size']} ranks; "
                f"run with nproc={state['world_size']}"
            )
        loaded, _ = self.engine.load_checkpoint(
            str(path / ckpt.DS_DIR),
            tag=ckpt.DS_TAG,
            load_optimizer_states=True,
            load_lr_scheduler_states=False,
        )
        if loaded is None:
            raise FileNotFoundError(f"no DeepSpeed state under {path / ckpt.DS_DIR}")
        if self.rank == 0:
            print(f"[{self.cfg.name}] optimizer state continued from {path}")

    def _open_logs(self, purge_after: int) -> None:
        from torch.utils.tensorboard import SummaryWriter

        metrics = self.run_dir / "metrics.jsonl"
        if metrics.is_file():  # drop rows past the checkpoint we resume from
            rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
            kept = [r for r in rows if r.get("step", 0) <= purge_after]
            metrics.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.writer = SummaryWriter(str(self.run_dir / "tb"), purge_step=purge_after + 1)

    # ---- the loop -------------------------------------------------------------------
    def run(self) -> Path:
        """Train to ``total_steps``, checkpointing and evaluating on the way; returns final/."""
        cfg = self.cfg
        if self.rank == 0:
            trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
            print(
                f"[{cfg.name}] {self.total_steps} steps x {cfg.global_batch} samples on "
                f"{self.world} rank(s), trainable={cfg.trainable} ({trainable:,} params), "
                f"zero={cfg.zero_stage}, run_dir={self.run_dir}"
            )
        pool = ThreadPoolExecutor(max_workers=1) if self.rank == 0 and cfg.prefetch else None
        pending: Future | None = None
        acc = _Interval()
        bar = _progress(self.rank, self.total_steps, self.step, cfg.name)
        try:
            while self.step < self.total_steps:
                if self.rank == 0:
                    if pending is None:
                        batch = self._prepare(self.samples)
                    else:
                        batch = pending.result()
                    nxt = self.samples + cfg.global_batch
                    pending = (
                        pool.submit(self._prepare, nxt)
                        if pool and self.step + 1 < self.total_steps
                        else None
                    )
                else:
                    batch = None
                batch = broadcast(batch)
                t0 = time.time()
                lr, sums, grad_norm = self._train_step(batch)
                acc.add(batch, sums, time.time() - t0, self.world)
                self.step += 1
                self.samples += cfg.global_batch
                self.tokens += batch.tokens
                for dom, n in batch.domain_tokens.items():
                    self.domain_tokens[dom] += n
                save_now = cfg.save_every and self.step % cfg.save_every == 0
                eval_now = bool(self.eval_records) and (
                    (cfg.eval.every and self.step % cfg.eval.every == 0)
                    or self.step == self.total_steps
                )
                last = self.step == self.total_steps
                if self.step % cfg.log_every == 0 or save_now or eval_now or last:
                    self._log(acc, lr, grad_norm)
                    acc = _Interval()
                if eval_now:
                    self._evaluate()
                if save_now or last or (eval_now and cfg.eval.select_best):
                    self._save()
                if bar is not None:
                    bar.update(1)
        finally:
            if bar is not None:
                bar.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)
        final = self._finish()
        if self.writer is not None:
            self.writer.close()
        return final

    def _prepare(self, start: int) -> StepBatch:
        return prepare_batch(
            self.source,
            self.processor,
            start,
            self.cfg.global_batch,
            world=self.world,
            seq_len=self.cfg.seq_len,
            micro_batch=self.cfg.micro_batch,
            micro_tokens=self.cfg.micro_tokens,
            strategy=self.cfg.balance,
        )

    def _train_step(self, batch: StepBatch) -> tuple[float, dict[str, list[float]], float]:
        """One optimizer step on this rank's shard; returns lr, per-domain sums, grad norm."""
        o = self.cfg.optim
        lr = lr_at(
            self.step,
            lr=o.lr,
            min_lr=o.min_lr,
            total_steps=self.total_steps,
            warmup_steps=o.warmup_steps,
            schedule=o.schedule,
        )
        for group in self.engine.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        device = self.engine.device
        # the mean over the global batch's target tokens; DeepSpeed averages over ranks
        scale = self.world / max(1, batch.target_tokens)
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for mb in batch.shards[self.rank]:
            inputs = {k: v.to(device) for k, v in mb.inputs.items()}
            ce, mask = token_losses(self.engine, inputs)
            self.engine.backward(ce.sum() * (scale * mb.weight), scale_wrt_gas=False)
            if mb.weight:
                per_sample = ce.detach().sum(1).tolist()
                counts = mask.sum(1).tolist()
                for dom, s, n in zip(mb.domains, per_sample, counts, strict=True):
                    sums[dom][0] += s
                    sums[dom][1] += n
        self.engine.step()
        norm = self.engine.get_global_grad_norm()
        return lr, dict(sums), float(norm) if norm is not None else float("nan")

    # ---- logging, eval, checkpoints -------------------------------------------------
    def _log(self, acc: _Interval, lr: float, grad_norm: float) -> None:
        sums = _merge(gather(dict(acc.sums)))
        if self.rank != 0:
            return
        total = sum(s for s, _ in sums.values())
        count = sum(n for _, n in sums.values())
        row: dict[str, Any] = {
            "step": self.step,
            "samples": self.samples,
            "tokens": self.tokens,
            "lr": lr,
            "loss": total / count if count else float("nan"),
            "grad_norm": grad_norm,
            "dropped": acc.dropped,
            "imbalance": acc.imbalance(),
            "samples_per_s": acc.samples / acc.seconds if acc.seconds else 0.0,
            "time_s": round(time.time() - self.started, 2),
        }
        for dom in sorted(sums):
            s, n = sums[dom]
            if n:
                row[f"loss/{dom}"] = s / n
        for dom in sorted(self.domain_tokens):
            row[f"tokens/{dom}"] = self.domain_tokens[dom]
        self._write_row(row)

    def _write_row(self, row: dict[str, Any]) -> None:
        with (self.run_dir / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")
        for key, value in row.items():
            if key != "step" and isinstance(value, int | float):
                self.writer.add_scalar(key, value, row["step"])
        self.writer.flush()

    def _evaluate(self) -> None:
        if self.rank == 0:
            from pretrain.evaluate import evaluate

            report = evaluate(
                self.engine.module,
                self.processor,
                self.eval_records,
                batch_size=self.cfg.eval.batch_size,
                max_new_tokens=self.cfg.eval.max_new_tokens,
            )
            row: dict[str, Any] = {"step": self.step, "eval/mean_accuracy": report.mean_accuracy}
            for t in report.tasks:
                row[f"eval/{t.task}/accuracy"] = t.accuracy
                row[f"eval/{t.task}/format_rate"] = t.format_rate
                if t.loss is not None:
                    row[f"eval/{t.task}/loss"] = t.loss
            self._write_row(row)
            self.evals.append({"step": self.step, "mean_accuracy": report.mean_accuracy})
            accs = ", ".join(f"{t.task} {t.accuracy:.0%}" for t in report.tasks)
            print(
                f"[{self.cfg.name}] step {self.step} eval: mean {report.mean_accuracy:.1%} ({accs})"
            )
        self.evals = broadcast(self.evals)

    def best_step(self) -> int | None:
        """The evaluated step of highest mean accuracy (the earliest among ties)."""
        if not self.evals:
            return None
        return max(self.evals, key=lambda e: (e["mean_accuracy"], -e["step"]))["step"]

    def _save(self) -> None:
        step = self.step
        tmp = ckpt.tmp_dir(self.run_dir, step)
        if self.rank == 0:
            tmp.mkdir(parents=True, exist_ok=True)
        barrier()
        self.engine.save_checkpoint(str(tmp / ckpt.DS_DIR), tag=ckpt.DS_TAG, save_latest=False)
        ckpt.save_rng(tmp, self.rank)
        barrier()
        if self.rank == 0:
            self.engine.module.save_pretrained(tmp)
            self.processor.save_pretrained(tmp)
            ckpt.write_state(
                tmp,
                {
                    "step": step,
                    "samples": self.samples,
                    "tokens": self.tokens,
                    "domain_tokens": dict(self.domain_tokens),
                    "evals": self.evals,
                    "world_size": self.world,
                    "trainable": self.cfg.trainable,
                    "total_steps": self.total_steps,
                    "name": self.cfg.name,
                },
            )
            final = ckpt.step_dir(self.run_dir, step)
            if final.exists():
                import shutil

                shutil.rmtree(final)
            tmp.rename(final)
            best = self.best_step() if self.cfg.eval.select_best else None
            ckpt.prune(self.run_dir, self.cfg.keep_checkpoints, {best} if best else set())
        barrier()

    def _finish(self) -> Path:
        final = self.run_dir / "final"
        if self.rank == 0:
            src_step = self.step
            if self.cfg.eval.select_best and self.best_step() is not None:
                src_step = self.best_step()
            ckpt.export_model(ckpt.step_dir(self.run_dir, src_step), final)
            note = {"from_step": src_step, "last_step": self.step, "evals": self.evals}
            (final / "final.json").write_text(json.dumps(note, indent=2) + "\n")
            print(f"[{self.cfg.name}] final model: {final} (step {src_step})")
        barrier()
        return final


class _Interval:
    """Sums over the steps between two log rows."""

    def __init__(self) -> None:
        self.sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
        self.samples = 0
        self.dropped = 0
        self.seconds = 0.0
        self.loads: list[list[float]] = []

    def add(
        self, batch: StepBatch, sums: dict[str, list[float]], seconds: float, world: int
    ) -> None:
        for dom, (s, n) in sums.items():
            self.sums[dom][0] += s
            self.sums[dom][1] += n
        self.samples += batch.samples
        self.dropped += batch.dropped
        self.seconds += seconds
        self.loads.append(batch.loads)

    def imbalance(self) -> float:
        ratios = []
        for loads in self.loads:
            mean = sum(loads) / len(loads)
            ratios.append(max(loads) / mean if mean else 1.0)
        return sum(ratios) / len(ratios) if ratios else 1.0


def _merge(parts: list[dict[str, list[float]]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for part in parts:
        for dom, (s, n) in part.items():
            out[dom][0] += s
            out[dom][1] += n
    return dict(out)


def _progress(rank: int, total: int, done: int, name: str) -> Any:
    if rank != 0:
        return None
    from tqdm import tqdm

    return tqdm(total=total, initial=done, desc=name, unit="step", dynamic_ncols=True)


# --------------------------------------------------------------------------- public API


def load_model(spec: ModelSpec, *, seed: int = 0) -> tuple[Any, Any]:
    """(model, processor) from a checkpoint dir, a vlm preset name or a given pair."""
    import vlm
    from vlm.config import PRESETS

    if isinstance(spec, tuple):
        return spec
    path = Path(spec)
    if path.is_dir():
        model, processor = vlm.load(path, dtype=torch.float32)
        return model, processor
    if str(spec) in PRESETS:
        return vlm.create(str(spec), seed=seed)
    raise FileNotFoundError(
        f"model {str(spec)!r} is neither a checkpoint dir nor a preset ({', '.join(PRESETS)})"
    )


def as_source(data: DataSpec, *, seed: int = 0) -> ExampleSource:
    """An `ExampleSource` from a source, a list of examples, or record file path(s)."""
    if hasattr(data, "get") and hasattr(data, "size"):
        return data  # type: ignore[return-value]
    if isinstance(data, str | Path):
        return RecordSource(data, seed=seed)
    items = list(data)  # type: ignore[arg-type]
    if items and all(isinstance(x, Example) for x in items):
        return ListSource(items, seed=seed)
    if items and all(isinstance(x, str | Path) for x in items):
        return RecordSource(items, seed=seed)
    raise TypeError("data must be an ExampleSource, a list of Example, or record file path(s)")


def _rank_train(
    model: ModelSpec,
    source: ExampleSource,
    cfg: TrainConfig,
    run_dir: str,
    eval_records: Sequence[Any] | None,
    resume: bool,
) -> Path:
    rank, _ = rank_world()
    trainer = Trainer(cfg, run_dir, model, source, eval_records if rank == 0 else None)
    trainer.setup(resume=resume)
    return trainer.run()


def load_eval_records(cfg: TrainConfig) -> list[Any]:
    """The held-out records of ``cfg.eval`` (first n per task), or none."""
    if not cfg.eval.data:
        return []
    from hybridrl.records import read_records
    from pretrain.evaluate import select_records

    return select_records(read_records(cfg.eval.data), cfg.eval.n_per_task)


def claim_run_dir(run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse a ``run_dir`` holding a previous run unless ``resume`` or ``overwrite`` (which
    deletes that run's checkpoints, logs and final/); front-ends call it before writing
    anything there, so a refused run leaves the previous one as it was."""
    previous = ckpt.complete_steps(run_dir) or (run_dir / "metrics.jsonl").exists()
    if previous and overwrite and not resume:
        ckpt.remove_run(run_dir)
    elif previous and not resume:
        raise FileExistsError(
            f"{run_dir} holds a previous run: continue it with --resume, start over with "
            "--overwrite, or remove the directory"
        )


def train(
    model: ModelSpec,
    data: DataSpec,
    cfg: TrainConfig,
    run_dir: str | Path,
    *,
    eval_records: Sequence[Any] | None = None,
    resume: bool = False,
    overwrite: bool = False,
) -> Path:
    """Train ``model`` on ``data`` under ``cfg``; returns ``run_dir/final`` (a checkpoint dir).

    Loss on target tokens only. ``cfg.nproc > 1`` spawns that many data-parallel ranks;
    ``resume`` continues from the newest ``run_dir/step_N``. A ``run_dir`` holding a previous
    run is refused unless ``resume`` or ``overwrite`` (which deletes that run's checkpoints,
    logs and final/, keeping other files) is set.
    """
    run_dir = Path(run_dir)
    claim_run_dir(run_dir, resume=resume, overwrite=overwrite)
    source = as_source(data, seed=cfg.seed)
    if eval_records is None:
        eval_records = load_eval_records(cfg)
    launch(
        cfg.nproc, cfg.threads, _rank_train, model, source, cfg, str(run_dir), eval_records, resume
    )
    return Path(run_dir) / "final"
