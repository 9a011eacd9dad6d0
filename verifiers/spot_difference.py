"""The `spot_difference` verifier: F1 of answer boxes against the boxes of the differences.

A Hungarian matching first maximises the number of (prediction, reference) pairs whose IoU
reaches ``options.iou_threshold`` (default 0.5), then their summed IoU; only those pairs are
matches. reward = F1 = 2·matches / (#predictions + #references), so every extra box lowers
precision and spamming boxes does not pay; more than ``options.max_boxes`` (default 100)
boxes score 0 outright. ``correct`` needs F1 >= ``options.correct_threshold`` (default 1). No reference boxes and no predicted boxes is a perfect answer
(reward 1); boxes when there are no differences score 0.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from verifiers.geometry import (
    BoxesReference,
    CoordOptions,
    describe_parse,
    iou_matrix,
    load_options,
    match,
    normalize_box,
    parse_boxes,
    reference_boxes,
    rounded,
)
from verifiers.registry import register
from verifiers.response_format import extract_solution
from verifiers.schemas import VerifyResult

NAME = "spot_difference"


class SpotDifferenceOptions(CoordOptions):
    iou_threshold: float = Field(0.5, gt=0, le=1)
    # correct (e.g. for rejection sampling) means every difference found and nothing extra
    correct_threshold: float = Field(1.0, ge=0, le=1)


@register(NAME, version="1", reference=BoxesReference)
def verify_spot_difference(response: str, reference: Any, options: dict[str, Any]) -> VerifyResult:
    """F1 of answer boxes matched one-to-one to the differences at IoU >= iou_threshold."""
    ref = BoxesReference.model_validate(reference)
    try:
        opts = load_options(SpotDifferenceOptions, options)
        refs = reference_boxes(ref.boxes, opts)
    except ValueError as e:
        return VerifyResult.failure(NAME, str(e))

    items = parse_boxes(extract_solution(response))
    details: dict[str, Any] = {"n_reference": len(refs), "n_predicted": len(items)}
    if len(items) > opts.max_boxes:
        msg = f"too many boxes: {len(items)} > max_boxes {opts.max_boxes}"
        details["reason"] = msg
        return VerifyResult(reward=0.0, correct=False, details=details)

    preds = [normalize_box(p.values, opts.scale("response")) for p in items]
    pairs = match(iou_matrix(preds, refs), opts.iou_threshold)
    n_pred, n_ref, n_match = len(preds), len(refs), len(pairs)
    if n_pred == 0 and n_ref == 0:
        precision = recall = f1 = 1.0  # nothing to find and nothing claimed
    else:
        precision = n_match / n_pred if n_pred else 0.0
        recall = n_match / n_ref if n_ref else 0.0
        f1 = 2 * n_match / (n_pred + n_ref)
    details.update(
        precision=rounded(precision),
        recall=rounded(recall),
        parsed=describe_parse(items),
        invalid=[i for i, p in enumerate(preds) if p is None],
        matches=[{"pred": i, "ref": j, "iou": rounded(s)} for i, j, s in pairs],
    )
    if n_pred == 0 and n_ref > 0:
        details["reason"] = "no box found in the solution"
    return VerifyResult(reward=f1, correct=f1 >= opts.correct_threshold, details=details)
