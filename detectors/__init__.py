"""Person detectors behind one protocol: YOLO (ultralytics), OpenCV HOG, precomputed MOT."""

from detectors.base import Detections, Detector, DetectorError, DetectorSettings
from detectors.registry import KINDS, DetectorConfig, build_detector, detector_settings
from detectors.yolo_weights import default_weights

__all__ = [
    "KINDS",
    "DetectorConfig",
    "Detections",
    "Detector",
    "DetectorError",
    "DetectorSettings",
    "build_detector",
    "default_weights",
    "detector_settings",
]
