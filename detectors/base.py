"""What every person detector returns, and the protocol it implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, runtime_checkable

import numpy as np
from pydantic import Field

from settingskit import Settings


class DetectorError(ValueError):
    """Missing or corrupt weights, or an unusable detector configuration."""


@dataclass(frozen=True)
class Detections:
    """People found in one frame.

    Attributes:
        xyxy: ``[N, 4]`` float32 boxes in pixels (x1, y1, x2, y2).
        scores: ``[N]`` float32 confidences in [0, 1].
    """

    xyxy: np.ndarray = field(default_factory=lambda: np.zeros((0, 4), np.float32))
    scores: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        scores = np.asarray(self.scores, np.float32).reshape(-1)
        if len(xyxy) != len(scores):
            raise ValueError(f"{len(xyxy)} boxes but {len(scores)} scores")
        if len(xyxy) and np.any(xyxy[:, 2:] < xyxy[:, :2]):
            raise ValueError("boxes must have x2 >= x1 and y2 >= y1")
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "scores", scores)

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, keep: np.ndarray) -> Detections:
        return Detections(self.xyxy[keep], self.scores[keep])


@runtime_checkable
class Detector(Protocol):
    """Batched BGR frames in, one :class:`Detections` per frame out.

    ``indices`` are the frames' 1-based numbers in their source; only detectors that replay
    stored detections need them.
    """

    name: str

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]: ...


class DetectorSettings(Settings):
    """What every detector kind's settings share. A kind subclasses this in its own module
    with a ``kind`` literal, its fields and their defaults (written only there), and
    ``build``; :data:`detectors.registry.KINDS` lists the kinds."""

    # True: one detector per camera (it keeps per-camera state, or reads a camera's file)
    per_camera: ClassVar[bool] = False
    # True: each camera must give its ``detections`` file (the detector replays it)
    needs_detections: ClassVar[bool] = False

    kind: str
    batch: int = Field(4, ge=1, description="frames per detector call (across cameras)")

    def build(self, detections: str | None = None) -> Detector:
        """The detector these settings describe (``detections``: a camera's file, for
        kinds that replay one)."""
        raise NotImplementedError(f"detector kind {self.kind!r} does not define build()")
