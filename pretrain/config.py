"""Typed configs of the trainer, the pretraining stages, SFT and the base-model pipeline.

One `TrainConfig` drives every supervised run (a pretraining stage, SFT, the reward model's
training); `PretrainConfig` holds three of them (``stage0``..``stage2``) plus the synthetic
data they draw from. Files live in ``configs/`` and load with `hybridrl.config.load_config`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from pretrain.schedule import Schedule

# What a run updates: the MLP adapter alone (stage 0), everything (stages 1-2), or all but the
# vision encoder (SFT, as the paper freezes it there).
Trainable = Literal["adapter", "all", "no_vision"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OptimConfig(_Section):
    """AdamW and its LR schedule (the paper: betas 0.9/0.95, weight decay 0.1)."""

    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0, description="cosine floor; ignored by 'constant'")
    schedule: Schedule = "cosine"
    warmup_steps: int = Field(0, ge=0)
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = Field(0.1, ge=0, description="on matrices only, not norms or biases")
    grad_clip: float = Field(1.0, ge=0, description="global grad-norm clip (0: off)")
    vision_lr_scale: float = Field(
        1.0, gt=0, description="LR factor of the vision encoder and merger (1: the LM's LR)"
    )

    @model_validator(mode="after")
    def _floor_below_peak(self) -> OptimConfig:
        if self.min_lr > self.lr:
            raise ValueError(f"min_lr ({self.min_lr}) is above lr ({self.lr})")
        return self


class EvalConfig(_Section):
    """Held-out evaluation during and after training: greedy generation, verifiers in process."""

    data: str | None = Field(None, description="prompt-record parquet/JSONL; None: no eval")
    n_per_task: int = Field(32, ge=1, description="records per task (first ones of the file)")
    every: int = Field(0, ge=0, description="evaluate every N steps (0: only at the end)")
    batch_size: int = Field(32, ge=1)
    max_new_tokens: int = Field(160, ge=1)
    select_best: bool = Field(False, description="final/ = the checkpoint of best mean accuracy")


class TrainConfig(_Section):
    """One supervised run: loss on target tokens only, AdamW under DeepSpeed, checkpoints."""

    name: str = "train"
    seed: int = 0
    trainable: Trainable = "no_vision"
    optim: OptimConfig = Field(default_factory=OptimConfig)
    # Length of the run: the first of steps, tokens, epochs that is set.
    steps: int | None = Field(None, ge=1)
    tokens: float | None = Field(
        None, gt=0, description="token budget; steps = tokens / (global_batch * seq_len)"
    )
    epochs: float | None = Field(None, gt=0, description="passes over a finite dataset")
    global_batch: int = Field(32, ge=1, description="samples per optimizer step, all ranks")
    micro_batch: int = Field(32, ge=1, description="samples per forward on one rank")
    micro_tokens: int | None = Field(
        None, ge=1, description="cap on a forward's padded tokens (samples x longest)"
    )
    seq_len: int = Field(1024, ge=8, description="longer samples are skipped (and counted)")
    zero_stage: Literal[0, 1, 2] = 1
    nproc: int = Field(1, ge=1, description="data-parallel processes on this machine")
    threads: int | None = Field(
        None, ge=1, description="torch threads per rank (default: cores/nproc)"
    )
    balance: Literal["greedy", "round_robin"] = "greedy"
    save_every: int = Field(0, ge=0, description="checkpoint every N steps (0: only the final)")
    keep_checkpoints: int = Field(2, ge=1, description="newest step_N dirs kept (plus the best)")
    log_every: int = Field(10, ge=1)
    init_optimizer_from: str | None = Field(
        None, description="a run's final/ dir whose optimizer state this run continues (stage 2)"
    )
    eval: EvalConfig = Field(default_factory=EvalConfig)
    prefetch: bool = Field(True, description="prepare the next batch while this one trains")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.global_batch < self.nproc:
            raise ValueError(
                f"global_batch ({self.global_batch}) must be at least nproc ({self.nproc})"
            )
        return self

    def total_steps(self, dataset_size: int | None = None) -> int:
        """Optimizer steps of the run, from steps, tokens or epochs (first one set)."""
        if self.steps is not None:
            return self.steps
        if self.tokens is not None:
            return max(1, round(self.tokens / (self.global_batch * self.seq_len)))
        if self.epochs is not None:
            if dataset_size is None:
                raise ValueError("epochs need a finite dataset; set steps or tokens instead")
            return max(1, round(self.epochs * dataset_size / self.global_batch))
        raise ValueError("set one of steps, tokens or epochs for the length of the run")


class SynthConfig(_Section):
    """Synthetic tasks the pretraining views and datasets are drawn from."""

    difficulty: Literal["easy", "hard"] = "easy"
    tasks: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="per-task config fields over the difficulty preset"
    )


class RopeConfig(_Section):
    """The LM's M-RoPE for a model created from a preset.

    Qwen2-VL splits the rotary frequencies into (time, height, width) sections in that order,
    so width gets the lowest frequencies: with the tiny preset's 16 frequency pairs and theta
    10,000, image tokens 0..3 apart in width differ by under 0.01 rad, and the LM cannot tell
    left from right. A small theta and wider spatial sections make positions visible.
    """

    theta: float = Field(10000.0, gt=0)
    mrope_section: list[int] | None = Field(
        None, description="frequency pairs for (time, height, width); sum = head_dim / 2"
    )


class StageConfig(TrainConfig):
    """A pretraining stage: a `TrainConfig` plus its data mixture (view name -> weight)."""

    mix: dict[str, float] = Field(default_factory=dict)
    continue_optimizer: bool = Field(
        False, description="load the previous stage's optimizer state (the paper's stage 2)"
    )


class PretrainConfig(_Section):
    """Stages 0/1/2 of one profile (``tiny`` runs here; ``paper`` documents Seed1.5-VL's values)."""

    profile: str = "tiny"
    run_dir: str = "runs/base"
    common: dict[str, Any] = Field(
        default_factory=dict, description="settings merged under every stage (stage wins)"
    )
    model: str = Field("tiny", description="stage 0's start: a vlm preset name or a checkpoint dir")
    rope: RopeConfig | None = Field(
        None, description="M-RoPE settings of a fresh preset model (None: the preset's own)"
    )
    synth: SynthConfig = Field(default_factory=SynthConfig)
    stage0: StageConfig
    stage1: StageConfig
    stage2: StageConfig

    @model_validator(mode="before")
    @classmethod
    def _merge_common(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("common"), dict):
            data = dict(data)
            for key in ("stage0", "stage1", "stage2"):
                if isinstance(data.get(key), dict):
                    data[key] = _deep_merge(data["common"], data[key])
        return data

    def stage(self, n: int) -> StageConfig:
        if n not in (0, 1, 2):
            raise ValueError(f"stage must be 0, 1 or 2, got {n}")
        return getattr(self, f"stage{n}")


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


class SFTConfig(_Section):
    """Supervised fine-tuning on prompt/response records (LongCoT cold start)."""

    model: str = Field(..., description="checkpoint dir to start from (or a vlm preset)")
    data: list[str] = Field(..., min_length=1, description="prompt-record parquet/JSONL files")
    run_dir: str = "runs/sft"
    response_field: str = Field(
        "auto", description="'auto': extra_info.response, else extra_info.reference_response"
    )
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(name="sft", epochs=1))
    export_to: str | None = Field(None, description="also copy final/ (weights only) here")


class DatasetSpec(_Section):
    """One generated prompt-record file of the base-model pipeline."""

    split: Literal["train", "test"] = "train"
    n: int = Field(..., ge=1)
    seed: int = 0
    tasks: list[str] = Field(..., min_length=1)


class BaseModelConfig(_Section):
    """The `make base-model` pipeline's data: synthetic datasets written as parquet."""

    out_dir: str = "runs/base-model/data"
    synth: SynthConfig = Field(default_factory=SynthConfig)
    datasets: dict[str, DatasetSpec]
