"""OpenCV's HOG + linear SVM people detector: needs no weights at all (opencv-python < 5)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from detectors.base import Detections, DetectorError, DetectorSettings


class HogSettings(DetectorSettings):
    """``detector.kind: hog``."""

    kind: Literal["hog"] = "hog"
    conf: float = Field(0.35, ge=0.0, le=1.0, description="SVM score after a sigmoid")
    scale: float = Field(1.05, gt=1.0, description="image pyramid step")
    max_side: int = Field(640, ge=64, description="frames are shrunk to this longest side")

    def build(self, detections: str | None = None) -> HogDetector:
        return HogDetector(self)


class HogDetector:
    """Dalal-Triggs pedestrians; slow and less accurate than YOLO, but always available."""

    name = "hog"

    def __init__(self, settings: HogSettings) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorError(
                f"detector.kind: hog needs OpenCV's HOGDescriptor, which OpenCV {cv2.__version__} "
                "does not have (OpenCV 5 moved it out): install opencv-python<5 as the project "
                "pins it, or use detector.kind: yolo"
            )
        self.hog = cv2.HOGDescriptor()
        people = np.asarray(cv2.HOGDescriptor.getDefaultPeopleDetector(), np.float32)
        self.hog.setSVMDetector(people)
        self.conf, self.scale, self.max_side = settings.conf, settings.scale, settings.max_side

    def _one(self, frame: np.ndarray) -> Detections:
        factor = min(1.0, self.max_side / max(frame.shape[:2]))
        small = cv2.resize(frame, None, fx=factor, fy=factor) if factor < 1 else frame
        boxes, weights = self.hog.detectMultiScale(small, winStride=(8, 8), scale=self.scale)
        if len(boxes) == 0:
            return Detections()
        xywh = np.asarray(boxes, np.float32) / factor
        scores = 1.0 / (
            1.0 + np.exp(-np.asarray(weights, np.float32).reshape(-1))
        )  # SVM margin -> (0, 1)
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
        kept = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.conf, 0.4)
        keep = np.asarray(kept, int).reshape(-1)
        return Detections(xyxy[keep], scores[keep])

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]:
        return [self._one(f) for f in frames]
