"""Detections read from MOTChallenge files (``frame,id,x,y,w,h,conf,...``; frames 1-based),
so tracking and matching can be evaluated apart from detection."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np

from detectors.base import Detections, DetectorError, DetectorSettings


class PrecomputedSettings(DetectorSettings):
    """``detector.kind: precomputed``: each camera replays its ``detections`` MOT file."""

    per_camera: ClassVar[bool] = True
    needs_detections: ClassVar[bool] = True
    kind: Literal["precomputed"] = "precomputed"

    def build(self, detections: str | None = None) -> PrecomputedDetector:
        if detections is None:
            raise DetectorError("detector kind 'precomputed' needs a MOT detections file")
        return PrecomputedDetector(detections)


def read_mot(path: str | Path) -> dict[int, Detections]:
    """Frame number (1-based) -> detections; a malformed line is an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise DetectorError(f"MOT detections file {path} does not exist")
    rows: dict[int, list[list[float]]] = defaultdict(list)
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            values = [float(v) for v in line.split(",")[:7]]
            frame, _, x, y, w, h, conf = values
        except ValueError as exc:
            raise DetectorError(f"{path}:{number}: expected frame,id,x,y,w,h,conf,...") from exc
        if w < 0 or h < 0:
            raise DetectorError(f"{path}:{number}: negative box size {w} x {h}")
        rows[int(frame)].append([x, y, x + w, y + h, conf])
    return {
        f: Detections(np.asarray(r)[:, :4], np.clip(np.asarray(r)[:, 4], 0, 1))
        for f, r in rows.items()
    }


class PrecomputedDetector:
    """Replays a MOT file by frame number (``indices``); the pixels are not looked at."""

    name = "precomputed"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.by_frame = read_mot(self.path)

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]:
        if indices is None or len(indices) != len(frames):
            raise DetectorError("precomputed detections need the frame numbers (indices)")
        return [self.by_frame.get(n, Detections()) for n in indices]
