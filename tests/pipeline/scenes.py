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


def overlapping_walkers(
    people: int,
    offset: float = 300.0,
    width: float = 400.0,
    noise: float = 0.3,
    dim: int = 32,
    seed: int = 0,
) -> tuple[list[Tracklet], list[int]]:
    """Two cameras cut from one view: ``left`` sees x in [0, width], ``right`` sees x in
    [offset, offset + width] (its x = world x - offset). People walk left to right at their
    own speed and depth, several at once; each is one tracklet per camera, with its path."""
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((people, dim)))
    tracklets, truth = [], []
    for p in range(people):
        start, speed = p * 3.0, float(rng.uniform(40.0, 80.0))  # px per s
        foot, height = float(rng.uniform(300, 560)), float(rng.uniform(120, 220))
        for camera, lo, shift in (("left", 0.0, 0.0), ("right", offset, offset)):
            t0 = start + max(lo - 0.0, 0.0) / speed
            t1 = start + min(lo + width, offset + width) / speed
            times = np.linspace(t0, t1, 20)
            x = (times - start) * speed - shift
            top, bottom = np.full_like(x, foot - height), np.full_like(x, foot)
            path = np.stack([times, x - 20, top, x + 20, bottom], axis=1)
            views = unit(centres[p] + noise * rng.standard_normal((3, dim)))
            tracklets.append(Tracklet(camera, p + 1, float(t0), float(t1), views, path=path))
            truth.append(p)
    return tracklets, truth
