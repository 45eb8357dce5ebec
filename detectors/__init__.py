"""Person detectors behind one protocol: YOLO (ultralytics), OpenCV HOG, precomputed MOT."""

from detectors.base import Detections, Detector, DetectorError
from detectors.registry import build_detector, default_weights

__all__ = ["Detections", "Detector", "DetectorError", "build_detector", "default_weights"]
