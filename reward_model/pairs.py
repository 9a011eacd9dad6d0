"""Preference pairs: the parquet layout, swap augmentation, and the synthetic default pairs.

A pair is (prompt, images, chosen, rejected). The embedded default draws them from `synth/`:
caption prompts pair the reference caption with one whose single fact (colour, shape, count
or position) is false; verifiable prompts pair the reference response with a wrong answer
that the task's verifier scores lower; and format pairs pair ``<think>…</think>solution``
with a response that breaks that format.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reward_model.layout import target_token

PAIR_COLUMNS = ("prompt", "images", "chosen", "rejected", "kind", "data_source", "split")


@dataclass(frozen=True)
class Pair:
    """One preference: ``chosen`` is better than ``rejected`` for ``prompt`` (with ``images``)."""

    prompt: list[dict[str, str]]
    images: list[bytes]
    chosen: str
    rejected: str
    kind: str = ""  # e.g. "caption/colour", "grounding/wrong", "format/no_think"
    data_source: str = ""
    split: str = "train"


@dataclass(frozen=True)
class Example:
    """One training sequence: ``first`` shown as A, ``second`` as B, the answer ``target``."""

    prompt: list[dict[str, str]]
    images: list[bytes]
    first: str
    second: str
    target: str
    kind: str = ""
    meta: dict[str, Any] = field(default_factory=dict)


def swap_augment(pairs: Iterable[Pair]) -> list[Example]:
    """Each pair in both orders: chosen first with target ``A``, chosen second with ``B``."""
    out = []
    for pair in pairs:
        out.append(
            Example(
                pair.prompt, pair.images, pair.chosen, pair.rejected, target_token(True), pair.kind
            )
        )
        out.append(
            Example(
                pair.prompt, pair.images, pair.rejected, pair.chosen, target_token(False), pair.kind
            )
        )
    return out


# --------------------------------------------------------------------------- parquet I/O


def write_pairs(pairs: Iterable[Pair], path: str | Path) -> Path:
    """Write pairs to parquet (prompt as a list of {role, content}, images as PNG bytes)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(pairs)
    message = pa.struct([("role", pa.string()), ("content", pa.string())])
    schema = pa.schema(
        [
            ("prompt", pa.list_(message)),
            ("images", pa.list_(pa.binary())),
            ("chosen", pa.string()),
            ("rejected", pa.string()),
            ("kind", pa.string()),
            ("data_source", pa.string()),
            ("split", pa.string()),
        ]
    )
    columns = {name: [getattr(p, name) for p in rows] for name in PAIR_COLUMNS}
    table = pa.table(columns, schema=schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


def _prompt_of(value: Any, where: str) -> list[dict[str, str]]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):  # a JSON-encoded message list
            value = json.loads(text)
        else:
            return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: 'prompt' must be a string or a non-empty message list")
    messages = []
    for m in value:
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or not m.get("role"):
            raise ValueError(f"{where}: prompt message {m!r:.60} needs 'role' and 'content'")
        messages.append({"role": str(m["role"]), "content": m["content"]})
    return messages


def _image_bytes(value: Any, base_dir: Path, where: str) -> bytes:
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    if isinstance(value, dict) and value.get("bytes") is not None:
        return bytes(value["bytes"])
    path = value.get("path") if isinstance(value, dict) else value
    if isinstance(path, str) and path:
        p = Path(path) if Path(path).is_absolute() else base_dir / path
        if not p.is_file():
            raise ValueError(f"{where}: image file {str(p)!r} does not exist")
        return p.read_bytes()
    raise ValueError(f"{where}: cannot read an image from {type(value).__name__}")


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pair parquet; needs prompt, chosen, rejected (images, kind, … are optional)."""
    import pyarrow.parquet as pq

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pair file {str(path)!r} does not exist")
    table = pq.read_table(path)
    missing = [c for c in ("prompt", "chosen", "rejected") if c not in table.column_names]
    if missing:
        raise ValueError(
            f"{path}: missing column(s) {missing}; a pair file needs {PAIR_COLUMNS[:4]}"
        )
    pairs = []
    for i, row in enumerate(table.to_pylist()):
        where = f"{path} row {i}"
        chosen, rejected = row.get("chosen"), row.get("rejected")
        if not isinstance(chosen, str) or not isinstance(rejected, str):
            raise ValueError(f"{where}: 'chosen' and 'rejected' must be strings")
        images = [_image_bytes(im, path.parent, where) for im in row.get("images") or []]
        pairs.append(
            Pair(
                prompt=_prompt_of(row["prompt"], where),
                images=images,
                chosen=chosen,
                rejected=rejected,
                kind=row.get("kind") or "",
                data_source=row.get("data_source") or "",
                split=row.get("split") or "train",
            )
        )
    return pairs


# --------------------------------------------------------------------------- synthetic pairs


def _think_and_solution(response: str) -> tuple[str, str]:
    idx = response.rfind("</think>")
    if idx < 0:
        return "", response
    return response[: idx + len("</think>")], response[idx + len("</think>") :]


def caption_rejections(
    record: Any, rng: random.Random, kinds: Sequence[str]
) -> list[tuple[str, str]]:
    """(response, kind) for each corruption kind: the reference with one fact made false."""
    from synth import caption
    from synth.scene import Scene

    graph = (
        record.extra_info.model_extra.get("scene_graph") if record.extra_info.model_extra else None
    )
    if not graph:
        raise ValueError(f"caption record {record.extra_info.index} has no extra_info.scene_graph")
    scene = Scene.from_dict(json.loads(graph) if isinstance(graph, str) else graph)
    preset = caption.PRESETS.get(record.extra_info.difficulty or "easy", caption.PRESETS["easy"])
    reference = caption.caption_of(scene)
    out = []
    for kind in kinds:
        if kind in MALFORMED:
            bad_caption = malformed_caption(reference, rng, kind)
            if bad_caption is None:  # nothing of that kind to break in this caption
                continue
            think = record.extra_info.reference_response.split("</think>")[0] + "</think>"
            out.append((f"{think}{bad_caption}", kind))
            continue
        # corrupt within the preset's own vocabulary: an unseen colour word would be a shortcut
        bad, kind = caption.corrupt_scene(
            scene, rng, kind, shapes=preset.shapes, colours=preset.colours
        )
        names = " ".join(f"{o.colour} {o.shape};" for o in bad.objects)
        out.append(
            (f"<think>{len(bad.objects)} shapes: {names}</think>{caption.caption_of(bad)}", kind)
        )
    return out


# Rejections that are no caption of any scene: the ways an RL policy was seen to game an RM
# that had only seen one-fact corruptions (docs/rl.md): broken words, stray numbers, a phrase
# cut off, and one object listed twice in place of another.
MALFORMED = ("garbled", "repeat")
_OBJECT_PHRASE = re.compile(
    r"an? \w+ \w+ at the (?:(?:top|bottom) (?:left|right)|top|bottom|left|right|centre)\b"
)


def check_caption_kinds(kinds: Sequence[str]) -> list[str]:
    """``kinds`` as a list when each is a one-fact corruption or a malformation, else ValueError."""
    from synth.caption import CORRUPTIONS

    known = (*CORRUPTIONS, *MALFORMED)
    unknown = [k for k in kinds if k not in known]
    if unknown:
        raise ValueError(f"unknown caption kind(s) {unknown}; known: {', '.join(known)}")
    return list(kinds)


def malformed_caption(caption: str, rng: random.Random, kind: str) -> str | None:
    """``caption`` (synth's grammar) made malformed; None when it has nothing to break that way.

    ``garbled``: a word of an object phrase cut to its first letters and last one, a stray
    number put before a colour, or an object phrase cut off to ``a <number>``; ``repeat``:
    one object phrase replaced by a copy of another (the count word stays), only for captions
    whose phrases all differ.
    """
    phrases = list(_OBJECT_PHRASE.finditer(caption))
    if not phrases:
        return None
    if kind == "repeat":
        texts = [m.group(0) for m in phrases]
        if len(texts) < 2 or len(set(texts)) < len(texts):
            return None
        i, j = rng.sample(range(len(phrases)), 2)
        m = phrases[i]
        return caption[: m.start()] + texts[j] + caption[m.end() :]
    if kind != "garbled":
        raise ValueError(f"unknown malformation {kind!r}; known: {', '.join(MALFORMED)}")
    m = rng.choice(phrases)
    words = m.group(0).split()  # a, colour, shape, at, the, place...
    how = rng.randrange(3)
    if how == 0:  # a word cut short: "a green square at the sht"
        k = rng.choice([i for i, w in enumerate(words) if len(w) >= 4])
        words[k] = words[k][: rng.randint(1, min(3, len(words[k]) - 2))] + words[k][-1]
        broken = " ".join(words)
    elif how == 1:  # a stray number: "a 14 red circle at the centre"
        broken = " ".join([words[0], str(rng.randint(2, 99)), *words[1:]])
    else:  # cut off: "... and a 14."
        broken = f"{words[0]} {rng.randint(2, 99)}"
    return caption[: m.start()] + broken + caption[m.end() :]


_INT = re.compile(r"-?\d+")
_BOX = re.compile(r"(<bbox>)\s*(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s*(</bbox>)")


def _shift_boxes(solution: str, rng: random.Random) -> str:
    """Each box moved, same size, on the same lattice as its own corners (a box on a 250 grid
    stays on it), so the wrong box differs from the right one only in where it is."""

    def move(m: re.Match[str]) -> str:
        x1, y1, x2, y2 = (int(m.group(i)) for i in range(2, 6))
        w, h = x2 - x1, y2 - y1
        step = max(1, math.gcd(x1, y1, x2, y2, 1000))
        nx = rng.randrange(0, max(1, 1001 - w), step)
        ny = rng.randrange(0, max(1, 1001 - h), step)
        return f"<bbox>{nx} {ny} {nx + w} {ny + h}</bbox>"

    return _BOX.sub(move, solution)


def _nudge_numbers(solution: str, rng: random.Random) -> str:
    def nudge(m: re.Match[str]) -> str:
        n = int(m.group())
        delta = rng.choice([d for d in range(-3, 4) if d and n + d >= 0])
        return str(n + delta)

    return _INT.sub(nudge, solution, count=1)


def _wrong_solutions(solution: str, rng: random.Random, options: Sequence[str] = ()) -> list[str]:
    """Candidate wrong solutions, most natural first; the caller keeps one the verifier dislikes."""
    out = [o for o in rng.sample(list(options), len(options)) if o != solution.strip()]
    if _BOX.search(solution):
        out += [_shift_boxes(solution, rng) for _ in range(4)]
        out.append("")  # no box at all
    letter = solution.strip()
    if len(letter) == 1 and letter.isalpha() and letter.isupper():
        out += [c for c in rng.sample("ABCD", 4) if c != letter]
    if _INT.search(solution) and not _BOX.search(solution):
        out += [_nudge_numbers(solution, rng) for _ in range(3)]
    words = solution.split()
    out += [
        solution.swapcase(),
        solution.lower(),
        solution.upper(),
        ", ".join(words),
        " ".join(words[:2]),
        " ".join(words + words),
        solution.replace("{", "").replace("}", ""),
    ]
    return [s for s in out if s != solution]


def verifiable_rejection(record: Any, rng: random.Random) -> str | None:
    """The reference response with a wrong solution that the record's verifier scores lower."""
    from verifiers import verify

    name = record.extra_info.verifier
    reference = record.extra_info.reference_response
    if not name or not reference:
        return None
    think, solution = _think_and_solution(reference)
    good = verify(name, reference, record.ground_truth).reward
    from synth.puzzle import named_options  # the other candidates of a by-name puzzle

    options = named_options(record.user_text())
    for candidate in _wrong_solutions(solution, rng, options):
        response = think + candidate
        if verify(name, response, record.ground_truth).reward < good:
            return response
    return None


def format_rejections(reference: str) -> list[tuple[str, str]]:
    """Responses that break ``<think>…</think>solution``: no think, empty solution, unclosed."""
    think, solution = _think_and_solution(reference)
    solution = solution.strip()
    if not think or not solution:
        return []
    inner = think.removeprefix("<think>").removesuffix("</think>")
    return [
        (solution, "format/no_think"),
        (think, "format/no_solution"),
        (f"<think>{inner} {solution}", "format/unclosed"),
    ]


def _images(record: Any) -> list[bytes]:
    from hybridrl.records import encode_png, load_image

    out = []
    for ref in record.images:
        out.append(ref.bytes if ref.bytes is not None else encode_png(load_image(ref)))
    return out


def pairs_from_records(
    records: Iterable[Any],
    *,
    seed: int = 0,
    caption_kinds: Sequence[str] = ("colour", "shape", "count", "position"),
    format_share: float = 0.1,
) -> Iterator[Pair]:
    """Preference pairs from prompt records: caption corruptions, wrong answers, bad formats.

    Caption records give one pair per entry of ``caption_kinds`` (`caption/<fact>` for one-fact
    corruptions, `malformed/<kind>` for `MALFORMED` ones); a verifiable record gives
    one wrong-answer pair; any record gives a format pair with probability ``format_share``.
    """
    caption_kinds = check_caption_kinds(caption_kinds)  # once, not per record
    rng = random.Random(seed)
    for record in records:
        reference = record.extra_info.reference_response
        if not reference:
            continue
        base = {
            "prompt": [m.model_dump() for m in record.prompt],
            "images": _images(record),
            "data_source": record.data_source,
            "split": record.extra_info.split,
        }
        task = record.extra_info.task or record.data_source.removeprefix("synth/")
        if record.videos:
            continue  # the RM prompt layout takes images only
        if record.reward_model.style == "model" and task == "caption":
            for response, kind in caption_rejections(record, rng, caption_kinds):
                # malformed captions are their own family: `caption` stays the one-fact pairs
                family = "malformed" if kind in MALFORMED else "caption"
                yield Pair(chosen=reference, rejected=response, kind=f"{family}/{kind}", **base)
        elif record.reward_model.style == "rule":
            wrong = verifiable_rejection(record, rng)
            if wrong is not None:
                yield Pair(chosen=reference, rejected=wrong, kind=f"{task}/wrong", **base)
        if format_share > 0 and rng.random() < format_share:
            options = format_rejections(reference)
            if options:
                response, kind = rng.choice(options)
                yield Pair(chosen=reference, rejected=response, kind=kind, **base)
