"""Physical plausibility of linking a tracklet to an identity's earlier sightings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.types import Sighting, Tracklet
from reid.runtime.clustering import co_occurring_pairs as overlapping_spans


def _overlap(a_start: float, a_end: float, b_start: float, b_end: float) -> bool:
    return a_start <= b_end and b_start <= a_end


def _transit_ok(
    config: MatcherConfig, source: str, left: float, target: str, arrived: float
) -> bool:
    if source == target or not config.topology:
        return True
    rule = config.transit(source, target)
    return rule is not None and rule.min_s <= arrived - left <= rule.max_s


def rejection(
    tracklet: Tracklet, sightings: Sequence[Sighting], config: MatcherConfig
) -> str | None:
    """Why ``tracklet`` cannot belong to the identity with ``sightings``, or None.

    - never in two places at once (unless the two cameras overlap), nor twice in one camera;
    - with a topology, the camera before and the camera after must be an allowed pair, with a
      transit time inside its window.
    """
    before: Sighting | None = None
    after: Sighting | None = None
    for s in sightings:
        if (s.camera_id, s.track_id) == (tracklet.camera_id, tracklet.track_id):
            continue
        if _overlap(s.start, s.end, tracklet.start, tracklet.end):
            if s.camera_id == tracklet.camera_id:
                return f"already in {s.camera_id} as track {s.track_id} at that time"
            if not config.overlaps(s.camera_id, tracklet.camera_id):
                return f"in {s.camera_id} at the same time"
            continue
        if s.end < tracklet.start and (before is None or s.end > before.end):
            before = s
        if s.start > tracklet.end and (after is None or s.start < after.start):
            after = s
    if before is not None and not _transit_ok(
        config, before.camera_id, before.end, tracklet.camera_id, tracklet.start
    ):
        return f"transit {before.camera_id} -> {tracklet.camera_id} not allowed in that time"
    if after is not None and not _transit_ok(
        config, tracklet.camera_id, tracklet.end, after.camera_id, after.start
    ):
        return f"transit {tracklet.camera_id} -> {after.camera_id} not allowed in that time"
    return None


def co_occurring_pairs(tracklets: Sequence[Tracklet]) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, of tracklets whose time spans overlap."""
    return overlapping_spans(
        np.array([t.start for t in tracklets]), np.array([t.end for t in tracklets])
    )
