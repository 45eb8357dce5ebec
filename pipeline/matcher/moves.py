"""Evidence of a person's moves, for re-association, most specific first: the hand-overs
learned from ends and starts (:class:`~pipeline.matcher.handover.Handover`), the camera
links learned from exits and entries (:class:`~pipeline.matcher.camera_links.CameraLinks`),
else the transit times of confident links (:class:`~pipeline.matcher.evidence.TransitModel`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.matcher.camera_links import CameraLinks
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.evidence import TransitModel, sample_gaps
from pipeline.matcher.handover import Handover
from pipeline.matcher.types import Tracklet
from reid.runtime.clustering import Cluster


@dataclass(frozen=True)
class Moves:
    """What re-association learned about moves; each later model speaks where the earlier
    ones are silent."""

    transit: TransitModel
    links: CameraLinks | None = None
    handover: Handover | None = None


def junction_llr(tracklets: Sequence[Tracklet], ca: Cluster, cb: Cluster, moves: Moves) -> float:
    """Transit evidence of the moves between ``ca`` and ``cb`` that a merge would create."""
    sequence = sorted(
        [(tracklets[n].start, tracklets[n].end, n, 0) for n in ca.members]
        + [(tracklets[n].start, tracklets[n].end, n, 1) for n in cb.members]
    )
    return sum(
        move_llr(tracklets, x[2], y[2], moves)
        for x, y in zip(sequence, sequence[1:], strict=False)
        if x[3] != y[3]
    )


def move_llr(tracklets: Sequence[Tracklet], x: int, y: int, moves: Moves) -> float:
    """Log odds of a move from tracklet ``x`` to the later ``y`` (one pair: no arrays)."""
    handed = moves.handover.at(x, y) if moves.handover is not None else None
    if handed is not None:
        return handed
    zoned = moves.links.llr(x, y) if moves.links is not None else None
    if zoned is not None:
        return zoned
    a, b = tracklets[x], tracklets[y]
    return moves.transit.llr(a.camera_id, b.camera_id, b.start - a.end)


def transit_scores(
    tracklets: Sequence[Tracklet],
    first: np.ndarray,
    second: np.ndarray,
    moves: Moves,
) -> np.ndarray:
    """Log odds of the moves of many pairs (the one starting first is the source)."""
    starts = np.array([t.start for t in tracklets])
    ends = np.array([t.end for t in tracklets])
    cameras = np.array([t.camera_id for t in tracklets], dtype=object)
    earlier = np.where(starts[first] <= starts[second], first, second)
    later = np.where(earlier == first, second, first)
    out = moves.transit.llr_many(cameras[earlier], cameras[later], starts[later] - ends[earlier])
    if moves.links is not None:
        zoned, covered = moves.links.llr_many(earlier, later)
        out[covered] = zoned[covered]
    if moves.handover is not None:
        handed, covered = moves.handover.lookup(earlier, later)
        out[covered] = handed[covered]
    return out


def consecutive_pairs(
    tracklets: Sequence[Tracklet], labels: Sequence[int]
) -> list[tuple[int, int]]:
    """(earlier, later) index pairs of consecutive sightings within each cluster."""
    groups: dict[int, list[int]] = {}
    for n, label in enumerate(labels):
        groups.setdefault(label, []).append(n)
    pairs = []
    for members in groups.values():
        seq = sorted(members, key=lambda n: tracklets[n].start)
        pairs += list(zip(seq, seq[1:], strict=False))
    return pairs


def learn_transit(
    tracklets: Sequence[Tracklet], labels: Sequence[int], config: MatcherConfig, seed: int = 0
) -> TransitModel:
    """Transit times of consecutive sightings within confident clusters, against the gaps of
    all tracklet pairs of the window."""
    linked: dict[tuple[str, str], list[float]] = {}
    for x, y in consecutive_pairs(tracklets, labels):
        pair = (tracklets[x].camera_id, tracklets[y].camera_id)
        linked.setdefault(pair, []).append(tracklets[y].start - tracklets[x].end)
    lo, hi = -config.transit_overlap_s, config.transit_max_s
    background = sample_gaps(
        [t.camera_id for t in tracklets],
        np.array([t.start for t in tracklets]),
        np.array([t.end for t in tracklets]),
        lo,
        hi,
        np.random.default_rng(seed),
    )
    return TransitModel.fit({p: np.array(v) for p, v in linked.items()}, background, lo, hi)
