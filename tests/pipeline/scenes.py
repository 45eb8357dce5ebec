"""Constructed multi-camera tracklets with known identities, for matcher tests."""

from __future__ import annotations

import numpy as np

from pipeline.matcher import Tracklet


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def walkers(
    people: int,
    cameras: int,
    transit: tuple[float, float] = (15.0, 25.0),
    visit_s: float = 8.0,
    noise: float = 0.15,
    dim: int = 64,
    seed: int = 0,
    stagger_s: float = 4.0,
) -> tuple[list[Tracklet], list[int]]:
    """People walk cam0 -> cam1 -> ... (``visit_s`` in view, a uniform transit between),
    starting ``stagger_s`` apart, so several share each camera at once (free cannot-links).
    Features: a person's direction plus per-view noise. Returns tracklets and true ids."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((people, dim)))
    tracklets, truth = [], []
    for p in range(people):
        t = p * stagger_s
        for cam in range(cameras):
            views = unit(centres[p] + noise * rng.standard_normal((3, dim)))
            tracklets.append(Tracklet(f"cam{cam}", 100 + p, t, t + visit_s, views))
            truth.append(p)
            t += visit_s + float(rng.uniform(*transit))
    return tracklets, truth


def same_partition(labels: list, truth: list) -> bool:
    """Whether two labelings group the items identically (names aside)."""
    return len(set(zip(labels, truth, strict=True))) == len(set(labels)) == len(set(truth))
