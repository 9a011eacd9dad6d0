"""Synthetic tasks: determinism, split disjointness, drawn geometry, and the tie to the verifiers."""

from __future__ import annotations

import hashlib
import io
import json
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw

import verifiers
from hybridrl.records import load_image, load_video
from synth import TASKS, generate, get_task
from synth.caption import (
    CORRUPTIONS,
    CaptionFacts,
    caption_fact_scores,
    caption_of,
    corrupt_caption,
    parse_caption,
)
from synth.render import draw_shape, render_scene, to_pixels
from synth.scene import COLOURS, SHAPES, Obj, Scene, region_words
from synth.task import config_with

ALL = list(TASKS)
VERIFIABLE = [t for t, spec in TASKS.items() if spec.verifier]


def _dump(records):
    return [r.model_dump() for r in records]


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_same_seed_same_records_other_seed_other_records(difficulty):
    a = generate(ALL, 16, seed=11, difficulty=difficulty)
    b = generate(ALL, 16, seed=11, difficulty=difficulty)
    c = generate(ALL, 16, seed=12, difficulty=difficulty)
    assert _dump(a) == _dump(b)
    assert all(x.model_dump() != y.model_dump() for x, y in zip(a, c, strict=True))
    assert [r.extra_info.task for r in a] == ALL * 2  # round-robin interleaving


def _media_hash(rec) -> str:
    h = hashlib.sha256(rec.user_text().encode())
    for im in rec.images:
        h.update(im.bytes)
    for v in rec.videos:
        for f in v.frames:
            h.update(f.bytes)
    return h.hexdigest()


@pytest.mark.parametrize("test_seed", [0, 1])
def test_train_and_test_never_share_content(test_seed):
    train = generate(ALL, 400, seed=0, split="train")
    test = generate(ALL, 200, seed=test_seed, split="test")
    assert {r.extra_info.split for r in train} == {"train"}
    assert {r.extra_info.split for r in test} == {"test"}
    assert not {r.extra_info.content_hash for r in train} & {
        r.extra_info.content_hash for r in test
    }
    assert not {_media_hash(r) for r in train} & {_media_hash(r) for r in test}
    # no repeats inside a split either, at this size
    assert len({r.extra_info.content_hash for r in test}) == len(test)


@pytest.mark.parametrize("task", VERIFIABLE)
@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_reference_responses_earn_full_reward(task, difficulty):
    spec = get_task(task)
    try:
        verifiers.get(spec.verifier)
    except verifiers.UnknownVerifierError:
        pytest.skip(f"verifier {spec.verifier!r} is not registered yet")
    for rec in generate(task, 50, seed=3, difficulty=difficulty):
        info = rec.extra_info
        assert info.verifier == spec.verifier and rec.reward_model.style == "rule"
        result = verifiers.verify(
            info.verifier,
            info.reference_response,
            rec.reward_model.ground_truth,
            {"require_format": True},
        )
        assert result.error is None, (info.reference_response, result.error)
        assert result.reward == 1.0, (
            info.reference_response,
            rec.reward_model.ground_truth,
            result.details,
        )


def _wrong(task: str, gt: dict) -> str:
    """A formatted but wrong answer for a task's ground truth."""
    if task in ("grounding", "spot_difference"):
        x1, y1, x2, y2 = gt["boxes"][0]
        return f"<think>x</think><bbox>{1000 - x2} {1000 - y2} {1000 - x1} {1000 - y1}</bbox>"
    if task == "counting":
        return f"<think>x</think>{gt['count'] + 1}"
    if task in ("math", "temporal"):
        return "<think>x</think>\\boxed{1234567}"
    if task == "puzzle":
        return "<think>x</think>" + ("A" if gt["answer"] != "A" else "B")
    if task == "instruction":  # break the first constraint
        c = gt["constraints"][0]
        if c["id"] == "length_constraints:number_words":
            at_least = c["kwargs"]["relation"] == "at least"
            return "<think>x</think>" + ("x" if at_least else "x " * 200)
        return (
            "<think>x</think>"
            + {
                "punctuation:no_comma": "a, b",
                "change_case:english_lowercase": "A RED CIRCLE",
                "change_case:english_capital": "a red circle",
                "detectable_format:json_format": "not json",
            }[c["id"]]
        )
    raise AssertionError(task)


@pytest.mark.parametrize("task", VERIFIABLE)
def test_wrong_answers_are_not_rewarded(task):
    spec = get_task(task)
    try:
        verifiers.get(spec.verifier)
    except verifiers.UnknownVerifierError:
        pytest.skip(f"verifier {spec.verifier!r} is not registered yet")
    for rec in generate(task, 10, seed=4):
        gt = rec.reward_model.ground_truth
        result = verifiers.verify(spec.verifier, _wrong(task, gt), gt, {"require_format": True})
        assert result.reward < 1.0, (task, gt)
        # the reference answer without its think block breaks the required format
        bare = rec.extra_info.reference_response.split("</think>", 1)[1]
        assert verifiers.verify(spec.verifier, bare, gt, {"require_format": True}).reward == 0.0


def test_text_fits_the_tiny_tokenizer_and_images_the_patch_grid():
    printable = {chr(c) for c in range(32, 127)} | {"\n"}
    for difficulty in ("easy", "hard"):
        for rec in generate(ALL, 80, seed=2, difficulty=difficulty):
            for text in (rec.user_text(), rec.extra_info.reference_response):
                assert set(text) <= printable, text
            sizes = [load_image(im).size for im in rec.images]
            sizes += [f.size for v in rec.videos for f in load_video(v)[0]]
            assert sizes, rec.data_source
            assert all(w % 28 == 0 and h % 28 == 0 for w, h in sizes), (rec.data_source, sizes)
            if difficulty == "easy" and rec.extra_info.task == "puzzle":
                assert sizes == [(112, 56)]  # the pattern row; the options are in the prompt
            elif difficulty == "easy" and rec.extra_info.task != "spot_difference":
                assert all(s == (112, 112) for s in sizes)


@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_covers_exactly_its_box(shape):
    rng = random.Random(0)
    for _ in range(20):
        w = rng.choice([112, 224])
        x1, y1 = rng.randrange(0, 700, 10), rng.randrange(0, 700, 10)
        side = rng.randrange(100, 300, 10)
        box = (x1, y1, x1 + side, y1 + side)
        image = Image.new("RGB", (w, w), (255, 255, 255))
        draw_shape(ImageDraw.Draw(image), shape, to_pixels(box, w, w), "red")
        ys, xs = np.nonzero((np.asarray(image) != 255).any(axis=2))
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == to_pixels(box, w, w)


def _colour_mask(image: Image.Image, colour: str) -> np.ndarray:
    return (np.asarray(image) == np.array(COLOURS[colour])).all(axis=2)


def test_grounding_box_is_where_the_target_is_drawn():
    for rec in generate("grounding", 30, seed=6, difficulty="hard"):
        colour, shape = rec.user_text().split("Where is the ")[1].split("?")[0].split()
        image = load_image(rec.images[0])
        x1, y1, x2, y2 = rec.reward_model.ground_truth["boxes"][0]
        px = to_pixels((x1, y1, x2, y2), image.width, image.height)
        inside = _colour_mask(image, colour)[px[1] : px[3], px[0] : px[2]]
        # the target's colour fills much of the box (a star covers the least of it)
        assert inside.mean() > 0.25, (shape, colour)


def test_temporal_target_appears_at_the_answered_second():
    for rec in generate("temporal", 12, seed=8, difficulty="hard"):
        frames, fps = load_video(rec.videos[0])
        k = rec.extra_info.model_extra["appear_frame"]
        assert float(rec.reward_model.ground_truth["answer"]) == pytest.approx(k / fps)
        colour = rec.user_text().split("When does the ")[1].split()[0]
        present = [_colour_mask(f, colour).sum() for f in frames]
        # distractors may share the target's colour (and move), but they add no new object
        assert min(present[k:]) > max(present[:k]) + 50


def test_caption_records_and_one_fact_corruptions():
    for rec in generate("caption", 20, seed=9, difficulty="hard"):
        assert rec.reward_model.style == "model" and rec.extra_info.verifier is None
        graph = rec.extra_info.model_extra["scene_graph"]
        scene = Scene.from_dict(json.loads(graph))
        assert caption_of(scene) == rec.reward_model.ground_truth["caption"]
        assert rec.extra_info.reference_response.endswith(caption_of(scene))
        for i, kind in enumerate(CORRUPTIONS):
            wrong, got = corrupt_caption(graph, seed=i, kind=kind)
            assert got == kind and wrong != caption_of(scene)
            if kind != "count":
                assert wrong.split(":")[0] == caption_of(scene).split(":")[0]  # same object count
            else:
                assert wrong.split(":")[0] != caption_of(scene).split(":")[0]
        assert corrupt_caption(graph, seed=1) == corrupt_caption(graph, seed=1)
    with pytest.raises(ValueError, match="unknown corruption"):
        corrupt_caption(graph, kind="mood")


def test_caption_facts_read_back_every_object_and_each_corruption_costs_its_own_fact():
    for rec in generate("caption", 20, seed=3, difficulty="hard"):
        scene = Scene.from_dict(json.loads(rec.extra_info.model_extra["scene_graph"]))
        facts = parse_caption(rec.extra_info.reference_response)  # the think block is skipped
        assert facts is not None and facts.count == len(scene.objects)
        want = sorted((o.colour, o.shape, region_words(o.box)) for o in scene.objects)
        assert sorted(facts.objects) == want
        reference = caption_of(scene)
        assert caption_fact_scores(reference, reference) == dict.fromkeys(
            ("count", "colour", "shape", "position", "objects"), 1.0
        )
        for i, kind in enumerate(CORRUPTIONS):
            wrong, _ = corrupt_caption(scene, seed=i, kind=kind)
            got = caption_fact_scores(wrong, reference)
            assert got["objects"] < 1.0
            if kind == "count":
                assert got["count"] == 0.0
                continue
            assert got["count"] == 1.0
            lost = kind  # colour, shape or position
            assert got[lost] < 1.0
            assert all(got[k] == 1.0 for k in ("colour", "shape", "position") if k != lost)


def test_caption_facts_of_what_is_not_a_caption():
    reference = (
        "There are two shapes: a red circle at the top left and a blue square at the centre."
    )
    assert parse_caption("The image is empty.") == CaptionFacts(0, ())
    assert parse_caption("There are 2 shapes: a red circle at the top.").count == 2
    # a garbled phrase is left out, the rest still counts
    half = parse_caption("There are two shapes: a red circle at the top left and blue blue.")
    assert half == CaptionFacts(2, (("red", "circle", "top left"),))
    assert caption_fact_scores(
        "There are two shapes: a red circle at the top left and blue blue.", reference
    )["objects"] == pytest.approx(2 / 3)
    for junk in ("There is oneE.", "<think>a red circle</think>", "\\boxed{2}", ""):
        assert parse_caption(junk) is None
        assert set(caption_fact_scores(junk, reference).values()) == {0.0}
    assert caption_fact_scores(reference, "A cat on a mat.") is None  # not a synth caption


def test_difficulty_and_config_overrides():
    spec = get_task("counting")
    cfg = config_with(spec.preset("easy"), {"count_range": (7, 7), "distractor_range": (0, 0)})
    recs = generate("counting", 5, seed=1, configs={"counting": cfg})
    assert [r.reward_model.ground_truth["count"] for r in recs] == [7] * 5
    with pytest.raises(ValueError, match="unknown CountingConfig field"):
        config_with(cfg, {"colour_count": 3})
    with pytest.raises(ValueError, match="unknown difficulty 'medium'"):
        generate("counting", 1, difficulty="medium")
    with pytest.raises(ValueError, match="unknown task 'sudoku'; known tasks: math"):
        generate("sudoku", 1)
    with pytest.raises(ValueError, match="n must be positive"):
        generate("math", 0)


def test_spot_difference_side_by_side_layout():
    cfg = config_with(get_task("spot_difference").preset("easy"), {"layout": "side_by_side"})
    (rec,) = generate("spot_difference", 1, seed=0, configs={"spot_difference": cfg})
    assert len(rec.images) == 1 and load_image(rec.images[0]).size == (224, 112)
    assert rec.user_text().count("<image>") == 1


def test_easy_spot_difference_asks_as_grounding_and_names_the_changed_object():
    # easy: grounding's question right after image 2, the think names the changed object as
    # image 2 shows it, and that object sits in image 2 at the box, but not in image 1
    spec = get_task("spot_difference")
    rng, kinds = random.Random(4), set()
    for _ in range(30):
        sample = spec.make(rng, spec.preset("easy"))
        assert sample.prompt.startswith(
            "Image 2 is a changed copy of image 1. Image 1: <image> Image 2: <image>"
        )
        assert sample.prompt.endswith(
            "<image>Where is the difference? Answer with <bbox>x1 y1 x2 y2</bbox>."
        )
        name = sample.reference_response.removeprefix("<think>the ").split("</think>")[0]
        (box,) = sample.ground_truth["boxes"]
        first, second = (
            {
                (o["colour"] + " " + o["shape"], tuple(o["box"]))
                for o in sample.content[k]["objects"]
            }
            for k in ("first", "second")
        )
        assert (name, tuple(box)) in second and (name, tuple(box)) not in first
        kinds.add("add" if len(second) > len(first) else "colour")
    assert kinds == {"add", "colour"}


def test_hard_spot_difference_thinks_in_changes():
    for rec in generate("spot_difference", 10, seed=4, difficulty="hard"):
        assert "Box each difference in image 2" in rec.user_text()
        assert " difference" in rec.extra_info.reference_response.split("</think>")[0]


def test_spot_difference_where_refuses_changes_that_leave_image_2():
    with pytest.raises(ValueError, match="changes must be among \\('colour', 'add'\\)"):
        config_with(get_task("spot_difference").preset("easy"), {"changes": ["colour", "remove"]})
    with pytest.raises(ValueError, match="unknown"):
        config_with(get_task("spot_difference").preset("hard"), {"changes": ["teleport"]})
    cfg = config_with(
        get_task("spot_difference").preset("easy"), {"question": "changes", "changes": ["remove"]}
    )
    (rec,) = generate("spot_difference", 1, seed=0, configs={"spot_difference": cfg})
    assert "is gone" in rec.extra_info.reference_response


def test_math_glyphs_sit_in_cells():
    # easy math: every glyph's ink lies inside one 28x28 cell (one merged vision token) of its row
    cell = get_task("math").preset("easy").cell
    assert cell == 28
    for rec in generate("math", 10, seed=10):
        ink = (np.asarray(load_image(rec.images[0])) < 128).any(axis=2)
        rows = np.nonzero(ink.any(axis=1))[0]
        assert rows.max() // cell == rows.min() // cell, rec.extra_info.model_extra["problem"]
        cols = np.nonzero(ink.any(axis=0))[0]
        assert len({c // cell for c in cols}) == len(rec.extra_info.model_extra["problem"])


SCENE_TASKS = ["caption", "counting", "grounding", "instruction", "spot_difference", "temporal"]


def test_backdrop_ramp_tells_each_patch_its_place():
    # red falls left->right, blue top->bottom; the object keeps its exact colour on top
    scene = Scene(112, 112, (Obj("circle", "red", (250, 250, 500, 500)),), ramp=160)
    pixels = np.asarray(render_scene(scene)).astype(int)
    corner = pixels[[0, 0, 111], [0, 111, 0]]
    assert corner.tolist() == [[255, 255, 255], [95, 255, 255], [255, 255, 95]]
    patch_means = pixels[:14, :, 0].reshape(14, 8, 14).mean(axis=(0, 2))
    assert (np.diff(patch_means) < 0).all()  # every patch column its own red
    assert (pixels[42, 42] == COLOURS["red"]).all()
    plain = np.asarray(render_scene(Scene(112, 112, (), ramp=0)))
    assert (plain == 255).all()
    # the ramp travels with the scene graph; graphs written before it default to plain
    assert Scene.from_dict(scene.to_dict()) == scene
    old = {k: v for k, v in scene.to_dict().items() if k != "ramp"}
    assert Scene.from_dict(old).ramp == 0


@pytest.mark.parametrize("task", SCENE_TASKS)
def test_easy_scenes_are_drawn_on_the_ramp_and_hard_ones_plain(task):
    assert get_task(task).preset("easy").ramp > 0 and get_task(task).preset("hard").ramp == 0
    (rec,) = generate(task, 1, seed=3)
    media = rec.images[0] if rec.images else rec.videos[0]
    frame = load_image(media) if rec.images else load_video(media)[0][0]
    top_row = np.asarray(frame)[0, :, 0].astype(int)
    assert top_row[0] - top_row[-1] >= 100  # red falls across the first row of pixels


@pytest.mark.parametrize("task", ["puzzle", "math"])
def test_glyph_tasks_draw_the_ramp_only_when_asked(task):
    # puzzle and math images stay white by default (the ramp did not help them: docs/pretrain.md)
    from synth.task import config_with

    spec = get_task(task)
    plain = spec.make(random.Random(5), spec.preset("easy")).images[0]
    ramped = spec.make(random.Random(5), config_with(spec.preset("easy"), {"ramp": 160})).images[0]
    assert (np.asarray(plain)[0] == 255).all()
    top_row = np.asarray(ramped)[0, :, 0].astype(int)
    assert top_row[0] - top_row[-1] >= 100


def test_png_bytes_decode():
    (rec,) = generate("puzzle", 1, seed=0)
    assert Image.open(io.BytesIO(rec.images[0].bytes)).format == "PNG"


def test_easy_puzzles_name_their_options_and_hard_ones_draw_them():
    from synth.puzzle import Cell, named_options
    from synth.task import config_with
    from verifiers.registry import verify

    spec = get_task("puzzle")
    rules = set()
    for seed in range(40):
        easy = spec.make(random.Random(seed), spec.preset("easy"))
        rules.add(easy.content["rule"])
        with_size = easy.content["rule"] == "grow"
        names = [Cell(**o).describe(with_size) for o in easy.content["options"]]
        assert f"Which of {', '.join(names[:3])} or {names[3]} completes" in easy.prompt
        assert named_options(easy.prompt) == names
        answer = easy.ground_truth["answer"]
        assert answer in names and len(set(names)) == 4
        assert easy.reference_response.endswith(f"the missing one is {answer}</think>{answer}")
        assert easy.images[0].size == (112, 56)  # the pattern row alone, no candidate row
        wrong = next(n for n in names if n != answer)
        assert verify("puzzle", easy.reference_response, easy.ground_truth).reward == 1.0
        assert verify("puzzle", f"<think>x</think>{wrong}", easy.ground_truth).reward == 0.0
        hard = spec.make(random.Random(seed), spec.preset("hard"))
        assert hard.ground_truth["answer"] in "ABCD" and "options_in" not in hard.content
        assert named_options(hard.prompt) == []  # lettered: no names to read
        assert easy.content["options_in"] == "text"
        listed = spec.make(
            random.Random(seed), config_with(spec.preset("hard"), {"options_in": "text"})
        )
        assert listed.content["cells"] == hard.content["cells"]  # the same puzzle, ...
        assert hard.images[0].size[1] > listed.images[0].size[1]  # ... its candidates drawn below
    assert rules == {"colour_cycle", "shape_cycle", "grow", "count"}
