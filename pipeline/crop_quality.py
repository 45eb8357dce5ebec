"""How good a crop is for re-identification (higher is better, in [0, 1])."""

from __future__ import annotations

import cv2
import numpy as np

EDGE_MARGIN_PX = 2
IDEAL_HEIGHT_PX = 160.0
SHARP_LAPLACIAN_VAR = 150.0


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` IoU of xyxy boxes."""
    tl = np.maximum(a[:, None, :2], b[None, :, :2])
    br = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(br - tl, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / np.maximum(area(a)[:, None] + area(b)[None] - inter, 1e-9)


def sharpness(crop: np.ndarray) -> float:
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    return float(min(1.0, cv2.Laplacian(gray, cv2.CV_64F).var() / SHARP_LAPLACIAN_VAR))


def crop_quality(
    crop: np.ndarray,
    box: np.ndarray,
    frame_shape: tuple[int, ...],
    score: float,
    max_overlap: float,
) -> float:
    """Product of: detector score; size (height up to 160 px); sharpness (Laplacian
    variance); 0.3 when the box touches the frame edge (the person is probably cut);
    ``1 - max IoU`` with other boxes in the frame (occlusion, mixed identities)."""
    h, w = frame_shape[:2]
    x1, y1, x2, y2 = box
    size = min(1.0, (y2 - y1) / IDEAL_HEIGHT_PX)
    cut = (
        x1 <= EDGE_MARGIN_PX
        or y1 <= EDGE_MARGIN_PX
        or x2 >= w - EDGE_MARGIN_PX
        or y2 >= h - EDGE_MARGIN_PX
    )
    return float(
        score * size * (0.5 + 0.5 * sharpness(crop)) * (0.3 if cut else 1.0) * (1.0 - max_overlap)
    )
