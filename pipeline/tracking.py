"""Per-camera multi-object tracking with ultralytics' ByteTrack / BoT-SORT."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from detectors import Detections


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


TRACKER_DEFAULTS: dict[str, dict[str, Any]] = {
    "bytetrack": {},
    "botsort": {
        "gmc_method": "none",
        "proximity_thresh": 0.5,
        "appearance_thresh": 0.8,
        "with_reid": False,
        "model": "auto",
    },
}


class CameraTracker:
    """One tracker per camera; the lost-track buffer is given in seconds and converted with
    the camera's own processing frame rate.

    Args:
        kind: ``bytetrack`` or ``botsort``.
        fps: frames per second this tracker sees.
        lost_after_s: how long a lost track can be re-found.
        id_base: added to the tracker's ids, so a run's track ids never repeat another
            run's in the same Redis namespace (:data:`pipeline.runner.SESSION_SPAN`).
        thresholds: ``track_high_thresh``, ``track_low_thresh``, ``new_track_thresh``,
            ``match_thresh``, ``fuse_score`` (ultralytics' names and meanings).
    """

    def __init__(
        self,
        kind: str,
        fps: float,
        lost_after_s: float = 2.0,
        id_base: int = 0,
        **thresholds: Any,
    ) -> None:
        from ultralytics.trackers.bot_sort import BOTSORT
        from ultralytics.trackers.byte_tracker import BYTETracker
        from ultralytics.utils import IterableSimpleNamespace

        classes = {"bytetrack": BYTETracker, "botsort": BOTSORT}
        if kind not in classes:
            raise ValueError(f"unknown tracker {kind!r}; valid: {sorted(classes)}")
        params = {
            "tracker_type": kind,
            "track_high_thresh": 0.25,
            "track_low_thresh": 0.1,
            "new_track_thresh": 0.25,
            "match_thresh": 0.8,
            "fuse_score": True,
            **TRACKER_DEFAULTS[kind],
            **thresholds,
            "track_buffer": max(1, round(lost_after_s * fps)),
        }
        self.tracker = classes[kind](IterableSimpleNamespace(**params))
        self.id_base = id_base

    def update(self, detections: Detections, image: np.ndarray) -> list[Track]:
        rows = self.tracker.update(_Boxes(detections), image)
        return [
            Track(self.id_base + int(r[4]), np.asarray(r[:4], np.float32), float(r[5]))
            for r in rows
        ]
