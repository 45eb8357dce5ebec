"""What the hand-over EM knows of the cameras before it looks at a single pair: where each
camera's tracks start (the background's place density) and which exit zone each track
ends in. Fitted once per window and shared by the EM on a sample of the starts and the
rounds over every pair, so both speak of the same kinds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipeline.matcher.camera_links import fit_zones

ZONE_POINTS = 2000  # foot points a camera's zones are fitted on


@dataclass(frozen=True)
class Site:
    """What the EM knows of the cameras before any pair: per tracklet the log density of
    its start among its camera's starts and its exit zone; per camera its span of time and
    its starts."""

    log_place: np.ndarray
    exit_zone: np.ndarray
    span: dict[str, float]
    starts_in: dict[str, np.ndarray]

    @classmethod
    def fit(
        cls,
        motion: dict[str, np.ndarray],
        cameras: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        usable: np.ndarray,
        seed: int,
    ) -> Site:
        rng = np.random.default_rng(seed)
        log_place = np.zeros(len(usable))
        exit_zone = np.full(len(usable), -1, np.int64)
        span: dict[str, float] = {}
        starts_in: dict[str, np.ndarray] = {}
        for camera in sorted(set(cameras.tolist())):
            mine = (cameras == camera) & usable
            if not mine.any():
                continue
            entries = motion["start_p"][mine]
            zones = fit_zones(_some(entries, rng), rng)
            log = zones.log_densities(entries)
            top = log.max(axis=1)
            log_place[mine] = (
                top + np.log(np.exp(log - top[:, None]).sum(axis=1)) - 2 * np.log(zones.scale)
            )
            span[camera] = max(float(ends[mine].max() - starts[mine].min()), 1.0)
            starts_in[camera] = np.flatnonzero(mine)
            exits = motion["end_p"][mine]
            exit_zone[mine] = fit_zones(_some(exits, rng), rng).assign(exits)
        return cls(log_place, exit_zone, span, starts_in)


def _some(points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """At most :data:`ZONE_POINTS` of ``points``, drawn at random: zones need no more."""
    if len(points) <= ZONE_POINTS:
        return points
    return points[rng.choice(len(points), ZONE_POINTS, replace=False)]
