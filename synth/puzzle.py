"""Visual pattern completion: a sequence (or a 3×3 grid) of shapes with one missing cell, and four
candidates.

The candidates are drawn in the image under the letters A–D and the answer is the letter
(``options_in="image"``, the hard preset), or they are named in the prompt, ``Which of red
circle, green square, blue square or green circle completes the sequence?``, and the answer is
the name (``options_in="text"``, the easy preset: the image holds the pattern alone).

Ground truth for the `puzzle` verifier: ``{"answer": "green circle", "aliases": []}`` by name;
``{"answer": "B", "aliases": ["red circle"]}`` by letter (the alias, the right candidate's
description, is given only when it names one candidate alone). Easy puzzles are 112×56: three
cells and a "?" in 28-pixel cells (one merged ViT token each).
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from PIL import Image, ImageDraw

from synth.render import backdrop, draw_shape, text_line
from synth.scene import EASY_COLOURS, EASY_SHAPES, HARD_COLOURS, HARD_SHAPES, count_word, noun
from synth.task import Sample, TaskSpec

LETTERS = "ABCD"
SIZE_WORDS = ("tiny", "small", "medium", "large")
SEQUENCE_RULES = ("colour_cycle", "shape_cycle", "grow", "count", "shape_colour_cycle")
GRID_RULES = ("row_shape_col_colour", "latin_shapes")


@dataclass(frozen=True)
class Cell:
    """What one puzzle cell shows: ``count`` copies of a shape at size level ``size`` (0–3)."""

    shape: str
    colour: str
    size: int = 3
    count: int = 1

    def describe(self, with_size: bool) -> str:
        size = f"{SIZE_WORDS[self.size]} " if with_size else ""
        if self.count == 1:
            return f"{size}{self.colour} {self.shape}"
        return f"{count_word(self.count)} {size}{self.colour} {noun(self.shape, self.count)}"


@dataclass(frozen=True)
class PuzzleConfig:
    cell: int = 28  # pixels per cell (28 = one merged ViT token)
    ramp: int = 0  # background position ramp (synth.render.backdrop); off: it did not help (docs)
    shown: tuple[int, int] = (3, 3)  # sequence cells before the "?", inclusive range
    # "count" (1-4 small copies in one cell) keeps the easy preset short of 100% (docs/pretrain.md)
    rules: tuple[str, ...] = ("colour_cycle", "shape_cycle", "grow", "count")
    grid_share: float = 0.0  # chance of a 3×3 grid puzzle instead of a sequence
    shapes: tuple[str, ...] = EASY_SHAPES
    colours: tuple[str, ...] = EASY_COLOURS
    # "text": the candidates are named in the prompt and answered by name. The tiny model names
    # the right candidate in its think nearly always but finds the letter that goes with it
    # neither over the drawn candidates nor after the name in the prompt (docs/pretrain.md)
    options_in: Literal["image", "text"] = "text"


PRESETS = {
    "easy": PuzzleConfig(),
    "hard": PuzzleConfig(
        shown=(3, 5),
        rules=SEQUENCE_RULES,
        grid_share=0.5,
        shapes=HARD_SHAPES,
        colours=HARD_COLOURS,
        options_in="image",
    ),
}


def _sequence(rng: random.Random, cfg: PuzzleConfig, rule: str, n: int) -> tuple[list[Cell], str]:
    """``n`` shown cells plus the answer cell last, and the rule in words."""
    shape, colour = rng.choice(cfg.shapes), rng.choice(cfg.colours)
    period = rng.choice((2, 3)) if n >= 4 else 2
    if rule == "colour_cycle":
        cols = rng.sample(cfg.colours, period)
        return [Cell(shape, cols[i % period]) for i in range(n + 1)], "colours repeat " + " ".join(
            cols
        )
    if rule == "shape_cycle":
        shapes = rng.sample(cfg.shapes, period)
        return [
            Cell(shapes[i % period], colour) for i in range(n + 1)
        ], "shapes repeat " + " ".join(shapes)
    if rule == "shape_colour_cycle":
        shapes, cols = rng.sample(cfg.shapes, period), rng.sample(cfg.colours, period)
        cells = [Cell(shapes[i % period], cols[i % period]) for i in range(n + 1)]
        return cells, "pairs repeat " + " ".join(
            f"{c} {s}" for s, c in zip(shapes, cols, strict=True)
        )
    if rule == "grow":
        start = rng.randint(0, len(SIZE_WORDS) - 1 - min(n, len(SIZE_WORDS) - 1))
        sizes = [min(start + i, len(SIZE_WORDS) - 1) for i in range(n + 1)]
        if len(set(sizes)) < n + 1:  # the sequence is longer than the size levels: shrink instead
            sizes = [len(SIZE_WORDS) - 1 - (i % len(SIZE_WORDS)) for i in range(n + 1)]
            return [Cell(shape, colour, s) for s in sizes], "sizes shrink then restart"
        return [Cell(shape, colour, s) for s in sizes], "sizes grow"
    if rule == "count":
        start = rng.randint(1, 2)
        counts = [start + i for i in range(n + 1)]
        if counts[-1] > 4:
            counts = [1 + (i % 4) for i in range(n + 1)]
        return [Cell(shape, colour, 2, c) for c in counts], "counts go " + " ".join(
            str(c) for c in counts[:-1]
        )
    raise ValueError(
        f"unknown puzzle rule {rule!r}; known: {', '.join(SEQUENCE_RULES + GRID_RULES)}"
    )


def _grid(rng: random.Random, cfg: PuzzleConfig, rule: str) -> tuple[list[Cell], str]:
    """Nine cells in row order (the last is the answer) and the rule in words."""
    shapes, cols = rng.sample(cfg.shapes, 3), rng.sample(cfg.colours, 3)
    if rule == "row_shape_col_colour":
        cells = [Cell(shapes[r], cols[c]) for r in range(3) for c in range(3)]
        return cells, "each row one shape, each column one colour"
    if rule == "latin_shapes":
        cells = [Cell(shapes[(r + c) % 3], cols[r]) for r in range(3) for c in range(3)]
        return cells, "each row has every shape once, one colour per row"
    raise ValueError(f"unknown grid rule {rule!r}; known: {', '.join(GRID_RULES)}")


def _wrong_options(
    rng: random.Random, cfg: PuzzleConfig, answer: Cell, cells: list[Cell], vary_size: bool
) -> list[Cell]:
    """Three distinct cells unlike the answer, mostly one attribute away from it.

    Sizes vary only in size puzzles, so that elsewhere no two candidates differ by size alone.
    """
    pool = {replace(answer, colour=c) for c in cfg.colours}
    pool |= {replace(answer, shape=s) for s in cfg.shapes}
    pool |= {replace(answer, size=z) for z in range(len(SIZE_WORDS))} if vary_size else set()
    pool |= {replace(answer, count=k) for k in range(1, 5)} if answer.count > 1 else set()
    pool |= set(cells)  # cells seen in the puzzle are the tempting wrong answers
    pool.discard(answer)
    ordered = sorted(pool, key=lambda c: (c.shape, c.colour, c.size, c.count))
    return rng.sample(ordered, 3)


def _draw_cell(image: Image.Image, cell: Cell, x: int, y: int, side: int) -> None:
    draw = ImageDraw.Draw(image)
    inner = side - 4
    if cell.count == 1:
        s = max(4, round(inner * (0.4 + 0.2 * cell.size)))
        off = (side - s) // 2
        draw_shape(draw, cell.shape, (x + off, y + off, x + off + s, y + off + s), cell.colour)
        return
    half = inner // 2
    spots = [(0, 0), (1, 1), (1, 0), (0, 1)][: cell.count]
    for i, j in spots:
        px, py = x + 2 + i * half, y + 2 + j * half
        draw_shape(draw, cell.shape, (px + 1, py + 1, px + half - 1, py + half - 1), cell.colour)


def _question_mark(image: Image.Image, x: int, y: int, side: int) -> None:
    ImageDraw.Draw(image).rectangle((x, y, x + side - 1, y + side - 1), outline=(0, 0, 0))
    text_line(image, "?", x=x + side / 2, y=y + side / 2, size=side * 2 // 3, anchor="mm")


def render(shown: list[Cell], options: list[Cell], cfg: PuzzleConfig, grid: bool) -> Image.Image:
    """Puzzle cells (sequence row or 3×3 grid), above a row of candidates lettered A–D when the
    options are drawn (``options`` empty: the puzzle alone)."""
    c = cfg.cell
    cols = 3 if grid else len(shown) + 1
    width = max(cols, 4 if options else 1) * c
    rows = 3 if grid else 1
    top = c // 2  # a half-cell margin above the puzzle
    label_y = top + rows * c + c // 2
    opt_y = label_y + c // 2
    height = opt_y + c + c // 2 if options else top + rows * c + c // 2
    height += -height % 28  # Qwen2-VL sizes are multiples of 28
    width += -width % 28
    image = backdrop(width, height, ramp=cfg.ramp)
    x0 = (width - cols * c) // 2
    for i, cell in enumerate(shown):
        r, k = divmod(i, cols)
        _draw_cell(image, cell, x0 + k * c, top + r * c, c)
    qi = len(shown)
    _question_mark(image, x0 + (qi % cols) * c, top + (qi // cols) * c, c)
    ox = (width - 4 * c) // 2
    for i, cell in enumerate(options):
        text_line(
            image, LETTERS[i], x=ox + i * c + c / 2, y=label_y + c / 4, size=c // 2, anchor="mm"
        )
        _draw_cell(image, cell, ox + i * c, opt_y, c)
    return image


_NAMED = re.compile(r"Which of (.+?) or (.+?) completes the ")


def named_options(prompt: str) -> list[str]:
    """The candidates a by-name puzzle prompt lists, in order ([] for any other prompt)."""
    found = _NAMED.search(prompt)
    return [*found.group(1).split(", "), found.group(2)] if found else []


def make(rng: random.Random, cfg: PuzzleConfig) -> Sample:
    """One pattern-completion puzzle with its lettered answer."""
    grid = rng.random() < cfg.grid_share
    if grid:
        rule = rng.choice(GRID_RULES)
        cells, why = _grid(rng, cfg, rule)
    else:
        rule = rng.choice(cfg.rules)
        cells, why = _sequence(rng, cfg, rule, rng.randint(*cfg.shown))
    shown, answer = cells[:-1], cells[-1]
    options = [*_wrong_options(rng, cfg, answer, shown, rule == "grow"), answer]
    rng.shuffle(options)
    letter = LETTERS[options.index(answer)]
    with_size = rule == "grow"
    desc = answer.describe(with_size)
    what = "grid" if grid else "sequence"
    if cfg.options_in == "text":  # multiple choice by name: the answer is the candidate itself
        names = [o.describe(with_size) for o in options]
        prompt = f"<image>Which of {', '.join(names[:-1])} or {names[-1]} completes the {what}?"
        truth: dict[str, Any] = {"answer": desc, "aliases": []}
        response = f"<think>{why}; the missing one is {desc}</think>{desc}"
        drawn: list[Cell] = []
    else:
        aliases = [desc] if sum(o.describe(with_size) == desc for o in options) == 1 else []
        prompt = f"<image>Which option completes the {what}? Answer with the letter."
        truth = {"answer": letter, "aliases": aliases}
        response = f"<think>{why}; the missing one is {desc}: {letter}</think>{letter}"
        drawn = options
    return Sample(
        prompt=prompt,
        ground_truth=truth,
        reference_response=response,
        content={
            "rule": rule,
            "cells": [vars(c) for c in cells],
            "options": [vars(o) for o in options],
            # only when named: a lettered puzzle's content, hence its split hash, is as it was
            **({"options_in": "text"} if cfg.options_in == "text" else {}),
        },
        images=[render(shown, drawn, cfg, grid)],
        extra={"rule": rule},
    )


SPEC = TaskSpec(
    name="puzzle",
    ability="puzzle",
    style="rule",
    verifier="puzzle",
    config=PuzzleConfig,
    presets=PRESETS,
    make=make,
    description="complete a shape sequence or 3×3 grid; pick the letter of four candidates",
)
