"""Training examples and where they come from: prompt-record files, lists, and synthetic mixtures.

An `Example` is a conversation (``messages``, with ``<image>``/``<video>`` placeholders), its
media and the ``target`` text the model learns to continue with; the loss covers the target
(and the end-of-turn token) only. A source maps a global sample index to an example as a pure
function, so a run's data position is a single integer and resume is exact.

Pretraining views of the synthetic tasks (what a stage's ``mix`` names):

| view | task | prompt | target |
|---|---|---|---|
| ``caption`` | caption | "Describe the image." | the caption (no think) |
| ``objects`` | caption | "List the shapes." | ``blue square, red circle`` (sorted: no layout) |
| ``ocr`` | math | "Read the text." | the problem as drawn, e.g. ``15-3=`` |
| ``grounding`` | grounding | "Box the <colour> <shape>." | ``<bbox>…</bbox>`` only |
| ``counting`` | counting | the task prompt | a ``<point>`` per counted object, then the count |
| ``text`` | (none) | an arithmetic problem as text | the worked steps, e.g. ``12+7=19`` |
| ``sft/<task>`` | any task | the task prompt | its reference response ``<think>…</think>answer`` |
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from hybridrl.records import PromptRecord, load_image, read_records


@dataclass
class Example:
    """One supervised sample: chat messages (the prompt), media, and the target to learn."""

    messages: list[dict[str, Any]]
    target: str
    images: list[Any] = field(default_factory=list)  # anything vlm.to_pil reads
    videos: list[Any] = field(default_factory=list)  # vlm.Video or {"frames", "fps"}
    domain: str = "default"  # data_source: per-domain losses and scaling fits


class ExampleSource(Protocol):
    """Index -> example, deterministic; ``size`` is None for an endless stream."""

    size: int | None

    def get(self, index: int) -> Example: ...


def _mix_seed(*parts: object) -> int:
    text = "|".join(str(p) for p in parts)
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")


def epoch_order(n: int, epoch: int, seed: int) -> list[int]:
    """A fresh permutation of range(n) per epoch, a pure function of (n, epoch, seed)."""
    order = list(range(n))
    random.Random(_mix_seed("epoch", seed, epoch)).shuffle(order)
    return order


class ListSource:
    """A finite list of examples, reshuffled every epoch; index i is sample i of the stream."""

    def __init__(self, examples: Sequence[Example], *, seed: int = 0):
        if not examples:
            raise ValueError("no training examples given")
        self.examples = list(examples)
        self.size: int | None = len(self.examples)
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def get(self, index: int) -> Example:
        epoch, pos = divmod(index, len(self.examples))
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(len(self.examples), epoch, self.seed)}
        return self.examples[self._orders[epoch][pos]]


def response_of(record: PromptRecord, field_name: str = "auto") -> str:
    """The target of a prompt record: ``extra_info.<field>``; 'auto' prefers ``response``."""
    extra = record.extra_info.model_dump()
    names = ["response", "reference_response"] if field_name == "auto" else [field_name]
    for name in names:
        value = extra.get(name)
        if isinstance(value, str) and value:
            return value
    raise ValueError(
        f"record {record.extra_info.index} ({record.data_source}) has no "
        f"{' or '.join('extra_info.' + n for n in names)} to train on"
    )


def record_example(
    record: PromptRecord, *, field_name: str = "auto", base_dir: str | Path | None = None
) -> Example:
    """An `Example` from a prompt record (images decoded, videos as frame lists)."""
    from vlm.processor import Video

    videos = []
    for v in record.videos:
        frames = [load_image(f, base_dir=base_dir) for f in v.frames]
        videos.append(Video(frames=frames, fps=v.fps))
    return Example(
        messages=[m.model_dump() for m in record.prompt],
        target=response_of(record, field_name),
        images=[load_image(i, base_dir=base_dir) for i in record.images],
        videos=videos,
        domain=record.data_source,
    )


class RecordSource:
    """Prompt records (parquet/JSONL files or objects) as training examples, decoded lazily.

    Each file may carry the target as a top-level ``response`` column (read into
    ``extra_info.response``) or as ``extra_info.reference_response``.
    """

    def __init__(
        self,
        records: Sequence[PromptRecord] | Sequence[str | Path] | str | Path,
        *,
        field_name: str = "auto",
        seed: int = 0,
    ):
        paths: list[Path] = []
        if isinstance(records, str | Path):
            records = [records]
        loaded: list[tuple[PromptRecord, Path | None]] = []
        for item in records:
            if isinstance(item, PromptRecord):
                loaded.append((item, None))
            else:
                path = Path(item)
                paths.append(path)
                loaded.extend((r, path.parent) for r in read_records(path))
        if not loaded:
            raise ValueError(f"no records in {', '.join(map(str, paths)) or 'the given list'}")
        for record, _ in loaded:  # fail before training starts, naming the record
            response_of(record, field_name)
        self.records = loaded
        self.field_name = field_name
        self.size: int | None = len(loaded)
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def get(self, index: int) -> Example:
        epoch, pos = divmod(index, len(self.records))
        if epoch not in self._orders:
            self._orders = {epoch: epoch_order(len(self.records), epoch, self.seed)}
        record, base = self.records[self._orders[epoch][pos]]
        return record_example(record, field_name=self.field_name, base_dir=base)


# --------------------------------------------------------------------------- synthetic views

_POINT = re.compile(r"\((\d+),(\d+)\)")
_TEXT_KINDS = ("add", "sub", "mul", "muladd")


def _solution(reference: str) -> str:
    return reference.split("</think>", 1)[-1]


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def _sample_example(sample: Any, prompt: str, target: str, domain: str) -> Example:
    from vlm.processor import Video

    return Example(
        messages=_user(prompt),
        target=target,
        images=list(sample.images),
        videos=[Video(frames=list(frames), fps=fps) for frames, fps in sample.videos],
        domain=domain,
    )


def _caption(sample: Any) -> Example:
    return _sample_example(
        sample, "<image>Describe the image.", sample.ground_truth["caption"], "caption"
    )


def _objects(sample: Any) -> Example:
    # short and all about the image: which shapes of which colours (alphabetical: no layout)
    from synth.scene import Scene

    scene = Scene.from_dict(sample.content["scene"])
    names = sorted(f"{o.colour} {o.shape}" for o in scene.objects)
    return _sample_example(sample, "<image>List the shapes.", ", ".join(names), "objects")


def _drawn_options(sample: Any) -> None:
    if sample.content.get("options_in", "image") != "image":
        raise ValueError(
            "the options and pick views read the candidates drawn in a puzzle image; set "
            "synth.tasks.puzzle.options_in=image to draw them (the easy preset lists them "
            "in the prompt instead)"
        )


def _options(sample: Any) -> Example:
    # a puzzle image's answer row, letter by letter: which cell sits under which letter
    from synth.puzzle import LETTERS, Cell

    _drawn_options(sample)
    with_size = sample.content["rule"] == "grow"
    cells = [Cell(**o) for o in sample.content["options"]]
    names = ", ".join(f"{LETTERS[i]} {c.describe(with_size)}" for i, c in enumerate(cells))
    return _sample_example(sample, "<image>Name the options.", names, "options")


def _pick(sample: Any) -> Example:
    # the inverse of `options` and the puzzle's last step: the letter over one named candidate
    from synth.puzzle import LETTERS, Cell

    _drawn_options(sample)
    with_size = sample.content["rule"] == "grow"
    cells = [Cell(**o) for o in sample.content["options"]]
    i = random.Random(repr(sample.content["options"])).randrange(len(cells))
    prompt = f"<image>Which letter is the {cells[i].describe(with_size)}?"
    return _sample_example(sample, prompt, LETTERS[i], "pick")


def _ocr(sample: Any) -> Example:
    return _sample_example(sample, "<image>Read the text.", sample.extra["problem"], "ocr")


def _grounding(sample: Any, bridge: str = "") -> Example:
    # a short prompt: pretraining compute goes to the image and the box, not to instructions
    shape, colour = sample.content["target"]
    prompt = f"<image>{bridge}Box the {colour} {shape}."
    return _sample_example(sample, prompt, _solution(sample.reference_response), "grounding")


# sentences that may sit between a grounding image and its question (`grounding_varied`), so
# that the box cannot be read from the answer's distance to the image (bench/grounding_offset.py)
_BRIDGES = (
    "",
    "Here is a picture. ",
    "A scene of shapes. ",
    "Some shapes are drawn above. ",
    "Read the picture first, then answer. ",
    "The image shows a few coloured shapes on a shaded background. ",
)


def _grounding_varied(sample: Any) -> Example:
    return _grounding(sample, random.Random(repr(sample.content)).choice(_BRIDGES))


def _spot(sample: Any) -> Example:
    # the two images and the box of each change, no description: compute goes to the comparison
    prompt = "<image>" * len(sample.images) + "Box the differences."  # two, or side by side
    return _sample_example(sample, prompt, _solution(sample.reference_response), "spot")


def _counting(sample: Any) -> Example:
    think = sample.reference_response.split("</think>", 1)[0]
    points = "".join(f"<point>{x} {y}</point>" for x, y in _POINT.findall(think))
    count = sample.ground_truth["count"]
    return _sample_example(sample, sample.prompt, f"{points} {count}".strip(), "counting")


# view name -> (synth task it draws, mapping of the drawn sample)
VIEWS: dict[str, tuple[str, Callable[[Any], Example]]] = {
    "caption": ("caption", _caption),
    "objects": ("caption", _objects),
    "ocr": ("math", _ocr),
    "grounding": ("grounding", _grounding),
    "counting": ("counting", _counting),
    "options": ("puzzle", _options),
    "pick": ("puzzle", _pick),
    "grounding_varied": ("grounding", _grounding_varied),
    "spot": ("spot_difference", _spot),
}


def text_example(
    rng: random.Random, max_operand: int = 20, kinds: Sequence[str] = _TEXT_KINDS
) -> Example:
    """A text-only arithmetic problem with its worked steps (the ~5% text share of stage 1)."""
    from synth.stem import problem

    text, steps, _ = problem(rng, rng.choice(list(kinds)), max_operand)
    return Example(messages=_user(f"Compute {text}"), target=steps, domain="text")


def check_view(name: str) -> None:
    """Raise a clear error for a mix key that names no view."""
    from synth import TASKS

    if name in VIEWS or name == "text":
        return
    if name.startswith("sft/") and name[4:] in TASKS:
        return
    known = [*VIEWS, "text", *(f"sft/{t}" for t in TASKS)]
    raise ValueError(f"unknown data view {name!r}; known: {', '.join(known)}")


class SynthMixSource:
    """An endless stream of synthetic train-split examples, views drawn by mixture weight.

    Sample ``i`` is a pure function of (seed, i): its view is drawn from a private RNG and its
    task sample comes from synth's per-sample RNG, redrawn until its content hash falls in the
    train split, so nothing a run trains on can appear in the test split.
    """

    def __init__(
        self,
        mix: Mapping[str, float],
        *,
        seed: int = 0,
        difficulty: str = "easy",
        task_overrides: Mapping[str, Mapping[str, Any]] | None = None,
    ):
        if not mix:
            raise ValueError("the data mix is empty")
        for name, weight in mix.items():
            check_view(name)
            if weight < 0:
                raise ValueError(f"mix weight of {name!r} is negative ({weight})")
        if sum(mix.values()) <= 0:
            raise ValueError("the data mix has no positive weight")
        self.names = list(mix)
        self.weights = [float(mix[n]) for n in self.names]
        self.seed = seed
        self.difficulty = difficulty
        self.configs = task_configs(difficulty, task_overrides or {})
        self.size: int | None = None

    def get(self, index: int) -> Example:
        rng = random.Random(_mix_seed("mix", self.seed, index))
        name = rng.choices(self.names, weights=self.weights)[0]
        if name == "text":  # the arithmetic the math task asks for, without the image
            math = self.configs["math"]
            kinds = [k for k in math.kinds if k in _TEXT_KINDS] or _TEXT_KINDS
            return text_example(rng, math.max_operand, kinds)
        if name.startswith("sft/"):
            task = name[4:]
            sample = draw_sample(task, self.configs[task], self.seed, self.difficulty, index)
            return _sample_example(sample, sample.prompt, sample.reference_response, name)
        task, view = VIEWS[name]
        return view(draw_sample(task, self.configs[task], self.seed, self.difficulty, index))


def task_configs(difficulty: str, overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Each task's config: its difficulty preset with the given fields replaced."""
    from synth import TASKS, get_task
    from synth.task import config_with

    for name in overrides:
        get_task(name)
    out = {}
    for name, spec in TASKS.items():
        cfg = spec.preset(difficulty)
        fields = dict(overrides.get(name, {}))
        # YAML gives lists where the dataclasses hold tuples (ranges, shape names)
        fields = {k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()}
        out[name] = config_with(cfg, fields) if fields else cfg
    return out


def draw_sample(task: str, config: Any, seed: int, difficulty: str, index: int) -> Any:
    """Synth sample ``index`` of ``task`` in the train split (redrawn until its hash is train's)."""
    from synth import get_task
    from synth.task import content_hash, sample_rng, split_of

    spec = get_task(task)
    for attempt in range(512):
        sample = spec.make(sample_rng(seed, "pretrain", task, difficulty, index, attempt), config)
        if split_of(content_hash(task, sample)) == "train":
            return sample
    raise RuntimeError(f"task {task!r}: no train-split sample in 512 draws")  # pragma: no cover
