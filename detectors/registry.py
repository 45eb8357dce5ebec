"""Detector kinds by name: each kind's settings class builds its detector.

Adding a kind is one module (a :class:`~detectors.base.DetectorSettings` subclass with a
``kind`` literal and ``build``, and the detector) plus one entry in :data:`KINDS`; cams.yaml
picks it with ``detector.kind`` (docs/detectors.md shows an example).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import TypeAdapter, ValidationError

from detectors.base import Detector, DetectorError, DetectorSettings
from detectors.hog import HogSettings
from detectors.motion import MotionSettings
from detectors.precomputed import PrecomputedSettings
from detectors.yolo import YoloSettings
from settingskit import kind_union

KINDS: tuple[type[DetectorSettings], ...] = (
    YoloSettings,
    HogSettings,
    PrecomputedSettings,
    MotionSettings,
)

# the settings of any kind (what PipelineConfig.detector holds); YOLO unless ``kind`` says
if TYPE_CHECKING:  # the checker sees the base class, pydantic the union
    DetectorConfig = DetectorSettings
else:
    DetectorConfig = kind_union(KINDS, default="yolo")


def detector_settings(**settings: Any) -> DetectorSettings:
    """Validated settings of the kind ``settings["kind"]`` names."""
    try:
        return TypeAdapter(DetectorConfig).validate_python(settings)
    except ValidationError as exc:
        valid = ", ".join(k.model_fields["kind"].default for k in KINDS)
        raise DetectorError(f"invalid detector settings (valid kinds: {valid}): {exc}") from None


def build_detector(kind: str = "yolo", detections: str | None = None, **settings: Any) -> Detector:
    """One detector from keyword settings, e.g. ``build_detector("yolo", weights="x.pt")``;
    ``detections``: the MOT file a ``precomputed`` detector replays."""
    return detector_settings(kind=kind, **settings).build(detections)
