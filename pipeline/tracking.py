"""Per-camera multi-object tracking with ultralytics' ByteTrack / BoT-SORT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import Field

from detectors import Detections
from reid.config import Settings, kind_union


@dataclass(frozen=True)
class Track:
    """A tracked box in one frame."""

    track_id: int
    xyxy: np.ndarray  # [4] float32
    score: float


class _Boxes:
    """The slice of ultralytics' ``Boxes`` interface its trackers read (numpy-backed)."""

    def __init__(self, detections: Detections) -> None:
        xyxy = detections.xyxy
        self.conf = detections.scores
        self.cls = np.zeros(len(xyxy), np.float32)  # one class: person
        self.xyxy = xyxy
        self.xywh = np.concatenate(
            [(xyxy[:, :2] + xyxy[:, 2:]) / 2, xyxy[:, 2:] - xyxy[:, :2]], axis=1
        )

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index: Any) -> _Boxes:
        picked = _Boxes.__new__(_Boxes)
        picked.conf, picked.cls = self.conf[index], self.cls[index]
        picked.xyxy, picked.xywh = self.xyxy[index], self.xywh[index]
        return picked


class TrackerSettings(Settings):
    """What both ultralytics trackers read (their names and meanings); defaults here only."""

    kind: str
    lost_after_s: float = Field(2.0, gt=0, description="how long a lost track can be re-found")
    track_high_thresh: float = Field(0.25, ge=0.0, le=1.0)
    track_low_thresh: float = Field(0.1, ge=0.0, le=1.0)
    new_track_thresh: float = Field(0.25, ge=0.0, le=1.0)
    match_thresh: float = Field(0.8, ge=0.0, le=1.0)
    fuse_score: bool = True


class ByteTrackSettings(TrackerSettings):
    """``tracker.kind: bytetrack``."""

    kind: Literal["bytetrack"] = "bytetrack"


class BotSortSettings(TrackerSettings):
    """``tracker.kind: botsort``, without camera-motion compensation or its own re-id
    model (our embedder links people; its appearance model would be a download)."""

    kind: Literal["botsort"] = "botsort"
    proximity_thresh: float = Field(0.5, ge=0.0, le=1.0)
    appearance_thresh: float = Field(0.8, ge=0.0, le=1.0)


if TYPE_CHECKING:  # the checker sees the base class, pydantic the union
    TrackerConfig = TrackerSettings
else:
    TrackerConfig = kind_union((ByteTrackSettings, BotSortSettings), default="bytetrack")
# what ultralytics requires of BoT-SORT beyond the settings above
_BOTSORT_FIXED = {"gmc_method": "none", "with_reid": False, "model": "auto"}


class CameraTracker:
    """One tracker per camera; the lost-track buffer is given in seconds and converted with
    the camera's own processing frame rate.

    Args:
        settings: the tracker kind and its thresholds.
        fps: frames per second this tracker sees.
        id_base: added to the tracker's ids, so a run's track ids never repeat another
            run's in the same Redis namespace (:data:`pipeline.runner.SESSION_SPAN`).
    """

    def __init__(self, settings: TrackerSettings, fps: float, id_base: int = 0) -> None:
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        params = {
            "tracker_type": settings.kind,
            **settings.model_dump(exclude={"kind", "lost_after_s"}),
            "track_buffer": max(1, round(settings.lost_after_s * fps)),
        }
        self.tracker: BYTETracker  # BOTSORT is one, with global motion and appearance
        if isinstance(settings, BotSortSettings):
            self.tracker = BOTSORT(IterableSimpleNamespace(**params, **_BOTSORT_FIXED))
        else:
            self.tracker = BYTETracker(IterableSimpleNamespace(**params))
        self.id_base = id_base

    def update(self, detections: Detections, image: np.ndarray) -> list[Track]:
        rows = self.tracker.update(_Boxes(detections), image)
        return [
            Track(self.id_base + int(r[4]), np.asarray(r[:4], np.float32), float(r[5]))
            for r in rows
        ]
