"""Values that cross the matcher boundary (frozen, validated on construction)."""

from __future__ import annotations

import warnings
from dataclasses import InitVar, dataclass, field

import numpy as np

NORM_TOLERANCE = 1e-3
MAX_EPOCH_CHARS = 128


class TrackletError(ValueError):
    """A tracklet summary is malformed (shapes, norms, times)."""


@dataclass(frozen=True)
class Tracklet:
    """Summary of one person's track in one camera.

    Attributes:
        camera_id: the camera's id from cams.yaml.
        track_id: the tracker's local id in that camera.
        start, end: first and last time seen (unix seconds, or seconds in a file).
        features: ``[K, D]`` float32, L2-normalised exemplar embeddings.
        projections: ``[K, r, h, w]`` conv maps of the exemplars projected on the model's
            channel basis (the embedder's ``projections``, scored by
            :class:`reid.runtime.consistency.ConsistencyScorer`), or None for feature-only
            matching. Stored under the name ``attention`` in Redis and run records.
        crops: references (paths) of the exemplar crops, for queries and training data.
        path: ``[P, 5]`` boxes along the track, ``(time, x1, y1, x2, y2)`` in the camera's
            pixels, time-ordered within ``start..end``; or None. Re-association uses it for
            spatial evidence (where overlapping cameras see the same spot).
        epoch: which footage clock ``start``/``end`` are on. Live cameras share the wall
            clock (``"wall"``); a run over files has its own (its session), unless its
            camera workers are told to share one (``matcher.footage_epoch``).
            Re-association only compares tracklets of one epoch: the times of two runs
            over the same file say nothing about each other.
    """

    camera_id: str
    track_id: int
    start: float
    end: float
    features: np.ndarray
    projections: np.ndarray | None = None
    crops: tuple[str, ...] = field(default=())
    path: np.ndarray | None = None
    epoch: str = ""
    # the earlier name of ``projections``: accepted with a warning for a release
    attention: InitVar[np.ndarray | None] = None

    def __post_init__(self, attention: np.ndarray | None) -> None:
        where = f"tracklet {self.camera_id}:{self.track_id}"
        if attention is not None:
            warnings.warn(
                "Tracklet(attention=...) is deprecated: the field is `projections`",
                DeprecationWarning,
                stacklevel=3,
            )
            if self.projections is not None:
                raise TrackletError(f"{where}: give projections or attention, not both")
            object.__setattr__(self, "projections", attention)
        if len(self.epoch) > MAX_EPOCH_CHARS or any(c in self.epoch for c in "\t\n"):
            raise TrackletError(f"{where}: epoch must be at most {MAX_EPOCH_CHARS} characters")
        if not self.camera_id or any(c in self.camera_id for c in ":\t\n"):
            raise TrackletError(f"{where}: camera_id must be non-empty without ':' or tabs")
        if not np.isfinite([self.start, self.end]).all() or self.end < self.start:
            raise TrackletError(f"{where}: needs finite start <= end, got {self.start}..{self.end}")
        features = np.ascontiguousarray(self.features, dtype=np.float32)
        if features.ndim != 2 or len(features) == 0:
            raise TrackletError(
                f"{where}: features must be K x D with K >= 1, got {features.shape}"
            )
        norms = np.linalg.norm(features, axis=1)
        if not np.all(np.abs(norms - 1.0) < NORM_TOLERANCE):
            raise TrackletError(f"{where}: features must be L2-normalised (norms {norms.round(3)})")
        object.__setattr__(self, "features", features)
        if self.projections is not None:
            projections = np.ascontiguousarray(self.projections, dtype=np.float32)
            if projections.ndim != 4 or len(projections) != len(features):
                raise TrackletError(
                    f"{where}: projections must be K x r x h x w with K = {len(features)}, "
                    f"got {projections.shape}"
                )
            object.__setattr__(self, "projections", projections)
        if self.path is not None:
            path = np.ascontiguousarray(self.path, dtype=np.float64)
            slack = 1e-3 + 1e-9 * abs(self.end)
            if (
                path.ndim != 2
                or path.shape[1] != 5
                or not np.isfinite(path).all()
                or np.any(np.diff(path[:, 0]) < 0)
                or path[0, 0] < self.start - slack
                or path[-1, 0] > self.end + slack
            ):
                raise TrackletError(
                    f"{where}: path must be P x 5 (time, x1, y1, x2, y2), finite, time-ordered "
                    f"within start..end, got shape {path.shape}"
                )
            object.__setattr__(self, "path", path)

    @property
    def ref(self) -> str:
        return f"{self.camera_id}\t{self.track_id}"


@dataclass(frozen=True)
class Sighting:
    """One tracklet of an identity, as stored in Redis."""

    identity: str
    camera_id: str
    track_id: int
    start: float
    end: float
    crops: tuple[str, ...] = ()


@dataclass(frozen=True)
class Decision:
    """What the matcher did with a tracklet."""

    identity: str
    action: str  # "new_identity", "link", "update" or "duplicate"
    distance: float | None = None
    candidates: int = 0
