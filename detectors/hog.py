"""OpenCV's HOG + linear SVM people detector: needs no weights at all (opencv-python < 5)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from detectors.base import Detections, DetectorError


class HogDetector:
    """Dalal-Triggs pedestrians; slow and less accurate than YOLO, but always available."""

    name = "hog"

    def __init__(self, conf: float = 0.3, scale: float = 1.05, max_side: int = 640) -> None:
        if not hasattr(cv2, "HOGDescriptor"):
            raise DetectorError(
                f"detector.kind: hog needs OpenCV's HOGDescriptor, which OpenCV {cv2.__version__} "
                "does not have (OpenCV 5 moved it out): install opencv-python<5 as the project "
                "pins it, or use detector.kind: yolo"
            )
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.conf, self.scale, self.max_side = conf, scale, max_side

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
        keep = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), self.conf, 0.4)
        keep = np.asarray(keep, int).reshape(-1)
        return Detections(xyxy[keep], scores[keep])

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]:
        return [self._one(f) for f in frames]
