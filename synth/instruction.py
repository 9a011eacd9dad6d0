"""Visual instruction following: describe a scene under IFEval-style constraints.

Ground truth ``{"constraints": [{"id": ..., "kwargs": {...}}]}`` for the `instruction` verifier,
with IFEval ids (``change_case:english_lowercase``, ``change_case:english_capital``,
``punctuation:no_comma``, ``length_constraints:number_words``,
``detectable_format:json_format``) and ``regex`` for what IFEval lacks (required JSON keys).
"Exactly N words" is the pair "at least N" and "less than N+1". The reference response
satisfies every constraint, think text included.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from typing import Any

from synth.render import render_scene
from synth.scene import (
    EASY_COLOURS,
    EASY_SHAPES,
    HARD_COLOURS,
    HARD_SHAPES,
    Scene,
    indefinite,
    region_words,
    scatter,
)
from synth.task import Sample, TaskSpec

# Constraint families a prompt can draw; `_COMPATIBLE` keeps a draw satisfiable.
FAMILIES = (
    "lowercase",
    "uppercase",
    "no_comma",
    "words_at_least",
    "words_less_than",
    "words_exactly",
    "json",
)
_CONFLICTS = {
    frozenset({"lowercase", "uppercase"}),
    frozenset({"json", "uppercase"}),
    frozenset({"json", "no_comma"}),
    frozenset({"json", "words_at_least"}),
    frozenset({"json", "words_less_than"}),
    frozenset({"json", "words_exactly"}),
    frozenset({"words_at_least", "words_less_than"}),
    frozenset({"words_at_least", "words_exactly"}),
    frozenset({"words_less_than", "words_exactly"}),
}
JSON_KEYS = ("count", "colors", "shapes", "positions")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class InstructionConfig:
    width: int = 112
    height: int = 112
    ramp: int = 160  # background position ramp (synth.scene.Scene); hard: 0
    n_objects: tuple[int, int] = (1, 2)
    n_constraints: tuple[int, int] = (1, 1)
    families: tuple[str, ...] = FAMILIES
    size_range: tuple[int, int] = (200, 280)
    grid: int = 50
    gap: int = 50
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS


PRESETS = {
    "easy": InstructionConfig(),
    "hard": InstructionConfig(
        ramp=0,
        width=224,
        height=224,
        n_objects=(2, 5),
        n_constraints=(2, 3),
        size_range=(100, 180),
        grid=10,
        gap=20,
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
    ),
}


def count_words(text: str) -> int:
    """Words as IFEval counts them: runs of word characters."""
    return len(_WORD.findall(text))


def _pick_families(rng: random.Random, cfg: InstructionConfig) -> list[str]:
    k = rng.randint(*cfg.n_constraints)
    for _ in range(100):
        picked = sorted(rng.sample(cfg.families, min(k, len(cfg.families))))
        if not any(frozenset({a, b}) in _CONFLICTS for a in picked for b in picked if a < b):
            return picked
    raise ValueError(f"cannot draw {k} compatible constraints from {cfg.families}")


def describe(scene: Scene) -> str:
    """A comma-free, lowercase description: 'a red circle at the top left and a blue square ...'."""
    objs = sorted(scene.objects, key=lambda o: (o.centre[1], o.centre[0]))
    return " and ".join(f"{indefinite(o.name)} at the {region_words(o.box)}" for o in objs)


def as_json(scene: Scene, keys: list[str]) -> str:
    """The scene's facts as a compact JSON object with the given keys."""
    objs = sorted(scene.objects, key=lambda o: (o.centre[1], o.centre[0]))
    facts: dict[str, Any] = {
        "count": len(objs),
        "colors": [o.colour for o in objs],
        "shapes": [o.shape for o in objs],
        "positions": [region_words(o.box) for o in objs],
    }
    return json.dumps({k: facts[k] for k in keys})


def make(rng: random.Random, cfg: InstructionConfig) -> Sample:
    """A scene, a description request with constraints, and a response meeting them."""
    while True:
        n = rng.randint(*cfg.n_objects)
        kinds = [(rng.choice(cfg.shapes), rng.choice(cfg.colours)) for _ in range(n)]
        objects = scatter(rng, kinds, size_range=cfg.size_range, grid=cfg.grid, gap=cfg.gap)
        if objects is not None:
            break
    scene = Scene(cfg.width, cfg.height, tuple(objects), ramp=cfg.ramp)
    families = _pick_families(rng, cfg)
    constraints: list[dict[str, Any]] = []
    asks: list[str] = []
    if "json" in families:
        keys = sorted(rng.sample(JSON_KEYS, rng.randint(1, 3)), key=JSON_KEYS.index)
        answer = as_json(scene, keys)
        constraints.append({"id": "detectable_format:json_format", "kwargs": {}})
        for key in keys:
            pattern = f'"{key}"\\s*:'
            constraints.append({"id": "regex", "kwargs": {"pattern": pattern, "must_match": True}})
        asks.append("Answer as JSON with the keys " + " ".join(keys) + ".")
    else:
        answer = describe(scene)
    words = count_words(answer)
    if "words_exactly" in families:
        constraints.append(_words("at least", words))
        constraints.append(_words("less than", words + 1))
        asks.append(f"Use exactly {words} words.")
    if "words_at_least" in families:
        at_least = max(1, words - rng.randint(0, 3))
        constraints.append(_words("at least", at_least))
        asks.append(f"Use at least {at_least} words.")
    if "words_less_than" in families:
        less_than = words + rng.randint(1, 4)
        constraints.append(_words("less than", less_than))
        asks.append(f"Use fewer than {less_than} words.")
    if "no_comma" in families:
        constraints.append({"id": "punctuation:no_comma", "kwargs": {}})
        asks.append("Do not use commas.")
    if "lowercase" in families:
        constraints.append({"id": "change_case:english_lowercase", "kwargs": {}})
        asks.append("Use only lowercase letters.")
    think = f"{len(objects)} shape{'s' if len(objects) > 1 else ''} so {words} words"
    if "uppercase" in families:
        constraints.append({"id": "change_case:english_capital", "kwargs": {}})
        asks.append("Use only capital letters.")
        answer, think = answer.upper(), think.upper()
    asks.sort()
    return Sample(
        prompt="<image>Describe the image. " + " ".join(asks),
        ground_truth={"constraints": constraints},
        reference_response=f"<think>{think}</think>{answer}",
        content={"scene": scene.to_dict(), "constraints": constraints},
        images=[render_scene(scene)],
        extra={"constraints": ",".join(families)},
    )


def _words(relation: str, n: int) -> dict[str, Any]:
    return {
        "id": "length_constraints:number_words",
        "kwargs": {"relation": relation, "num_words": n},
    }


SPEC = TaskSpec(
    name="instruction",
    ability="instruction_following",
    style="rule",
    verifier="instruction",
    config=InstructionConfig,
    presets=PRESETS,
    make=make,
    description="describe a scene under IFEval-style constraints (case, commas, length, JSON)",
)
