"""The `grounding` verifier: boxes (IoU) or points (inside the box) against reference boxes.

One box each: reward = IoU. Several: a one-to-one Hungarian matching that maximises the
summed IoU, and reward = sum of matched IoUs / max(#predictions, #references), so extra or
missing boxes cost. With ``options.iou_threshold`` a matched pair counts 1 if its IoU reaches
the threshold, else 0. If the solution holds no box, its ``<point>`` tags are scored instead:
a point counts 1 if it lies in the reference box it is matched to (same normalisation).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from verifiers.geometry import (
    BoxesReference,
    CoordOptions,
    RefBox,
    describe_parse,
    hits_matrix,
    iou_matrix,
    load_options,
    match,
    normalize_box,
    normalize_point,
    parse_boxes,
    parse_points,
    reference_boxes,
    rounded,
)
from verifiers.registry import register
from verifiers.response_format import extract_solution
from verifiers.schemas import VerifyResult

NAME = "grounding"


class GroundingReference(BoxesReference):
    """The boxes to find: ``{"boxes": [[x1, y1, x2, y2], ...]}``, at least one."""

    boxes: list[RefBox] = Field(..., min_length=1, max_length=1000)


class GroundingOptions(CoordOptions):
    iou_threshold: float | None = Field(None, gt=0, le=1)
    correct_threshold: float = Field(0.5, ge=0, le=1)
    # "box" ignores points, "point" ignores boxes; "any" reads boxes, else points
    answer_type: Literal["any", "box", "point"] = "any"


@register(NAME, version="1", reference=GroundingReference)
def verify_grounding(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """IoU of answer boxes (Hungarian-matched) or points inside reference boxes."""
    ref = GroundingReference.model_validate(reference)
    try:
        opts = load_options(GroundingOptions, options)
        refs = reference_boxes(ref.boxes, opts)
    except ValueError as e:
        return VerifyResult.failure(NAME, str(e))

    solution = extract_solution(response)
    boxes = parse_boxes(solution) if opts.answer_type != "point" else []
    points = parse_points(solution) if not boxes and opts.answer_type != "box" else []
    kind = "box" if boxes else "point" if points else None
    details: dict[str, Any] = {"kind": kind, "n_reference": len(refs)}
    if kind is None:
        wanted = {"any": "<bbox> or <point>", "box": "box", "point": "<point>"}[opts.answer_type]
        details["reason"] = f"no {wanted} found in the solution"
        return VerifyResult(reward=0.0, correct=False, details=details)
    items = boxes or points
    details["n_predicted"] = len(items)
    if len(items) > opts.max_boxes:
        msg = f"too many {kind}{'es' if kind == 'box' else 's'}: {len(items)} > max_boxes {opts.max_boxes}"
        details["reason"] = msg
        return VerifyResult(reward=0.0, correct=False, details=details)

    scale = opts.scale("response")
    if kind == "box":
        preds = [normalize_box(p.values, scale) for p in items]
        scores = iou_matrix(preds, refs)
        pairs = match(scores, opts.iou_threshold)
        credit = [1.0 if opts.iou_threshold is not None else s for _, _, s in pairs]
    else:
        preds = [normalize_point(p.values, scale) for p in items]
        scores = hits_matrix(preds, refs)
        pairs = match(scores)
        credit = [s for _, _, s in pairs]
    reward = min(sum(credit) / max(len(preds), len(refs)), 1.0)

    details.update(
        parsed=describe_parse(items),
        predictions=[None if p is None else [rounded(v) for v in p] for p in preds],
        invalid=[i for i, p in enumerate(preds) if p is None],
        matches=[
            {"pred": i, "ref": j, ("iou" if kind == "box" else "inside"): rounded(s)}
            for i, j, s in pairs
        ],
    )
    if len(preds) == 1 and len(refs) == 1 and kind == "box":
        details["iou"] = rounded(scores[0, 0])
    return VerifyResult(
        reward=reward,
        correct=reward >= opts.correct_threshold,
        details=details,
    )
