"""How many of a reference detector's boxes another detector finds (IoU, one to one)."""

from __future__ import annotations

from collections.abc import Sequence

from detectors.base import Detections


def matched(reference: Detections, found: Detections, iou: float = 0.5) -> int:
    """Reference boxes paired one to one with a found box of IoU >= ``iou`` (the most pairs)."""
    if not len(reference) or not len(found):
        return 0
    from scipy.optimize import linear_sum_assignment
    from ultralytics.utils.metrics import bbox_ioa

    close = bbox_ioa(reference.xyxy, found.xyxy, iou=True) >= iou
    rows, cols = linear_sum_assignment(close, maximize=True)
    return int(close[rows, cols].sum())


def box_recall(
    reference: Sequence[Detections], found: Sequence[Detections], iou: float = 0.5
) -> float:
    """Share of the reference boxes found, frame by frame (1.0 when there are none)."""
    total = sum(len(r) for r in reference)
    hits = sum(matched(r, f, iou) for r, f in zip(reference, found, strict=True))
    return hits / total if total else 1.0
