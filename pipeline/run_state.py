"""What a run has done so far: per-camera and per-stage figures, read by the live table,
the summary and the Prometheus exporter."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.sources import SourceStats

STAGES = ("read", "detect", "track", "embed", "match", "relink", "output")


@dataclass
class CameraStats:
    """One camera's figures; the reader's counters are read through, never copied."""

    source: SourceStats = field(default_factory=SourceStats)
    frames: int = 0
    detections: int = 0
    active_tracks: int = 0
    fps: float = 0.0
    finished: bool = False

    @property
    def dropped(self) -> int:
        return self.source.dropped

    @property
    def corrupt(self) -> int:
        return self.source.corrupt

    @property
    def reconnects(self) -> int:
        return self.source.reconnects

    @property
    def error(self) -> str | None:
        return self.source.error

    def as_dict(self) -> dict[str, Any]:
        names = (
            "frames",
            "detections",
            "active_tracks",
            "fps",
            "dropped",
            "corrupt",
            "reconnects",
            "finished",
            "error",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class RunState:
    cameras: dict[str, CameraStats]
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    stage_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    decisions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    identities: set[str] = field(default_factory=set)
    identity_cameras: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    started: float = field(default_factory=time.perf_counter)
    queue_depths: Callable[[], dict[str, int]] = field(default=dict)

    def time(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds
        self.stage_calls[stage] += 1

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        frames = sum(c.frames for c in self.cameras.values())
        return {
            "identities": len(self.identities),
            "cross_camera_identities": sum(len(c) > 1 for c in self.identity_cameras.values()),
            "decisions": dict(self.decisions),
            "frames": frames,
            "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2) if wall else 0.0,
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "cameras": {k: v.as_dict() for k, v in self.cameras.items()},
        }
