"""The `grounding` verifier through the public Python API, with IoUs worked out by hand."""

from __future__ import annotations

import math

import pytest

from verifiers import verify


def ground(solution: str, boxes, **options):
    return verify("grounding", f"<think>look</think>{solution}", {"boxes": boxes}, options)


def test_single_box_iou_by_hand():
    # pred [0,0,100,100] vs ref [50,50,150,150]: inter 50*50=2500,
    # union 10000+10000-2500=17500 -> IoU = 1/7
    r = ground("<bbox>0 0 100 100</bbox>", [[50, 50, 150, 150]])
    assert r.error is None and r.format_ok
    assert r.reward == pytest.approx(1 / 7)
    assert r.correct is False
    assert r.details["iou"] == pytest.approx(1 / 7, abs=1e-4)
    assert r.details["matches"] == [{"pred": 0, "ref": 0, "iou": round(1 / 7, 4)}]


def test_exact_box_and_correct_threshold():
    # pred [100,100,300,300] vs ref [100,100,300,400]: inter 200*200=40000,
    # union 40000+60000-40000=60000 -> IoU = 2/3
    r = ground("<bbox>100 100 300 300</bbox>", [[100, 100, 300, 400]])
    assert r.reward == pytest.approx(2 / 3) and r.correct
    assert not ground(
        "<bbox>100 100 300 300</bbox>", [[100, 100, 300, 400]], correct_threshold=0.7
    ).correct
    assert ground("<bbox>5 6 7 8</bbox>", [[5, 6, 7, 8]]).reward == 1.0


@pytest.mark.parametrize(
    "solution",
    [
        "<bbox>0 0 100 100</bbox>",
        "<bbox>0, 0, 100, 100</bbox>",
        "The cat is at [0, 0, 100, 100].",
        "[0.0,0.0,100.0,100.0]",
        "(0,0),(100,100)",
        "(0, 0) (100, 100)",
        '{"bbox_2d": [0, 0, 100, 100]}',
        "<bbox>[0, 0, 100, 100]</bbox>",  # one box, not two
    ],
)
def test_box_forms(solution):
    # all are the box [0,0,100,100]; against itself IoU = 1
    r = ground(solution, [[0, 0, 100, 100]])
    assert r.details["n_predicted"] == 1
    assert r.reward == 1.0


def test_threshold_option_gives_one_or_zero():
    # IoU 2/3 (see above) vs threshold 0.5 -> 1; vs 0.7 -> 0
    ref = [[100, 100, 300, 400]]
    assert ground("<bbox>100 100 300 300</bbox>", ref, iou_threshold=0.5).reward == 1.0
    r = ground("<bbox>100 100 300 300</bbox>", ref, iou_threshold=0.7)
    assert r.reward == 0.0 and r.details["matches"] == []


# Boxes share y 0..100, so IoU is the 1-D interval IoU in x.
# refs R0 = x[0,100], R1 = x[60,160]; preds P0 = x[20,120], P1 = x[0,50]
#   P0-R0: inter 80 / union 120 = 2/3     P0-R1: inter 60 / union 140 = 3/7
#   P1-R0: inter 50 / union 100 = 1/2     P1-R1: 0 (50 < 60)
# Greedy takes P0-R0 (2/3) and leaves P1-R1 (0): sum 2/3, reward 1/3.
# Hungarian takes P0-R1 + P1-R0 = 3/7 + 1/2 = 13/14: reward 13/28.
HUNGARIAN_REFS = [[0, 0, 100, 100], [60, 0, 160, 100]]
HUNGARIAN_PREDS = "<bbox>20 0 120 100</bbox><bbox>0 0 50 100</bbox>"


def test_hungarian_beats_greedy():
    r = ground(HUNGARIAN_PREDS, HUNGARIAN_REFS)
    assert r.reward == pytest.approx(13 / 28)
    pairs = {(m["pred"], m["ref"]) for m in r.details["matches"]}
    assert pairs == {(0, 1), (1, 0)}


def test_extra_and_missing_boxes_cost():
    # one correct box out of two refs: 1 / max(1, 2) = 1/2
    assert ground("<bbox>0 0 100 100</bbox>", HUNGARIAN_REFS).reward == pytest.approx(0.5)
    # spam: the right box plus 49 others -> 1 / max(50, 1)
    spam = "<bbox>0 0 100 100</bbox>" + "".join(
        f"<bbox>{x} 500 {x + 10} 510</bbox>" for x in range(0, 490, 10)
    )
    r = ground(spam, [[0, 0, 100, 100]])
    assert r.details["n_predicted"] == 50
    assert r.reward == pytest.approx(1 / 50)


def test_too_many_boxes_score_zero():
    spam = "<bbox>0 0 100 100</bbox>" * 101
    r = ground(spam, [[0, 0, 100, 100]])
    assert r.reward == 0.0 and r.error is None and "too many boxes" in r.details["reason"]
    assert ground("<bbox>0 0 100 100</bbox>" * 3, [[0, 0, 100, 100]], max_boxes=2).reward == 0.0


def test_pixel_coordinates():
    # 200x100 px image: pixel box [50,25,150,75] -> x*5, y*10 -> [250,250,750,750]
    opts = {"coords": "pixel", "image_size": [200, 100]}
    assert (
        ground(
            "<bbox>50 25 150 75</bbox>", [[250, 250, 750, 750]], reference_coords="norm1000", **opts
        ).reward
        == 1.0
    )
    # both in pixels: pred [0,0,100,50] vs ref [50,0,150,50] -> inter 50*50, union 3*2500 -> 1/3
    r = ground("<bbox>0 0 100 50</bbox>", [[50, 0, 150, 50]], **opts)
    assert r.reward == pytest.approx(1 / 3)
    # without pixel mode the same numbers are read on the 0-1000 grid: [50,25,150,75] vs [250,...]
    assert ground("<bbox>50 25 150 75</bbox>", [[250, 250, 750, 750]]).reward == 0.0


def test_pixel_point():
    # 640x480: point (320, 240) -> (500, 500), inside [400,400,600,600]
    opts = {"coords": "pixel", "image_size": [640, 480], "reference_coords": "norm1000"}
    assert ground("<point>320 240</point>", [[400, 400, 600, 600]], **opts).reward == 1.0
    assert ground("<point>100 240</point>", [[400, 400, 600, 600]], **opts).reward == 0.0


def test_points_inside_boxes():
    refs = [[0, 0, 100, 100], [500, 500, 600, 600]]
    r = ground("<point>50 50</point> and <point>550, 550</point>", refs)
    assert r.details["kind"] == "point" and r.reward == 1.0
    # both points in box 0: one-to-one matching credits only one -> 1/2
    assert ground("<point>50 50</point><point>60 60</point>", refs).reward == pytest.approx(0.5)
    # edge counts as inside; just outside does not
    assert ground("<point>100 100</point>", [[0, 0, 100, 100]]).reward == 1.0
    assert ground("<point>101 100</point>", [[0, 0, 100, 100]]).reward == 0.0


def test_box_wins_over_point_and_answer_type():
    # Seed1.5-VL answers a box and its centre: the box is scored
    r = ground("<bbox>0 0 100 100</bbox><point>50 50</point>", [[50, 50, 150, 150]])
    assert r.details["kind"] == "box" and r.reward == pytest.approx(1 / 7)
    # answer_type "box": a point alone does not score
    r = ground("<point>50 50</point>", [[0, 0, 100, 100]], answer_type="box")
    assert r.reward == 0.0 and "no box" in r.details["reason"]


def test_solution_part_only():
    resp = "<think>maybe <bbox>0 0 100 100</bbox></think>I think <bbox>500 500 600 600</bbox>"
    r = verify("grounding", resp, {"boxes": [[0, 0, 100, 100]]})
    assert r.reward == 0.0 and r.details["parsed"] == [[500.0, 500.0, 600.0, 600.0]]


@pytest.mark.parametrize(
    "solution, expected",
    [
        # inverted corners are sorted: same box as [0,0,100,100]
        ("<bbox>100 100 0 0</bbox>", 1.0),
        # negatives and >1000 are clipped: [-50,-50,100,100] -> [0,0,100,100]
        ("<bbox>-50 -50 100 100</bbox>", 1.0),
        # clipped [900,900,1000,1000] vs ref: no overlap
        ("<bbox>900 900 5000 5000</bbox>", 0.0),
        # zero-area box: IoU 0, no division by zero
        ("<bbox>50 50 50 50</bbox>", 0.0),
        ("<bbox>nan 0 100 100</bbox>", 0.0),
        ("<bbox>0 0 inf 100</bbox>", 0.0),
        ("[0, 0, 1e999, 100]", 0.0),
        ("<bbox>0 0 100</bbox>", 0.0),  # three numbers: invalid
        ("<bbox>zero zero ten ten</bbox>", 0.0),
        ("<bbox></bbox>", 0.0),
        ("no box at all", 0.0),
        ("", 0.0),
    ],
)
def test_hostile_boxes(solution, expected):
    r = ground(solution, [[0, 0, 100, 100]])
    assert r.error is None
    assert r.reward == expected
    assert math.isfinite(r.reward)


def test_invalid_boxes_still_count_as_predictions():
    # one right box + one NaN box: the NaN box matches nothing but is a prediction -> 1/2
    r = ground("<bbox>0 0 100 100</bbox><bbox>nan nan 1 1</bbox>", [[0, 0, 100, 100]])
    assert r.reward == pytest.approx(0.5)
    assert r.details["invalid"] == [1]
    assert r.details["parsed"][1] == "<bbox>nan nan 1 1</bbox>"  # no NaN in JSON details


def test_huge_response_is_cut():
    # the right box sits past the 100k characters that are read
    resp = "x" * 200_000 + "<bbox>0 0 100 100</bbox>"
    r = ground(resp, [[0, 0, 100, 100]])
    assert r.reward == 0.0
    r = ground("9" * 100_000, [[0, 0, 100, 100]])
    assert r.reward == 0.0 and r.error is None


@pytest.mark.parametrize(
    "reference, field",
    [
        ({"boxes": []}, "boxes"),
        ({"boxes": [[0, 0, 10]]}, "boxes.0"),
        ({"boxes": [[10, 0, 0, 10]]}, "inverted"),
        ({"boxes": [[0, 0, 10, float("nan")]]}, "boxes.0.3"),
        ({"boxes": [[-1, 0, 10, 10]]}, "boxes.0.0"),
        ({"boxes": [[0, 0, "10", 10]]}, "boxes.0.2"),
        ({"box": [[0, 0, 10, 10]]}, "boxes"),
        ({"boxes": [[0, 0, 10, 1001]]}, "outside the image"),
        (None, "reference"),
    ],
)
def test_invalid_reference(reference, field):
    r = verify("grounding", "<bbox>0 0 10 10</bbox>", reference)
    assert r.reward == 0.0 and r.error is not None
    assert field in r.error


@pytest.mark.parametrize(
    "options, text",
    [
        ({"coords": "pixel"}, "image_size"),
        ({"coords": "pixels", "image_size": [10, 10]}, "options.coords"),
        ({"coords": "pixel", "image_size": [0, 10]}, "options.image_size"),
        ({"iou_threshold": 2}, "options.iou_threshold"),
        ({"max_boxes": 0}, "options.max_boxes"),
    ],
)
def test_invalid_options(options, text):
    r = verify("grounding", "<bbox>0 0 10 10</bbox>", {"boxes": [[0, 0, 10, 10]]}, options)
    assert r.reward == 0.0 and text in (r.error or "")
