"""Re-association: cluster a window of tracklets into identities with all the evidence.

Pure numpy (a matcher worker loads no torch). The steps:

1. **Appearance** of a tracklet is the L2-normalised mean of its exemplar features; the
   distance of two tracklets is ``(1 - cos) / 2`` of those means. With that choice the
   average-linkage similarity of two clusters is ``sum_A . sum_B / (|A| |B|)``: O(D) per
   cluster pair, whatever the cluster sizes.
2. **Cannot-links** come free from the footage: two tracklets seen at the same time in one
   camera, or in two cameras whose views do not overlap, are different people. Hand rules
   (topology gates) are checked on top with :func:`pipeline.matcher.gates.rejection`.
3. **Calibration**: the cannot-link pairs are a sample of known-different pairs of *this*
   site, seen by *this* model. The link threshold is their ``false_link_rate`` quantile:
   a link is made only where at most that share of known-different pairs would be linked.
   No hand-tuned distance, and it moves with the model and the site.
4. **Clustering**: constrained average linkage. Candidate pairs (k nearest neighbours) in
   ascending distance; two clusters merge when their average-linkage distance is below the
   threshold and no member of one cannot-link any member of the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.gates import rejection
from pipeline.matcher.types import Sighting, Tracklet

MIN_NEGATIVES = 20  # fewer known-different pairs than this: fall back to the configured threshold


def tracklet_vectors(tracklets: Sequence[Tracklet]) -> np.ndarray:
    """``[N, D]`` L2-normalised mean exemplar feature of each tracklet."""
    means = np.stack([t.features.mean(axis=0) for t in tracklets]).astype(np.float32)
    return means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)


def pair_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Appearance distance in [0, 1] of row-aligned unit vectors."""
    return np.clip((1.0 - np.einsum("nd,nd->n", a, b)) / 2.0, 0.0, 1.0)


def cannot_link_pairs(tracklets: Sequence[Tracklet], config: MatcherConfig) -> np.ndarray:
    """``[P, 2]`` index pairs (i < j) of tracklets that are certainly different people:
    overlapping in time, in one camera or in two cameras whose views do not overlap."""
    order = sorted(range(len(tracklets)), key=lambda n: tracklets[n].start)
    pairs: list[tuple[int, int]] = []
    open_: list[int] = []
    for n in order:
        t = tracklets[n]
        open_ = [m for m in open_ if tracklets[m].end >= t.start]
        for m in open_:
            other = tracklets[m].camera_id
            if other == t.camera_id or not config.overlaps(other, t.camera_id):
                pairs.append((min(m, n), max(m, n)))
        open_.append(n)
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


@dataclass(frozen=True)
class Calibration:
    """The site's link threshold, learned from its known-different pairs."""

    threshold: float
    negatives: int
    false_link_rate: float
    learned: bool  # False: too few negatives, the configured threshold is used

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "threshold": self.threshold,
            "negatives": self.negatives,
            "false_link_rate": self.false_link_rate,
            "learned": self.learned,
        }


def calibrate(vectors: np.ndarray, negatives: np.ndarray, config: MatcherConfig) -> Calibration:
    """Threshold = the ``false_link_rate`` quantile of known-different pair distances."""
    rate = config.false_link_rate
    if len(negatives) < MIN_NEGATIVES:
        return Calibration(config.link_threshold, len(negatives), rate, False)
    d = pair_distance(vectors[negatives[:, 0]], vectors[negatives[:, 1]])
    return Calibration(float(np.quantile(d, rate)), len(negatives), rate, True)


def _neighbour_pairs(vectors: np.ndarray, k: int, threshold: float) -> np.ndarray:
    """Candidate pairs ``[P, 2]`` (k nearest neighbours within ``threshold``), closest first."""
    n = len(vectors)
    rows, cols, dists = [], [], []
    for start in range(0, n, 2048):
        block = vectors[start : start + 2048] @ vectors.T
        d = np.clip((1.0 - block) / 2.0, 0.0, 1.0)
        idx = np.arange(start, min(start + 2048, n))
        d[idx - start, idx] = np.inf
        kk = min(k, n - 1)
        if kk <= 0:
            break
        near = np.argpartition(d, kk - 1, axis=1)[:, :kk]
        nd = np.take_along_axis(d, near, axis=1)
        keep = nd <= threshold
        rows.append(np.repeat(idx, kk)[keep.ravel()])
        cols.append(near[keep])
        dists.append(nd[keep])
    if not rows:
        return np.empty((0, 2), np.int64)
    r, c, d = np.concatenate(rows), np.concatenate(cols), np.concatenate(dists)
    pairs = np.stack([np.minimum(r, c), np.maximum(r, c)], axis=1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return pairs[np.argsort(d[first], kind="stable")]


@dataclass
class _Cluster:
    members: list[int]
    total: np.ndarray  # sum of member vectors
    sightings: list[Sighting] = field(default_factory=list)


def cluster_tracklets(
    tracklets: Sequence[Tracklet],
    config: MatcherConfig,
    calibration: Calibration | None = None,
    neighbours: int = 20,
) -> tuple[list[int], Calibration]:
    """Cluster label per tracklet (0..C-1, in order of first member) and the calibration."""
    if not tracklets:
        return [], calibration or Calibration(config.link_threshold, 0, 0.0, False)
    vectors = tracklet_vectors(tracklets)
    negatives = cannot_link_pairs(tracklets, config)
    calibration = calibration or calibrate(vectors, negatives, config)
    forbidden = {(int(a), int(b)) for a, b in negatives}
    clusters = {
        n: _Cluster([n], vectors[n].astype(np.float64), [_sighting(t)])
        for n, t in enumerate(tracklets)
    }
    owner = list(range(len(tracklets)))
    for i, j in _neighbour_pairs(vectors, neighbours, calibration.threshold):
        a, b = owner[i], owner[j]
        if a == b:
            continue
        ca, cb = clusters[a], clusters[b]
        average = float(ca.total @ cb.total) / (len(ca.members) * len(cb.members))
        if (1.0 - average) / 2.0 > calibration.threshold:
            continue
        if any((min(x, y), max(x, y)) in forbidden for x in ca.members for y in cb.members):
            continue
        if any(rejection(tracklets[y], ca.sightings, config) for y in cb.members):
            continue
        if len(ca.members) < len(cb.members):
            a, b, ca, cb = b, a, cb, ca
        ca.members += cb.members
        ca.total += cb.total
        ca.sightings += cb.sightings
        for y in cb.members:
            owner[y] = a
        del clusters[b]
    labels: dict[int, int] = {}
    return [labels.setdefault(owner[n], len(labels)) for n in range(len(tracklets))], calibration


def _sighting(t: Tracklet) -> Sighting:
    return Sighting("", t.camera_id, t.track_id, t.start, t.end)
