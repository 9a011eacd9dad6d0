"""The batch jobs: pretraining stages 0/1/2, SFT, and the base-model pipeline's datasets.

Stage N starts from stage N-1's ``final/`` (stage 0 from ``PretrainConfig.model``) and writes
``<run_dir>/stage<N>/``; a stage with ``continue_optimizer`` also loads the previous stage's
optimizer state (Seed1.5-VL's stage 2 continues stage 1 at a constant LR, no warmup).
"""

from __future__ import annotations

from pathlib import Path

from hybridrl.config import dump_config
from pretrain.config import BaseModelConfig, PretrainConfig, RopeConfig, SFTConfig, StageConfig
from pretrain.data import RecordSource, SynthMixSource, task_configs
from pretrain.trainer import train


def stage_dir(cfg: PretrainConfig, n: int) -> Path:
    return Path(cfg.run_dir) / f"stage{n}"


def resolve_stage(cfg: PretrainConfig, n: int) -> tuple[str | Path | tuple, StageConfig]:
    """The stage's start model and its config with the optimizer continuation resolved."""
    stage = cfg.stage(n)
    if n == 0:
        start: str | Path | tuple = cfg.model
        if cfg.rope is not None:
            start = fresh_model(cfg.model, stage.seed, cfg.rope)
    else:
        start = stage_dir(cfg, n - 1) / "final"
        if not (start / "config.json").is_file():
            raise FileNotFoundError(f"stage {n} starts from {start}: run stage {n - 1} first")
    if stage.continue_optimizer:
        if n == 0:
            raise ValueError("stage 0 has no previous stage whose optimizer it could continue")
        stage = stage.model_copy(update={"init_optimizer_from": str(start)})
    return start, stage


def fresh_model(preset: str, seed: int, rope: RopeConfig) -> tuple:
    """(model, processor) of a vlm preset with its M-RoPE theta and sections replaced."""
    import torch
    from transformers import Qwen2VLForConditionalGeneration

    from vlm.config import PRESETS
    from vlm.model import create

    if preset not in PRESETS:
        raise ValueError(f"rope settings apply to a fresh preset model, not {preset!r}")
    model, processor = create(preset, seed=seed)
    config = model.config
    params = dict(config.text_config.rope_parameters)
    half = config.text_config.hidden_size // config.text_config.num_attention_heads // 2
    params["rope_theta"] = rope.theta
    if rope.mrope_section is not None:
        if sum(rope.mrope_section) != half or len(rope.mrope_section) != 3:
            raise ValueError(f"mrope_section must be 3 numbers summing to {half} for {preset!r}")
        params["mrope_section"] = list(rope.mrope_section)
    config.text_config.rope_parameters = params
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = Qwen2VLForConditionalGeneration(config)
    fresh.generation_config = model.generation_config
    fresh.eval()
    return fresh, processor


def run_stage(
    cfg: PretrainConfig, n: int, *, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train pretraining stage ``n``; returns its final checkpoint dir."""
    start, stage = resolve_stage(cfg, n)
    source = SynthMixSource(
        stage.mix, seed=stage.seed, difficulty=cfg.synth.difficulty, task_overrides=cfg.synth.tasks
    )
    out = stage_dir(cfg, n)
    dump_config(cfg, out / "pretrain_config.yaml")
    return train(start, source, stage, out, resume=resume, overwrite=overwrite)


def run_sft(cfg: SFTConfig, *, resume: bool = False, overwrite: bool = False) -> Path:
    """Supervised fine-tuning on prompt/response records; returns the final checkpoint dir."""
    source = RecordSource(cfg.data, field_name=cfg.response_field, seed=cfg.train.seed)
    dump_config(cfg, Path(cfg.run_dir) / "sft_config.yaml")
    final = train(cfg.model, source, cfg.train, cfg.run_dir, resume=resume, overwrite=overwrite)
    if cfg.export_to:
        from pretrain.checkpoint import export_model

        export_model(final, Path(cfg.export_to), with_optimizer=False)
    return final


def make_datasets(cfg: BaseModelConfig) -> list[Path]:
    """Write each configured synthetic dataset to ``out_dir/<name>.parquet``."""
    import synth
    from hybridrl.records import write_records

    configs = task_configs(cfg.synth.difficulty, cfg.synth.tasks)
    written = []
    for name, spec in cfg.datasets.items():
        records = synth.generate(
            spec.tasks,
            spec.n,
            seed=spec.seed,
            split=spec.split,
            difficulty=cfg.synth.difficulty,
            configs={t: configs[t] for t in spec.tasks},
        )
        written.append(write_records(records, Path(cfg.out_dir) / f"{name}.parquet"))
    return written
