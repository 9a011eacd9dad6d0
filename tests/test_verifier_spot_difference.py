"""The `spot_difference` verifier through the public Python API, with IoUs worked out by hand."""

from __future__ import annotations

import pytest

from verifiers import verify

REFS = [[0, 0, 100, 100], [500, 500, 700, 700]]


def spot(solution: str, boxes=None, **options):
    ref = {"boxes": REFS if boxes is None else boxes}
    return verify("spot_difference", f"<think>compare</think>{solution}", ref, options)


def bbox(b) -> str:
    return "<bbox>{} {} {} {}</bbox>".format(*b)


def test_all_found():
    r = spot(bbox(REFS[1]) + " and " + bbox(REFS[0]))
    assert r.reward == 1.0 and r.correct
    assert r.details["precision"] == 1.0 and r.details["recall"] == 1.0
    assert {(m["pred"], m["ref"]) for m in r.details["matches"]} == {(0, 1), (1, 0)}


def test_partial_by_hand():
    # pred [0,0,100,50] vs ref [0,0,100,100]: inter 5000 / union 10000 = 0.5 -> a match at 0.5
    # pred [600,600,800,800] vs ref [500,500,700,700]: inter 100*100=10000,
    #   union 40000+40000-10000=70000 -> 1/7, below 0.5: no match
    # 1 match, 2 preds, 2 refs: P = R = 1/2, F1 = 2*1/(2+2) = 1/2
    r = spot("<bbox>0 0 100 50</bbox><bbox>600 600 800 800</bbox>")
    assert r.reward == pytest.approx(0.5)
    assert r.details["precision"] == 0.5 and r.details["recall"] == 0.5
    assert r.details["matches"] == [{"pred": 0, "ref": 0, "iou": 0.5}]
    assert not r.correct  # correct needs F1 = 1 by default
    assert spot(
        "<bbox>0 0 100 50</bbox><bbox>600 600 800 800</bbox>", correct_threshold=0.5
    ).correct
    # a lower threshold lets the 1/7 pair match too
    assert (
        spot("<bbox>0 0 100 50</bbox><bbox>600 600 800 800</bbox>", iou_threshold=0.1).reward == 1.0
    )


def test_one_of_two_found():
    # 1 pred, matched; 2 refs: P = 1, R = 1/2, F1 = 2/3
    r = spot(bbox(REFS[0]))
    assert r.reward == pytest.approx(2 / 3)
    assert r.details["precision"] == 1.0 and r.details["recall"] == 0.5


def test_hungarian_beats_greedy():
    # All boxes span y 0..100, so IoU is the interval IoU in x.
    # refs R0 = x[0,100], R1 = x[10,110]; preds P0 = x[3,103], P1 = x[0,60]
    #   P0-R0: 97/103 = 0.942   P0-R1: 93/107 = 0.869
    #   P1-R0: 60/100 = 0.6     P1-R1: 50/110 = 0.455 (< 0.5)
    # Greedy: P0-R0, then P1 can only take R1 at 0.455 -> 1 match, F1 = 2/4 = 1/2.
    # Hungarian: P0-R1 + P1-R0, both >= 0.5 -> 2 matches, F1 = 1.
    refs = [[0, 0, 100, 100], [10, 0, 110, 100]]
    r = spot("<bbox>3 0 103 100</bbox><bbox>0 0 60 100</bbox>", refs)
    assert r.reward == 1.0
    ious = {(m["pred"], m["ref"]): m["iou"] for m in r.details["matches"]}
    assert ious == {(0, 1): round(93 / 107, 4), (1, 0): 0.6}


def test_spamming_boxes_does_not_pay():
    # both right boxes plus 98 decoys: P = 2/100, R = 1, F1 = 2*2/(100+2) = 4/102
    decoys = "".join(bbox([x, 900, x + 5, 905]) for x in range(0, 980, 10))
    r = spot(bbox(REFS[0]) + bbox(REFS[1]) + decoys)
    assert r.details["n_predicted"] == 100
    assert r.reward == pytest.approx(4 / 102)
    assert r.details["recall"] == 1.0 and r.details["precision"] == 0.02
    # a 4x4 grid of 250-boxes tiling the image: only [500,500,750,750] matches, with
    # [500,500,700,700]: inter 200*200 / union 62500 = 0.64 -> F1 = 2*1/(16+2) = 1/9
    grid = "".join(
        bbox([x, y, x + 250, y + 250]) for x in range(0, 1000, 250) for y in range(0, 1000, 250)
    )
    r = spot(grid)
    assert r.reward == pytest.approx(1 / 9)
    assert [m["iou"] for m in r.details["matches"]] == [0.64]
    # one box over everything: IoU with [0,0,100,100] is 0.01
    assert spot("<bbox>0 0 1000 1000</bbox>").reward == 0.0


def test_too_many_boxes_score_zero():
    r = spot(bbox(REFS[0]) + bbox(REFS[1]) + bbox([1, 1, 2, 2]) * 99)
    assert r.reward == 0.0 and r.error is None
    assert "too many boxes: 101 > max_boxes 100" in r.details["reason"]
    assert spot(bbox(REFS[0]) * 3, max_boxes=2).reward == 0.0


def test_no_differences():
    # nothing to find, nothing claimed: reward 1 (documented)
    r = spot("There are no differences.", [])
    assert r.reward == 1.0 and r.correct
    # claiming a difference where there is none
    assert spot(bbox(REFS[0]), []).reward == 0.0
    # finding nothing where there are differences
    r = spot("I see none.")
    assert r.reward == 0.0 and "no box" in r.details["reason"]


def test_pixel_coordinates():
    # 500x250 px: pixel box [0,0,50,25] -> x*2, y*4 -> [0,0,100,100]; [250,125,350,175] -> [500,500,700,700]
    r = spot(
        "[0, 0, 50, 25] and (250,125),(350,175)",
        coords="pixel",
        image_size=[500, 250],
        reference_coords="norm1000",
    )
    assert r.reward == 1.0


@pytest.mark.parametrize(
    "hostile",
    [
        "<bbox>nan nan nan nan</bbox>",
        "<bbox>0 0 inf inf</bbox>",
        "<bbox>-100 -100 -1 -1</bbox>",  # clipped to a zero-area box at the corner
        "<bbox>50 50 50 50</bbox>",
        "<bbox>1 2</bbox>",
    ],
)
def test_hostile_boxes(hostile):
    # the hostile box is a prediction that matches nothing: 2 right + 1 bad -> F1 = 4/5
    r = spot(bbox(REFS[0]) + bbox(REFS[1]) + hostile)
    assert r.error is None
    assert r.reward == pytest.approx(4 / 5)


def test_inverted_box_is_sorted():
    assert spot("<bbox>100 100 0 0</bbox><bbox>700 500 500 700</bbox>").reward == 1.0


def test_invalid_reference_and_options():
    r = verify("spot_difference", "x", {"boxes": [[0, 0, 10]]})
    assert r.error and "boxes.0" in r.error
    r = verify("spot_difference", "x", {"boxes": []}, {"iou_threshold": 0})
    assert r.error and "options.iou_threshold" in r.error
