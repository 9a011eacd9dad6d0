"""Captioning (general, reward-model scored): "describe the image" with a caption from the scene graph.

``reward_model.style`` is ``model`` and the ground truth ``{"caption": ...}``; there is no
verifier. ``extra_info.scene_graph`` keeps the scene as JSON so that preference pairs can be
built by `corrupt_caption`: the same caption with exactly one fact (colour, shape, count or
position) made false.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from synth.render import render_scene
from synth.scene import (
    EASY_COLOURS,
    EASY_SHAPES,
    HARD_COLOURS,
    HARD_SHAPES,
    NUMBER_WORDS,
    Obj,
    Scene,
    count_word,
    indefinite,
    region_words,
    scatter,
)
from synth.task import Sample, TaskSpec

CORRUPTIONS = ("colour", "shape", "count", "position")
# Region centres of the 3×3 partition `region_words` names.
_REGION_CENTRES = [(x, y) for y in (167, 500, 833) for x in (167, 500, 833)]


@dataclass(frozen=True)
class CaptionConfig:
    width: int = 112
    height: int = 112
    ramp: int = 160  # background position ramp (synth.scene.Scene); hard: 0
    n_objects: tuple[int, int] = (1, 3)
    size_range: tuple[int, int] = (180, 260)
    grid: int = 50
    gap: int = 50
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS


PRESETS = {
    "easy": CaptionConfig(),
    "hard": CaptionConfig(
        ramp=0,
        width=224,
        height=224,
        n_objects=(3, 7),
        size_range=(100, 180),
        grid=10,
        gap=20,
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
    ),
}


def caption_of(scene: Scene) -> str:
    """The caption a scene graph implies: object count, then each object with its place."""
    n = len(scene.objects)
    objs = sorted(scene.objects, key=lambda o: (o.centre[1], o.centre[0]))
    parts = [f"{indefinite(o.name)} at the {region_words(o.box)}" for o in objs]
    if not parts:
        return "The image is empty."
    listed = parts[0] if n == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    head = "There is one shape" if n == 1 else f"There are {count_word(n)} shapes"
    return f"{head}: {listed}."


_HEAD = re.compile(r"There (?:is|are) (\w+) shapes?: (.*)")
_PHRASE = re.compile(r"an? (\w+) (\w+) at the (.+)")
FACT_SCORES = ("count", "colour", "shape", "position", "objects")


@dataclass(frozen=True)
class CaptionFacts:
    """What a caption in `caption_of`'s grammar states: the object count and, per object,
    (colour, shape, region words)."""

    count: int | None
    objects: tuple[tuple[str, str, str], ...]


def parse_caption(text: str) -> CaptionFacts | None:
    """The facts of a caption (the solution after ``</think>``, when there is one); None when
    its head is not ``There is one shape:`` / ``There are N shapes:`` / ``The image is empty.``.
    Object phrases that do not read ``a <colour> <shape> at the <place>`` are left out."""
    solution = text.rsplit("</think>", 1)[-1].strip()
    if solution == "The image is empty.":
        return CaptionFacts(0, ())
    head = _HEAD.fullmatch(solution)
    if head is None:
        return None
    word = head.group(1)
    count = (
        NUMBER_WORDS.index(word) if word in NUMBER_WORDS else int(word) if word.isdigit() else None
    )
    body = head.group(2).strip().removesuffix(".")
    objects = []
    for phrase in re.split(r", | and ", body):
        m = _PHRASE.fullmatch(phrase.strip())
        if m is not None:
            objects.append((m.group(1), m.group(2), m.group(3)))
    return CaptionFacts(count, tuple(objects))


def _f1(a: Counter, b: Counter) -> float:
    n = sum(a.values()) + sum(b.values())
    return 2 * sum((a & b).values()) / n if n else 1.0


def caption_fact_scores(response: str, reference: str) -> dict[str, float] | None:
    """How many of the reference caption's facts a response states, each in [0, 1].

    ``count``: the stated count is the reference's; ``colour``, ``shape``, ``position``: F1 of
    the multisets of that attribute over the listed objects; ``objects``: F1 of whole (colour,
    shape, place) objects. A response that is no caption scores 0 throughout; None when the
    reference itself does not parse (not a synth caption). Used to audit a reward model's
    caption scores against the scene, never as a training reward.
    """
    ref = parse_caption(reference)
    if ref is None:
        return None
    got = parse_caption(response)
    if got is None:
        return dict.fromkeys(FACT_SCORES, 0.0)
    scores = {"count": float(got.count == ref.count)}
    for i, name in enumerate(("colour", "shape", "position")):
        scores[name] = _f1(Counter(o[i] for o in got.objects), Counter(o[i] for o in ref.objects))
    scores["objects"] = _f1(Counter(got.objects), Counter(ref.objects))
    return scores


def _moved(o: Obj, centre: tuple[int, int]) -> Obj:
    hw, hh = (o.box[2] - o.box[0]) // 2, (o.box[3] - o.box[1]) // 2
    return Obj(o.shape, o.colour, (centre[0] - hw, centre[1] - hh, centre[0] + hw, centre[1] + hh))


def corrupt_scene(
    scene: Scene,
    rng: random.Random,
    kind: str | None = None,
    *,
    shapes: tuple[str, ...] = HARD_SHAPES,
    colours: tuple[str, ...] = HARD_COLOURS,
) -> tuple[Scene, str]:
    """The scene with one fact changed so that its caption differs; returns (scene, kind).

    ``kind`` is one of `CORRUPTIONS` (random when None): a colour or shape swapped, an object
    added or dropped (count), or an object moved to another named region (position).
    """
    if kind is None:
        kind = rng.choice(CORRUPTIONS)
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r}; known: {', '.join(CORRUPTIONS)}")
    objs = list(scene.objects)
    original = caption_of(scene)
    for _ in range(100):
        new = list(objs)
        if kind == "count" or not new:
            if new and (rng.random() < 0.5 or len(new) >= 9):
                new.pop(rng.randrange(len(new)))
            else:
                centre = rng.choice(_REGION_CENTRES)
                new.append(
                    _moved(Obj(rng.choice(shapes), rng.choice(colours), (0, 0, 200, 200)), centre)
                )
        else:
            i = rng.randrange(len(new))
            o = new[i]
            if kind == "colour":
                new[i] = Obj(o.shape, rng.choice([c for c in colours if c != o.colour]), o.box)
            elif kind == "shape":
                new[i] = Obj(rng.choice([s for s in shapes if s != o.shape]), o.colour, o.box)
            else:
                here = region_words(o.box)
                centres = [c for c in _REGION_CENTRES if region_words((*c, *c)) != here]
                new[i] = _moved(o, rng.choice(centres))
        corrupted = scene.with_objects(new)
        if caption_of(corrupted) != original:
            return corrupted, kind
    raise ValueError(f"could not corrupt the scene's {kind}")  # pragma: no cover - needs 100 misses


def corrupt_caption(
    scene_graph: str | dict[str, Any] | Scene, seed: int = 0, kind: str | None = None
) -> tuple[str, str]:
    """A caption of ``scene_graph`` (``extra_info.scene_graph``) with one fact false: (caption, kind)."""
    if isinstance(scene_graph, str):
        scene_graph = json.loads(scene_graph)
    scene = scene_graph if isinstance(scene_graph, Scene) else Scene.from_dict(scene_graph)
    corrupted, kind = corrupt_scene(scene, random.Random(seed), kind)
    return caption_of(corrupted), kind


def make(rng: random.Random, cfg: CaptionConfig) -> Sample:
    """A scene of shapes with its reference caption."""
    while True:
        n = rng.randint(*cfg.n_objects)
        kinds = [(rng.choice(cfg.shapes), rng.choice(cfg.colours)) for _ in range(n)]
        objects = scatter(rng, kinds, size_range=cfg.size_range, grid=cfg.grid, gap=cfg.gap)
        if objects is not None:
            break
    scene = Scene(cfg.width, cfg.height, tuple(objects), ramp=cfg.ramp)
    caption = caption_of(scene)
    names = " ".join(f"{o.colour} {o.shape};" for o in objects)
    return Sample(
        prompt="<image>Describe the image.",
        ground_truth={"caption": caption},
        reference_response=f"<think>{len(objects)} shapes: {names}</think>{caption}",
        content={"scene": scene.to_dict()},
        images=[render_scene(scene)],
        extra={"scene_graph": json.dumps(scene.to_dict(), sort_keys=True)},
    )


SPEC = TaskSpec(
    name="caption",
    ability="caption",
    style="model",
    verifier=None,
    config=CaptionConfig,
    presets=PRESETS,
    make=make,
    description="describe a scene of shapes; scored by the pairwise reward model",
)
