"""Tracklet lifecycle per camera: active -> lost -> finished, keeping the K best crops.

A summary (:class:`TrackletSummary`) is emitted every ``summary_every_s`` while a track is
active (so people are linked while still in view) and once when it finishes.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from pipeline.crop_quality import crop_quality, iou_matrix
from pipeline.sources import Frame
from pipeline.tracking import Track

PATH_KEEP = 256
PATH_POINTS = 32


@dataclass(frozen=True)
class TrackletSummary:
    camera_id: str
    track_id: int
    start: float
    end: float
    crops: tuple[np.ndarray, ...]  # best first
    final: bool
    crop_ids: tuple[int, ...] = ()  # unique per camera: repeated summaries re-use embeddings
    path: np.ndarray | None = None  # [P, 5] (time, x1, y1, x2, y2), for spatial evidence


@dataclass
class _State:
    start: float
    end: float
    last_seen: float
    boxes: int = 0
    best: list[tuple[float, int, np.ndarray]] = field(default_factory=list)  # min-heap
    emitted_at: float | None = None
    path: list[tuple[float, float, float, float, float]] = field(default_factory=list)

    def record(self, now: float, xyxy: np.ndarray) -> None:
        """Keep the box; beyond PATH_KEEP samples, every other one is dropped (bounded)."""
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        self.path.append((now, x1, y1, x2, y2))
        if len(self.path) > PATH_KEEP:
            self.path = self.path[:-1:2] + self.path[-1:]

    def static_object(self, min_motion: float, min_aspect: float) -> bool:
        """Never moved (centre range under ``min_motion`` median box heights) and never
        upright (median height/width under ``min_aspect``): a thing on the ground, not a
        person, whatever the detector's class said."""
        boxes = np.asarray(self.path)[:, 1:]
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        moved = np.ptp(centres, axis=0).max() >= min_motion * max(np.median(height), 1.0)
        upright = np.median(height / np.maximum(width, 1.0)) >= min_aspect
        return not moved and not upright

    def path_summary(self) -> np.ndarray:
        """Up to PATH_POINTS boxes evenly spaced along the track (first and last kept)."""
        keep = np.unique(np.linspace(0, len(self.path) - 1, PATH_POINTS).round().astype(int))
        return np.asarray([self.path[n] for n in keep], np.float64)


class TrackletBuilder:
    """Collects one camera's tracks into summaries.

    Args:
        best_k: crops kept per track (by :func:`crop_quality`).
        lost_after_s: unseen this long -> lost (no more periodic summaries).
        finish_after_s: unseen this long -> finished (final summary, state dropped).
        summary_every_s: period of summaries while active.
        min_boxes: tracks shorter than this are noise and never summarised.
        min_height: boxes smaller than this (pixels) are not kept as crops.
        min_motion, min_aspect: a track that never moves ``min_motion`` box heights and is
            never upright (``min_aspect``) is a static object and never summarised
            (``min_motion=0``: no check).
    """

    def __init__(
        self,
        camera_id: str,
        best_k: int = 4,
        lost_after_s: float = 1.0,
        finish_after_s: float = 3.0,
        summary_every_s: float = 5.0,
        min_boxes: int = 3,
        min_height: int = 48,
        min_motion: float = 0.5,
        min_aspect: float = 1.0,
    ) -> None:
        self.camera_id, self.best_k = camera_id, best_k
        self.lost_after_s, self.finish_after_s = lost_after_s, finish_after_s
        self.summary_every_s, self.min_boxes, self.min_height = (
            summary_every_s,
            min_boxes,
            min_height,
        )
        self.min_motion, self.min_aspect = min_motion, min_aspect
        self.tracks: dict[int, _State] = {}
        self._counter = 0

    def active(self, now: float) -> int:
        return sum(now - s.last_seen < self.lost_after_s for s in self.tracks.values())

    def update(self, frame: Frame, tracks: list[Track]) -> list[TrackletSummary]:
        image, now = frame.image, frame.timestamp
        boxes = np.stack([t.xyxy for t in tracks]) if tracks else np.zeros((0, 4), np.float32)
        overlap = iou_matrix(boxes, boxes) if len(tracks) > 1 else np.zeros((len(tracks),) * 2)
        np.fill_diagonal(overlap, 0.0)
        for n, t in enumerate(tracks):
            state = self.tracks.setdefault(t.track_id, _State(now, now, now))
            state.end = state.last_seen = now
            state.boxes += 1
            state.record(now, t.xyxy)
            x1, y1, x2, y2 = np.clip(t.xyxy, 0, [image.shape[1], image.shape[0]] * 2).astype(int)
            if y2 - y1 < self.min_height or x2 - x1 < 8:
                continue
            crop = image[y1:y2, x1:x2]
            quality = crop_quality(
                crop,
                t.xyxy,
                image.shape,
                t.score,
                float(overlap[n].max()) if len(tracks) > 1 else 0.0,
            )
            self._counter += 1
            entry = (quality, self._counter, crop.copy())
            if len(state.best) < self.best_k:
                heapq.heappush(state.best, entry)
            elif quality > state.best[0][0]:
                heapq.heapreplace(state.best, entry)
        return self._due(now)

    def _summary(self, track_id: int, state: _State, final: bool) -> TrackletSummary:
        best = sorted(state.best, key=lambda e: -e[0])
        state.emitted_at = state.last_seen
        return TrackletSummary(
            self.camera_id,
            track_id,
            state.start,
            state.end,
            tuple(c for _, _, c in best),
            final,
            tuple(n for _, n, _ in best),
            state.path_summary(),
        )

    def _usable(self, state: _State) -> bool:
        if state.boxes < self.min_boxes or not state.best:
            return False
        return not (self.min_motion and state.static_object(self.min_motion, self.min_aspect))

    def _due(self, now: float) -> list[TrackletSummary]:
        out = []
        # _usable (the static-object check over the track's path) runs only for a track that
        # is finishing or due a summary, not for every track on every frame
        for track_id, state in list(self.tracks.items()):
            if now - state.last_seen >= self.finish_after_s:
                del self.tracks[track_id]
                if self._usable(state):  # always: it also releases the cached embeddings
                    out.append(self._summary(track_id, state, final=True))
            elif (
                now - state.last_seen < self.lost_after_s
                and (
                    now - (state.emitted_at if state.emitted_at is not None else state.start)
                    >= self.summary_every_s
                )
                and self._usable(state)
            ):
                out.append(self._summary(track_id, state, final=False))
        return out

    def flush(self) -> list[TrackletSummary]:
        """Final summaries of every open track (end of input or shutdown)."""
        out = [
            self._summary(tid, s, final=True) for tid, s in self.tracks.items() if self._usable(s)
        ]
        self.tracks.clear()
        return out
