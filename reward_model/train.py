"""``hybridrl rm train``: fine-tune the generative RM on preference pairs, then evaluate it.

RM training is supervised fine-tuning whose target is one token: each pair becomes two
examples (swap augmentation: chosen shown first → ``A``, chosen shown second → ``B``), run
through the shared DeepSpeed trainer (`pretrain.trainer.train`, loss on the target only).
The model starts from ``init``: the best policy checkpoint available (the SFT base model),
or a vlm preset name for a freshly initialised tiny model.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from pretrain.config import OptimConfig, Trainable, TrainConfig
from reward_model.evaluate import EVAL_FILE, evaluate_pairs, write_report
from reward_model.layout import QUOTE_QUESTION, clean_response, comparison_messages, differing_span
from reward_model.pairs import Example as PairExample
from reward_model.pairs import Pair, pairs_from_records, read_pairs, swap_augment, write_pairs

VERIFIABLE_TASKS = ("math", "grounding", "counting", "spot_difference", "puzzle", "instruction")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RMDataConfig(_Section):
    """Where the pairs come from: parquet files, or synthetic pairs drawn from `synth/`."""

    train: str | None = Field(None, description="pair parquet; None: synthetic train pairs")
    eval: str | None = Field(None, description="pair parquet; None: synthetic test-split pairs")
    seed: int = 0
    difficulty: Literal["easy", "hard"] = "easy"
    caption_prompts: int = Field(1500, ge=0, description="caption prompts (one pair per kind)")
    caption_kinds: list[str] = Field(
        default_factory=lambda: ["colour", "shape", "count", "position"],
        description="facts corrupted in rejected captions (synth.caption.CORRUPTIONS) and "
        "malformations (reward_model.pairs.MALFORMED)",
    )
    verifiable_prompts: int = Field(600, ge=0, description="prompts over verifiable_tasks")
    verifiable_tasks: list[str] = Field(default_factory=lambda: list(VERIFIABLE_TASKS))
    format_share: float = Field(0.1, ge=0, le=1, description="chance of a format pair per prompt")
    eval_caption_prompts: int = Field(100, ge=0)
    eval_verifiable_prompts: int = Field(120, ge=0)
    caption_sft_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="extra image->caption examples per pair example (dense grounding signal)",
    )
    caption_max_objects: int | None = Field(
        None,
        ge=0,
        description="keep only the caption (and malformed-caption) pairs whose chosen caption "
        "names at most this many objects (the first stage of the default curriculum); other "
        "pairs are kept",
    )
    quote_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="extra examples per pair example that ask, in the same layout, for the "
        "better response's words where the two differ (supervises the verdict's evidence)",
    )

    @field_validator("caption_kinds")
    @classmethod
    def _known_kinds(cls, kinds: list[str]) -> list[str]:
        from reward_model.pairs import check_caption_kinds

        return check_caption_kinds(kinds)


class RMOptimConfig(OptimConfig):
    """AdamW for RM fine-tuning: no weight decay on a one-token objective, short warmup."""

    min_lr: float = 1e-4
    warmup_steps: int = 10
    weight_decay: float = 0.0


class RMTrainerConfig(TrainConfig):
    """The shared trainer's config with RM defaults (a partial YAML section keeps them)."""

    name: str = "rm"
    trainable: Trainable = "all"
    epochs: float | None = 1.0
    optim: RMOptimConfig = Field(default_factory=RMOptimConfig)


class RMTrainConfig(_Section):
    """A reward-model run: start model, layout, data, and the shared trainer's settings."""

    run_dir: str = "runs/rm"
    init: str = Field("tiny", description="checkpoint dir (e.g. the SFT base model) or vlm preset")
    strip_think: bool = Field(True, description="hide <think> content from the RM (tags stay)")
    data: RMDataConfig = Field(default_factory=RMDataConfig)
    train: RMTrainerConfig = Field(default_factory=RMTrainerConfig)
    eval_batch_size: int = Field(32, ge=1, description="pairs per forward in evaluation")
    export_to: str | None = Field(None, description="also copy final/ (weights, eval) here")


# --------------------------------------------------------------------------- data


def synthetic_pairs(cfg: RMDataConfig, split: Literal["train", "test"]) -> list[Pair]:
    """Caption, wrong-answer and format pairs from freshly drawn synth records of ``split``."""
    from synth.registry import generate

    train = split == "train"
    n_caption = cfg.caption_prompts if train else cfg.eval_caption_prompts
    n_verifiable = cfg.verifiable_prompts if train else cfg.eval_verifiable_prompts
    seed = cfg.seed if train else cfg.seed + 1
    records = []
    if n_caption:
        records += generate("caption", n_caption, seed=seed, split=split, difficulty=cfg.difficulty)
    if n_verifiable and cfg.verifiable_tasks:
        records += generate(
            cfg.verifiable_tasks, n_verifiable, seed=seed, split=split, difficulty=cfg.difficulty
        )
    if not records:
        raise ValueError(
            f"no {split} prompts requested: set data.caption_prompts or verifiable_prompts"
        )
    return list(
        pairs_from_records(
            records, seed=seed, caption_kinds=cfg.caption_kinds, format_share=cfg.format_share
        )
    )


def build_synthetic_pairs(cfg: RMDataConfig, out: str | Path) -> dict[str, tuple[Path, Counter]]:
    """Write OUT/train.parquet and OUT/eval.parquet; returns each path with its kind counts."""
    out = Path(out)
    written = {}
    for name, split in (("train", "train"), ("eval", "test")):
        pairs = synthetic_pairs(cfg, split)
        written[name] = (
            write_pairs(pairs, out / f"{name}.parquet"),
            Counter(p.kind for p in pairs),
        )
    return written


def within_objects(pair: Pair, max_objects: int | None) -> bool:
    """False only for a caption pair (`caption/*` or `malformed/*`) whose chosen caption (synth's
    grammar) names more than ``max_objects`` objects; pairs of other kinds, and captions that do
    not parse, pass."""
    from synth.caption import parse_caption

    if max_objects is None or not pair.kind.startswith(("caption/", "malformed/")):
        return True
    facts = parse_caption(pair.chosen)
    return facts is None or facts.count is None or facts.count <= max_objects


def load_pairs(cfg: RMDataConfig) -> tuple[list[Pair], list[Pair]]:
    """(train, eval) pairs: from the configured files, else synthetic; both filtered by
    ``caption_max_objects``."""
    train = read_pairs(cfg.train) if cfg.train else synthetic_pairs(cfg, "train")
    held_out = read_pairs(cfg.eval) if cfg.eval else synthetic_pairs(cfg, "test")
    train = [p for p in train if within_objects(p, cfg.caption_max_objects)]
    held_out = [p for p in held_out if within_objects(p, cfg.caption_max_objects)]
    if not train:
        raise ValueError("no training pairs")
    if not held_out:
        raise ValueError("no held-out pairs to evaluate on")
    return train, held_out


def to_examples(
    examples: Sequence[PairExample],
    *,
    strip_think: bool,
    caption_sft_share: float = 0.0,
    quote_share: float = 0.0,
    seed: int = 0,
) -> list[Any]:
    """Trainer examples: the RM conversation with target ``A``/``B`` (images decoded once per pair)."""
    from pretrain.data import Example
    from vlm.processor import to_pil

    decoded: dict[int, list[Any]] = {}  # both orders of a pair share one decoded image list
    out = []
    for ex in examples:
        key = id(ex.images)
        if key not in decoded:
            decoded[key] = [to_pil(im) for im in ex.images]
        images = decoded[key]
        messages = comparison_messages(
            ex.prompt, ex.first, ex.second, n_images=len(images), strip_think=strip_think
        )
        out.append(
            Example(
                messages=messages,
                target=ex.target,
                images=images,
                domain=f"rm/{ex.kind.split('/')[0]}",
            )
        )
    if caption_sft_share > 0:
        out += _caption_examples(examples, decoded, caption_sft_share, seed)
    if quote_share > 0:
        out += _quote_examples(examples, decoded, quote_share, seed, strip_think)
    return out


def _quote_examples(
    examples: Sequence[PairExample],
    decoded: dict[int, list[Any]],
    share: float,
    seed: int,
    strip_think: bool,
) -> list[Any]:
    """Auxiliary examples: a pair example's prompt and order with the quote question, whose
    target is the better response's words where the two differ (`layout.differing_span`).

    The verdict composes two readings, each response's claim and the image's fact; on its
    own it does not leave the plateau for caption pairs (docs/reward-model.md). Asking in the
    same context for the right words themselves gives those readings a gradient of their own.
    """
    from pretrain.data import Example

    rng = random.Random(seed + 1)
    out = []
    for ex in examples:
        if rng.random() >= share:
            continue
        better, worse = (ex.first, ex.second) if ex.target == "A" else (ex.second, ex.first)
        span = differing_span(
            clean_response(better, strip_think=strip_think),
            clean_response(worse, strip_think=strip_think),
        )
        if not span:
            continue
        images = decoded[id(ex.images)]
        messages = comparison_messages(
            ex.prompt,
            ex.first,
            ex.second,
            n_images=len(images),
            strip_think=strip_think,
            question=QUOTE_QUESTION,
        )
        out.append(Example(messages=messages, target=span, images=images, domain="rm/quote"))
    return out


def _caption_examples(
    examples: Sequence[PairExample], decoded: dict[int, list[Any]], share: float, seed: int
) -> list[Any]:
    """Image → reference caption examples from the caption pairs' chosen responses."""
    from pretrain.data import Example
    from reward_model.layout import normalise_prompt

    rng = random.Random(seed)
    out = []
    for ex in examples:
        if not ex.kind.startswith("caption/") or ex.target != "A" or rng.random() >= share:
            continue
        images = decoded[id(ex.images)]
        target = clean_response(ex.first, strip_think=True).replace("<think></think>", "")
        out.append(
            Example(
                messages=normalise_prompt(ex.prompt, len(images)),
                target=target,
                images=images,
                domain="caption",
            )
        )
    return out


# --------------------------------------------------------------------------- the run


@dataclass
class TrainResult:
    model_dir: Path
    eval_path: Path
    report: dict[str, Any]


def train(
    cfg: RMTrainConfig,
    *,
    log: Callable[[str], None] = print,
    resume: bool = False,
    overwrite: bool = False,
) -> TrainResult:
    """Build or read pairs, fine-tune with swap augmentation, save and evaluate the RM.

    A ``run_dir`` holding a previous run is refused unless ``resume`` (continue from its newest
    ``step_N``) or ``overwrite`` (start over), as in pretraining."""
    from hybridrl.config import dump_config
    from pretrain.trainer import claim_run_dir
    from pretrain.trainer import train as run_trainer
    from reward_model.model import RewardModel, write_rm_config

    run_dir = Path(cfg.run_dir)
    claim_run_dir(run_dir, resume=resume, overwrite=overwrite)  # before pairs and rm_config
    run_dir.mkdir(parents=True, exist_ok=True)
    dump_config(cfg, run_dir / "rm_config.yaml")
    _check_init(cfg.init)
    train_pairs, eval_pairs = load_pairs(cfg.data)
    kinds = Counter(p.kind.split("/")[0] for p in train_pairs)
    log(
        f"# {len(train_pairs)} train pairs ({dict(sorted(kinds.items()))}), {len(eval_pairs)} eval pairs"
    )
    examples = to_examples(
        swap_augment(train_pairs),
        strip_think=cfg.strip_think,
        caption_sft_share=cfg.data.caption_sft_share,
        quote_share=cfg.data.quote_share,
        seed=cfg.data.seed,
    )
    log(f"# {len(examples)} training examples (each pair in both orders), init {cfg.init}")
    final = run_trainer(cfg.init, examples, cfg.train, run_dir, resume=resume, overwrite=overwrite)

    write_rm_config(final, strip_think=cfg.strip_think)
    rm = RewardModel.load(final)
    # an RM trained to quote also reports whether its quote picks the right words
    report = evaluate_pairs(
        rm, eval_pairs, batch_size=cfg.eval_batch_size, evidence=cfg.data.quote_share > 0
    )
    report.update(model=str(final), init=cfg.init, train_pairs=len(train_pairs))
    write_report(report, run_dir / EVAL_FILE)
    eval_path = write_report(report, final / EVAL_FILE)
    if cfg.export_to:
        final, eval_path = _export(final, Path(cfg.export_to)), Path(cfg.export_to) / EVAL_FILE
        log(f"# exported to {final}")
    return TrainResult(final, eval_path, report)


def _export(final: Path, target: Path) -> Path:
    """Copy the model files of final/ (not the optimizer state) to ``target``."""
    import shutil

    if target.exists():
        if any(target.iterdir()) and not (target / "config.json").is_file():
            raise FileExistsError(f"export_to {str(target)!r} exists and is not a checkpoint dir")
        shutil.rmtree(target)  # an older export of a model
    target.mkdir(parents=True)
    for item in final.iterdir():
        if item.is_file() and not item.name.startswith("rng_"):
            shutil.copy2(item, target / item.name)
    return target


def _check_init(init: str) -> None:
    from vlm.config import PRESETS

    path = Path(init)
    if init in PRESETS and not path.exists():
        return
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"init {init!r} is neither a checkpoint dir (with config.json) nor a vlm preset "
            f"({', '.join(PRESETS)})"
        )
