"""Spatial evidence between overlapping cameras, learned from the footage.

Where two cameras overlap, a person standing in the shared area appears at corresponding
places in both views: the foot point (bottom centre of the box) in one view maps to the
other by a fixed transform (a homography of the ground plane; an affine map is accurate
enough over a shared strip and needs three correspondences). The map is fitted robustly
(RANSAC) on the synchronised foot points of *every* pair of tracklets seen at once in the
two cameras: pairs of one person agree on one map, pairs of strangers scatter, so no link
has to be known first. A pair's residual under the map (median over the moments both see
it, in box heights) then gives log odds like the other cues:
``log p(r | map inliers) - log p(r | all co-visible pairs)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.evidence import LLR_CLIP, Density
from pipeline.matcher.gates import co_occurring_pairs
from pipeline.matcher.types import Tracklet

SAMPLES_PER_PAIR = 5  # moments compared per co-visible pair
INLIER_HEIGHTS = 0.5  # a foot point mapped within half a body height agrees with the map
RANSAC_ROUNDS = 400
MIN_INLIER_PAIRS = 3  # fewer pairs agreeing on a map: no spatial evidence for that pair
LOG_RANGE = (-3.0, 1.5)  # log10 residuals (box heights) the densities cover


def _interpolate(path: np.ndarray, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foot points ``[T, 2]`` and box heights ``[T]`` of ``path`` at ``times``."""
    x = np.interp(times, path[:, 0], (path[:, 1] + path[:, 3]) / 2)
    y = np.interp(times, path[:, 0], path[:, 4])
    h = np.interp(times, path[:, 0], path[:, 4] - path[:, 2])
    return np.stack([x, y], axis=1), np.maximum(h, 1.0)


def _co_visible_times(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sample times both paths cover (none if they do not overlap)."""
    lo = max(a[0, 0], b[0, 0])
    hi = min(a[-1, 0], b[-1, 0])
    return np.linspace(lo, hi, SAMPLES_PER_PAIR) if hi >= lo else np.empty(0)


def _affine(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Least-squares ``[2, 3]`` map of ``[N, 2]`` points (N >= 3)."""
    design = np.hstack([source, np.ones((len(source), 1))])
    solution, *_ = np.linalg.lstsq(design, target, rcond=None)
    return solution.T


def _apply(affine: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ affine[:, :2].T + affine[:, 2]


@dataclass
class ViewMap:
    """Foot-point map from ``source`` to ``target`` view, and the residual densities."""

    source: str
    target: str
    affine: np.ndarray
    inlier_pairs: int
    same: Density
    any: Density


@dataclass
class SpatialEvidence:
    """Per overlapping camera pair, the learned map; the evidence of co-visible pairs."""

    maps: dict[tuple[str, str], ViewMap] = field(default_factory=dict)
    pair_llr: dict[tuple[int, int], float] = field(default_factory=dict)  # (i < j) -> LLR

    @classmethod
    def fit(
        cls, tracklets: Sequence[Tracklet], config: MatcherConfig, seed: int = 0
    ) -> SpatialEvidence:
        evidence = cls()
        rng = np.random.default_rng(seed)
        together = co_occurring_pairs(tracklets)
        for source, target in config.overlapping:
            pairs = []
            for i, j in together:
                if tracklets[i].camera_id == target:
                    i, j = j, i
                a, b = tracklets[i], tracklets[j]
                if (
                    (a.camera_id, b.camera_id) == (source, target)
                    and a.path is not None
                    and b.path is not None
                    and len(_co_visible_times(a.path, b.path))
                ):
                    pairs.append((i, j))
            if len(pairs) >= MIN_INLIER_PAIRS:
                evidence._fit_pair(tracklets, source, target, pairs, rng)
        return evidence

    def _fit_pair(
        self,
        tracklets: Sequence[Tracklet],
        source: str,
        target: str,
        pairs: list[tuple[int, int]],
        rng: np.random.Generator,
    ) -> None:
        points = []
        for i, j in pairs:
            path_a, path_b = tracklets[i].path, tracklets[j].path
            assert path_a is not None and path_b is not None  # fit pairs only tracks with paths
            times = _co_visible_times(path_a, path_b)
            pa, _ = _interpolate(path_a, times)
            pb, hb = _interpolate(path_b, times)
            points.append((pa, pb, hb))
        src = np.concatenate([p[0] for p in points])
        dst = np.concatenate([p[1] for p in points])
        heights = np.concatenate([p[2] for p in points])
        owner = np.repeat(np.arange(len(pairs)), [len(p[0]) for p in points])

        def pair_residuals(affine: np.ndarray) -> np.ndarray:
            r = np.linalg.norm(_apply(affine, src) - dst, axis=1) / heights
            order = np.argsort(owner, kind="stable")
            splits = np.flatnonzero(np.diff(owner[order])) + 1
            return np.array([np.median(chunk) for chunk in np.split(r[order], splits)])

        # MSAC: the map with the least truncated residual, then refits on its inliers with a
        # tolerance that tightens to the inliers' own spread (3 x their median residual, plus
        # 2% of a body height for detection jitter)
        best, best_cost = None, np.inf
        for _ in range(RANSAC_ROUNDS):
            chosen = rng.choice(len(pairs), size=min(3, len(pairs)), replace=False)
            rows = [int(rng.choice(np.flatnonzero(owner == c))) for c in chosen]
            if abs(np.linalg.det(np.hstack([src[rows], np.ones((len(rows), 1))]))) < 1e-6:
                continue
            affine = _affine(src[rows], dst[rows])
            cost = float(np.minimum(pair_residuals(affine), INLIER_HEIGHTS).sum())
            if cost < best_cost:
                best, best_cost = affine, cost
        if best is None:
            return
        refined = best
        for _ in range(3):
            residuals = pair_residuals(refined)
            close = residuals[residuals < INLIER_HEIGHTS]
            tolerance = min(INLIER_HEIGHTS, 3 * float(np.median(close)) + 0.02) if len(close) else 0
            inliers = residuals < tolerance
            if inliers.sum() < MIN_INLIER_PAIRS:
                return
            refined = _affine(src[inliers[owner]], dst[inliers[owner]])
        residuals = pair_residuals(refined)
        inliers = residuals < tolerance
        logs = np.log10(np.maximum(residuals, 10 ** LOG_RANGE[0]))
        same = Density.fit(logs[inliers], *LOG_RANGE, 0.05, 0.1)
        every = Density.fit(logs, *LOG_RANGE, 0.05, 0.1)
        self.maps[(source, target)] = ViewMap(
            source, target, refined, int(inliers.sum()), same, every
        )
        llr = np.clip(np.log(same(logs)) - np.log(every(logs)), -LLR_CLIP, LLR_CLIP)
        for (i, j), value in zip(pairs, llr, strict=True):
            self.pair_llr[(min(i, j), max(i, j))] = float(value)
