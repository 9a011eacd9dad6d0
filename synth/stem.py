"""Visual STEM (task ``math``): a problem rendered into the image, answered in LaTeX.

Ground truth ``{"answer": "<latex>"}`` for the `math` verifier, which reads the last ``\\boxed{}``.
Glyphs sit one per merged vision token (28-pixel cells, easy) so a tiny model can read them,
and the think text first transcribes the problem, then writes each step: reading is the step
that must be learnt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from fractions import Fraction

from PIL import Image

from synth.render import backdrop, glyph_cells
from synth.task import Sample, TaskSpec

KINDS = ("add", "sub", "mul", "muladd", "fraction", "linear", "expand")
_INSTRUCTION = {
    "add": "Compute the expression.",
    "sub": "Compute the expression.",
    "mul": "Compute the expression.",
    "muladd": "Compute the expression.",
    "fraction": "Compute the expression.",
    "linear": "Solve for x.",
    "expand": "Expand the expression.",
}


@dataclass(frozen=True)
class MathConfig:
    width: int = 112
    height: int = 112
    kinds: tuple[str, ...] = ("add", "sub")
    max_operand: int = 9  # operands of add/sub/mul: 0..max_operand ("9-7=" fills 4 easy cells)
    patch_aligned: bool = True  # glyph cells on the cell grid (else anywhere)
    # Pixels per character cell. Easy: 28, one merged vision token (2×2 patches) per character,
    # so reading the problem is one glyph per LM image token; 14 puts two glyphs in each token.
    cell: int = 28
    ramp: int = 0  # background position ramp (synth.render.backdrop); off: see docs/pretrain.md
    glyph_size: int = 24  # font size in pixels (24, bold: digits about 15×18, inside one cell)
    distractor_lines: int = 0  # light gray lines drawn under the text


PRESETS = {
    "easy": MathConfig(),
    "hard": MathConfig(
        width=224,
        height=224,
        cell=14,
        glyph_size=16,
        kinds=KINDS,
        max_operand=99,
        patch_aligned=False,
        distractor_lines=4,
    ),
}


def latex_of(q: Fraction) -> str:
    """A rational number in LaTeX: '7', '-3', '\\frac{5}{6}', '-\\frac{1}{2}'."""
    if q.denominator == 1:
        return str(q.numerator)
    sign = "-" if q < 0 else ""
    return f"{sign}\\frac{{{abs(q.numerator)}}}{{{q.denominator}}}"


def _signed(v: int) -> str:
    return f"+{v}" if v >= 0 else f"-{-v}"


def problem(rng: random.Random, kind: str, top: int) -> tuple[str, str, str]:
    """(text drawn in the image, think steps, LaTeX answer) of one problem of ``kind``."""
    if kind == "add":
        a, b = rng.randint(0, top), rng.randint(0, top)
        return f"{a}+{b}=", f"{a}+{b}={a + b}", str(a + b)
    if kind == "sub":
        a, b = sorted((rng.randint(0, top), rng.randint(0, top)), reverse=True)
        return f"{a}-{b}=", f"{a}-{b}={a - b}", str(a - b)
    if kind == "mul":
        a, b = rng.randint(2, min(top, 12)), rng.randint(2, min(top, 12))
        return f"{a}*{b}=", f"{a}*{b}={a * b}", str(a * b)
    if kind == "muladd":
        a, b, c = rng.randint(2, 9), rng.randint(2, 9), rng.randint(1, top)
        return f"{a}*{b}-{c}=", f"{a}*{b}-{c}={a * b}-{c}={a * b - c}", str(a * b - c)
    if kind == "fraction":
        b, d = rng.randint(2, 9), rng.randint(2, 9)
        a, c = rng.randint(1, b - 1), rng.randint(1, d - 1)
        s = Fraction(a, b) + Fraction(c, d)
        lcm = b * d // _gcd(b, d)
        mid = f"{a * lcm // b}/{lcm}+{c * lcm // d}/{lcm}={a * lcm // b + c * lcm // d}/{lcm}"
        return f"{a}/{b}+{c}/{d}=", f"{a}/{b}+{c}/{d}: {mid}={_plain(s)}", latex_of(s)
    if kind == "linear":
        a, x, b = rng.randint(2, 9), rng.randint(-9, 12), rng.randint(-20, 20)
        c = a * x + b
        text = f"{a}x{_signed(b)}={c}"
        steps = f"{text}; {a}x={c}{_signed(-b)}={c - b}; x={c - b}/{a}={x}"
        return text, steps, str(x)
    if kind == "expand":
        p, q = rng.randint(-6, 6) or 1, rng.randint(-6, 6) or 2
        text = f"(x{_signed(p)})(x{_signed(q)})"
        s, prod = p + q, p * q
        middle = "" if s == 0 else ("+x" if s == 1 else "-x" if s == -1 else f"{_signed(s)}x")
        latex = f"x^{{2}}{middle}{_signed(prod) if prod else ''}"
        steps = f"{text} = x^2{_signed(p)}x{_signed(q)}x{_signed(prod)} = {latex}"
        return text, steps, latex
    raise ValueError(f"unknown math kind {kind!r}; known: {', '.join(KINDS)}")


def _gcd(a: int, b: int) -> int:
    while b:
        a, b = b, a % b
    return a


def _plain(q: Fraction) -> str:
    return str(q.numerator) if q.denominator == 1 else f"{q.numerator}/{q.denominator}"


def render_problem(rng: random.Random, text: str, cfg: MathConfig) -> Image.Image:
    """The problem text on a white canvas (`ramp`: on the position ramp), at a random
    (patch-aligned in easy) position."""
    image = backdrop(cfg.width, cfg.height, ramp=cfg.ramp)
    if cfg.distractor_lines:
        from PIL import ImageDraw

        draw = ImageDraw.Draw(image)
        for _ in range(cfg.distractor_lines):
            xy = [rng.randrange(cfg.width), rng.randrange(cfg.height)]
            xy += [rng.randrange(cfg.width), rng.randrange(cfg.height)]
            draw.line(xy, fill=(200, 200, 200), width=1)
    cols, rows = cfg.width // cfg.cell, cfg.height // cfg.cell
    if len(text) > cols:
        raise ValueError(f"problem {text!r} does not fit a {cfg.width}-pixel-wide image")
    if cfg.patch_aligned:
        x = rng.randint(0, cols - len(text)) * cfg.cell
        y = rng.randint(0, rows - 1) * cfg.cell
    else:
        x = rng.randint(0, cfg.width - len(text) * cfg.cell)
        y = rng.randint(0, cfg.height - cfg.cell)
    glyph_cells(image, text, x=x, y=y, cell=cfg.cell, size=cfg.glyph_size)
    return image


def make(rng: random.Random, cfg: MathConfig) -> Sample:
    """One rendered problem with its worked reference solution."""
    kind = rng.choice(cfg.kinds)
    text, steps, answer = problem(rng, kind, cfg.max_operand)
    return Sample(
        prompt=f"<image>{_INSTRUCTION[kind]} Put the answer in \\boxed{{}}.",
        ground_truth={"answer": answer},
        reference_response=f"<think>{steps}</think>\\boxed{{{answer}}}",
        content={"kind": kind, "problem": text},
        images=[render_problem(rng, text, cfg)],
        extra={"problem": text},
    )


SPEC = TaskSpec(
    name="math",
    ability="math",
    style="rule",
    verifier="math",
    config=MathConfig,
    presets=PRESETS,
    make=make,
    description="arithmetic/algebra rendered in the image, LaTeX answer in \\boxed{}",
)
