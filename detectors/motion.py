"""Moving upright blobs as people, for fixed cameras: OpenCV's MOG2 background model, no
weights at all. Far less precise than YOLO (groups of people merge, a person standing still
fades into the background), but a start where nothing can be installed.

This module is also the documented example of adding a detector kind (docs/detectors.md):
settings with a ``kind`` literal and ``build``, the detector, and one entry in
``detectors.registry.KINDS``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar, Literal

import cv2
import numpy as np
from pydantic import Field

from detectors.base import Detections, DetectorSettings


class MotionSettings(DetectorSettings):
    """``detector.kind: motion``."""

    per_camera: ClassVar[bool] = True  # each camera learns its own background
    kind: Literal["motion"] = "motion"
    history: int = Field(200, ge=1, description="frames the background model remembers")
    min_height: float = Field(0.1, gt=0, le=1, description="fraction of the frame height")
    min_aspect: float = Field(1.2, gt=0, description="upright: height / width at least")

    def build(self, detections: str | None = None) -> MotionDetector:
        return MotionDetector(self)


class MotionDetector:
    """Foreground blobs of a per-camera background model, kept when tall and upright."""

    name = "motion"

    def __init__(self, settings: MotionSettings) -> None:
        self.settings = settings
        self.background = cv2.createBackgroundSubtractorMOG2(
            history=settings.history, detectShadows=True
        )
        self.kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))

    def _one(self, frame: np.ndarray) -> Detections:
        mask = self.background.apply(frame)
        mask = np.where(mask == 255, 255, 0).astype(np.uint8)  # 127: shadow, not a person
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, self.kernel)
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, self.kernel, iterations=2)
        count, _, stats, _ = cv2.connectedComponentsWithStats(mask)
        x, y, w, h, area = (stats[1:count, i] for i in range(5))  # label 0: the background
        keep = (h >= self.settings.min_height * frame.shape[0]) & (
            h >= self.settings.min_aspect * w
        )
        boxes = np.stack([x, y, x + w, y + h], axis=1)[keep].astype(np.float32)
        fill = (area / np.maximum(w * h, 1))[keep].astype(np.float32)  # a solid blob: surer
        return Detections(boxes, np.clip(fill, 0.0, 1.0))

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]:
        return [self._one(frame) for frame in frames]
