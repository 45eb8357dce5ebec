"""Camera links learned without a single appearance link: where people leave one view,
where they appear in the next, and how long the walk between takes.

After Makris, Ellis & Black (CVPR 2004, "Bridging the gaps between cameras"): every
tracklet's end is an *exit event* (time, foot point where it ended), its start an *entry
event*. Per camera the foot points of the exits, and of the entries, are clustered into
zones (a Gaussian mixture, the number of zones chosen by BIC). For an ordered pair
(exit zone of camera X, entry zone of camera Y) the gaps ``entry - exit`` of all event
pairs form a correlogram; unrelated people contribute a broad *chance level*, the
correlation of the two zones' event rates (each smoothed over :data:`CHANCE_BANDWIDTH_S`),
while people who walk from one zone to the other add a peak at their transit time. The
peak above chance (less a two-sigma Poisson allowance, so noise claims nothing) is the
density of transitions, so from the first minutes, before appearance links anything:

    llr(X, a -> Y, b, gap) = log p(zones, gap | same person) - log p(zones, gap | any pair)

with ``p(. | same)`` the excess over all zone pairs of the camera pair and ``p(. | any)``
the correlogram itself. Confident appearance links, as they accumulate, add their own
(zone pair, gap) samples inside the peaks, so the model sharpens with them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.matcher.evidence import FLOOR, LLR_CLIP
from pipeline.matcher.types import Tracklet

CHANCE_BANDWIDTH_S = 30.0  # event rates vary over minutes (crowds), transit peaks over seconds
PEAK_BANDWIDTH_S = 1.0  # the correlogram's smoothing (detection and walking-speed jitter)
STEP_S = 0.5
SIGMAS = 3.0  # a peak is where the correlogram rises this many Poisson sigmas above chance
MIN_TRANSITIONS = 2.0  # estimated transitions under a peak before it counts as a link
MAX_ZONES = 4
MIN_EVENTS_PER_ZONE = 4
EM_ROUNDS = 50
Pair = tuple[str, str]


def foot_points(tracklets: Sequence[Tracklet]) -> tuple[np.ndarray, np.ndarray]:
    """``[N, 2]`` foot points (bottom centre) where each tracklet began and where it ended;
    NaN without a path."""
    starts = np.full((len(tracklets), 2), np.nan)
    ends = np.full((len(tracklets), 2), np.nan)
    for n, t in enumerate(tracklets):
        if t.path is not None and len(t.path):
            first, last = t.path[0], t.path[-1]
            starts[n] = ((first[1] + first[3]) / 2, first[4])
            ends[n] = ((last[1] + last[3]) / 2, last[4])
    return starts, ends


@dataclass(frozen=True)
class Zones:
    """A Gaussian mixture over one camera's (standardised) exit or entry foot points."""

    centre: np.ndarray  # [2] standardisation
    scale: float
    means: np.ndarray  # [K, 2]
    covariances: np.ndarray  # [K, 2, 2]
    weights: np.ndarray  # [K]

    def log_densities(self, points: np.ndarray) -> np.ndarray:
        """``[N, K]`` log weight + log density of each point under each zone."""
        z = (points - self.centre) / self.scale
        out = np.empty((len(z), len(self.weights)))
        for k, (mean, cov, w) in enumerate(
            zip(self.means, self.covariances, self.weights, strict=True)
        ):
            diff = z - mean
            inverse = np.linalg.inv(cov)
            mahalanobis = np.einsum("ni,ij,nj->n", diff, inverse, diff)
            out[:, k] = (
                np.log(w) - 0.5 * (mahalanobis + np.log(np.linalg.det(cov))) - np.log(2 * np.pi)
            )
        return out

    def assign(self, points: np.ndarray) -> np.ndarray:
        """Most likely zone per point; -1 where the point is unknown (NaN)."""
        known = np.isfinite(points).all(axis=1)
        out = np.full(len(points), -1, np.int64)
        if known.any():
            out[known] = np.argmax(self.log_densities(points[known]), axis=1)
        return out


def _em(z: np.ndarray, k: int, rng: np.random.Generator) -> tuple[Zones, float]:
    """A ``k``-component mixture on standardised points ``z`` and its BIC."""
    n = len(z)
    means = z[rng.choice(n, size=1)]
    for _ in range(k - 1):  # k-means++ seeding
        d = np.min(((z[:, None] - means[None]) ** 2).sum(-1), axis=1)
        means = np.vstack([means, z[rng.choice(n, p=d / d.sum()) if d.sum() > 0 else 0]])
    ridge = 1e-3 * np.eye(2)
    zones = Zones(
        np.zeros(2), 1.0, means, np.repeat(np.eye(2)[None] * 0.1, k, 0), np.full(k, 1 / k)
    )
    for _ in range(EM_ROUNDS):
        log = zones.log_densities(z)
        top = log.max(axis=1, keepdims=True)
        resp = np.exp(log - top)
        resp /= resp.sum(axis=1, keepdims=True)
        mass = resp.sum(axis=0) + 1e-9
        means = (resp.T @ z) / mass[:, None]
        covs = np.stack(
            [
                ((resp[:, j, None] * (z - means[j])).T @ (z - means[j])) / mass[j] + ridge
                for j in range(k)
            ]
        )
        zones = Zones(np.zeros(2), 1.0, means, covs, mass / n)
    log = zones.log_densities(z)
    top = log.max(axis=1)
    loglik = float((top + np.log(np.exp(log - top[:, None]).sum(axis=1))).sum())
    return zones, -2 * loglik + (6 * k - 1) * np.log(n)


def fit_zones(points: np.ndarray, rng: np.random.Generator) -> Zones:
    """The mixture over ``points`` (NaN rows ignored) with the number of zones, up to
    :data:`MAX_ZONES` and at most one per :data:`MIN_EVENTS_PER_ZONE` events, of least BIC."""
    points = points[np.isfinite(points).all(axis=1)]
    centre = np.median(points, axis=0) if len(points) else np.zeros(2)
    scale = float(np.std(points - centre)) if len(points) > 1 else 1.0
    scale = scale if scale > 1e-9 else 1.0
    z = (points - centre) / scale
    most = min(MAX_ZONES, len(z) // MIN_EVENTS_PER_ZONE)
    if most < 2:
        return Zones(centre, scale, np.zeros((1, 2)), np.eye(2)[None] * 1e6, np.ones(1))
    fits = [_em(z, k, rng) for k in range(1, most + 1)]
    best, _ = min(fits, key=lambda fit: fit[1])
    return Zones(centre, scale, best.means, best.covariances, best.weights)


def _smooth(counts: np.ndarray, bandwidth_bins: float) -> np.ndarray:
    """Gaussian smoothing of binned counts, edge-corrected (mass near an edge is not lost)."""
    radius = max(int(np.ceil(3 * bandwidth_bins)), 1)
    kernel = np.exp(-0.5 * (np.arange(-radius, radius + 1) / max(bandwidth_bins, 1e-9)) ** 2)
    kernel /= kernel.sum()
    smooth = np.convolve(counts, kernel, mode="same")
    cover = np.convolve(np.ones_like(counts), kernel, mode="same")
    return smooth / np.maximum(cover, 1e-12)


def _main_peak(shape: np.ndarray) -> np.ndarray:
    """Only the run of positive bins holding the most mass: a link between two zones is one
    walk with one typical time; the lesser bumps of a correlogram are chance, and so is a
    peak of fewer than :data:`MIN_TRANSITIONS` pairs above the allowance."""
    positive = shape > 0
    if not positive.any():
        return shape
    run = np.cumsum(np.r_[positive[0], positive[1:] & ~positive[:-1]]) * positive
    mass = np.bincount(run, weights=shape)
    mass[0] = 0.0
    if mass.max() < MIN_TRANSITIONS:
        return np.zeros_like(shape)
    return np.where(run == int(np.argmax(mass)), shape, 0.0)


def _grid_kernel(gaps: np.ndarray, lo: float, bins: int, weights: np.ndarray) -> np.ndarray:
    """Counts of ``gaps`` per bin, smoothed at :data:`PEAK_BANDWIDTH_S`."""
    index = ((gaps - lo) / STEP_S).astype(int)
    keep = (index >= 0) & (index < bins)
    counts = np.bincount(index[keep], weights=weights[keep], minlength=bins)[:bins]
    return _smooth(counts.astype(np.float64), PEAK_BANDWIDTH_S / STEP_S)


def _chance(exits: np.ndarray, entries: np.ndarray, lo: float, bins: int) -> np.ndarray:
    """Expected pair count per gap bin if exits and entries were unrelated: the
    cross-correlation of the two event rates, each smoothed over :data:`CHANCE_BANDWIDTH_S`."""
    t0 = min(exits.min(), entries.min()) - 1.0
    t1 = max(exits.max(), entries.max()) + 1.0
    steps = int(np.ceil((t1 - t0) / STEP_S)) + 1
    rate = [
        _smooth(
            np.bincount(((e - t0) / STEP_S).astype(int), minlength=steps)[:steps].astype(float),
            CHANCE_BANDWIDTH_S / STEP_S,
        )
        for e in (exits, entries)
    ]
    # correlation at lag L (bins): sum_t rate_exit(t) rate_entry(t + L)
    full = np.correlate(rate[1], rate[0], mode="full")  # lags -(steps-1) .. steps-1
    lags = np.arange(bins) + int(np.floor(lo / STEP_S))
    inside = (lags > -steps) & (lags < steps)
    out = np.zeros(bins)
    out[inside] = full[lags[inside] + steps - 1]
    total = float(full.sum())
    return out * (len(exits) * len(entries) / total) if total > 0 else out


@dataclass
class CameraLinks:
    """Per camera, exit and entry zones; per ordered camera pair, the transition density
    over (exit zone, entry zone, gap) and the correlogram of all event pairs."""

    lo: float
    hi: float
    exit_zones: dict[str, Zones] = field(default_factory=dict)
    entry_zones: dict[str, Zones] = field(default_factory=dict)
    same: dict[Pair, np.ndarray] = field(default_factory=dict)  # [A, B, bins] density
    any: dict[Pair, np.ndarray] = field(default_factory=dict)  # [A, B, bins] density
    transitions: dict[Pair, float] = field(default_factory=dict)  # estimated, incl. links
    pairs: dict[Pair, int] = field(default_factory=dict)  # event pairs within lo..hi
    exit_of: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # zone
    entry_of: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    cameras: np.ndarray = field(default_factory=lambda: np.empty(0, object))
    starts: np.ndarray = field(default_factory=lambda: np.empty(0))
    ends: np.ndarray = field(default_factory=lambda: np.empty(0))

    @property
    def bins(self) -> int:
        return max(int(np.ceil((self.hi - self.lo) / STEP_S)), 1)

    @classmethod
    def fit(
        cls,
        tracklets: Sequence[Tracklet],
        lo: float,
        hi: float,
        linked: Sequence[tuple[int, int]] = (),
        seed: int = 0,
    ) -> CameraLinks:
        """Zones and transitions of a window of tracklets; ``linked``: index pairs
        (earlier, later) of consecutive sightings of one person known from appearance."""
        cameras = np.array([t.camera_id for t in tracklets], dtype=object)
        starts = np.array([t.start for t in tracklets], np.float64)
        ends = np.array([t.end for t in tracklets], np.float64)
        model = cls(lo, hi, cameras=cameras, starts=starts, ends=ends)
        rng = np.random.default_rng(seed)
        entry_points, exit_points = foot_points(tracklets)
        model.exit_of = np.full(len(tracklets), -1, np.int64)
        model.entry_of = np.full(len(tracklets), -1, np.int64)
        for camera in sorted(set(cameras.tolist())):
            mine = cameras == camera
            if not np.isfinite(exit_points[mine]).all(axis=1).any():
                continue
            model.exit_zones[camera] = fit_zones(exit_points[mine], rng)
            model.entry_zones[camera] = fit_zones(entry_points[mine], rng)
            model.exit_of[mine] = model.exit_zones[camera].assign(exit_points[mine])
            model.entry_of[mine] = model.entry_zones[camera].assign(entry_points[mine])
        known = {
            (int(a), int(b))
            for a, b in linked
            if cameras[a] != cameras[b] and model.exit_of[a] >= 0 and model.entry_of[b] >= 0
        }
        for source in model.exit_zones:
            for target in model.entry_zones:
                if source != target:
                    model._fit_pair(source, target, cameras, starts, ends, known)
        return model

    def _fit_pair(
        self,
        source: str,
        target: str,
        cameras: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        known: set[tuple[int, int]],
    ) -> None:
        exits = np.flatnonzero((cameras == source) & (self.exit_of >= 0))
        entries = np.flatnonzero((cameras == target) & (self.entry_of >= 0))
        if not len(exits) or not len(entries):
            return
        a_zones, b_zones = (
            len(self.exit_zones[source].weights),
            len(self.entry_zones[target].weights),
        )
        bins = self.bins
        observed = np.zeros((a_zones, b_zones, bins))
        excess = np.zeros_like(observed)  # the peaks above chance (a lower bound of their mass)
        sd_scale = np.sqrt(STEP_S / (2 * np.sqrt(np.pi) * PEAK_BANDWIDTH_S))
        for a in range(a_zones):
            out = exits[self.exit_of[exits] == a]
            for b in range(b_zones):
                into = entries[self.entry_of[entries] == b]
                if not len(out) or not len(into):
                    continue
                gaps = (starts[into][None, :] - ends[out][:, None]).ravel()
                observed[a, b] = _grid_kernel(gaps, self.lo, bins, np.ones(len(gaps)))
                chance = _chance(ends[out], starts[into], self.lo, bins)
                above = observed[a, b] - chance
                shape = np.maximum(above - SIGMAS * sd_scale * np.sqrt(chance), 0.0)
                excess[a, b] = _main_peak(shape)
        links = [(x, y) for x, y in known if cameras[x] == source and cameras[y] == target]
        # confident links sharpen the peaks the correlation found; outside them a link is
        # more likely a wrong one than a walk nobody else took (it would feed itself)
        support = np.convolve(
            (excess > 0).reshape(-1, bins).any(axis=0).astype(float), np.ones(4 * 2 + 1), "same"
        )
        for x, y in links:
            a, b = int(self.exit_of[x]), int(self.entry_of[y])
            sample = _grid_kernel(np.array([starts[y] - ends[x]]), self.lo, bins, np.ones(1))
            excess[a, b] += sample * (support > 0) * (excess[a, b] > 0).any()
        total_pairs = float(observed.sum())
        if total_pairs <= 0:
            return
        self.pairs[(source, target)] = int(round(total_pairs))
        self.transitions[(source, target)] = float(excess.sum())
        self.any[(source, target)] = observed / total_pairs
        if excess.sum() > 0:
            self.same[(source, target)] = excess / excess.sum()

    def summary(self) -> dict[str, list[dict[str, object]]]:
        """What was learned, in the cameras' pixels and seconds (JSON-ready): ``zones`` per
        camera (exit or entry, mean foot point, share of the camera's events) and ``links``
        per (exit zone, entry zone) pair holding at least one estimated transition (the
        walk's most likely time and how many people were estimated to take it)."""
        zones = [
            {
                "camera": camera,
                "kind": kind,
                "zone": k,
                "x": round(float(mean[0] * z.scale + z.centre[0]), 1),
                "y": round(float(mean[1] * z.scale + z.centre[1]), 1),
                "share": round(float(weight), 3),
            }
            for kind, by_camera in (("exit", self.exit_zones), ("entry", self.entry_zones))
            for camera, z in sorted(by_camera.items())
            for k, (mean, weight) in enumerate(zip(z.means, z.weights, strict=True))
        ]
        links = []
        for (source, target), density in sorted(self.same.items()):
            mass = density.sum(axis=2) * self.transitions[(source, target)]
            for a, b in zip(*np.nonzero(mass >= 1.0), strict=True):
                peak = int(np.argmax(density[a, b]))
                links.append(
                    {
                        "source": source,
                        "exit_zone": int(a),
                        "target": target,
                        "entry_zone": int(b),
                        "transit_s": round(self.lo + (peak + 0.5) * STEP_S, 2),
                        "transitions": round(float(mass[a, b]), 1),
                    }
                )
        return {"zones": zones, "links": links}

    def covers(self, source: str, target: str) -> bool:
        """Whether the model speaks for moves ``source`` -> ``target``."""
        return (source, target) in self.same

    def llr(self, x: int, y: int) -> float | None:
        """Log odds of the move from tracklet ``x`` to the later ``y``; None where the model
        does not cover it (camera pair not learned, zone unknown, gap outside lo..hi)."""
        pair = (self.cameras[x], self.cameras[y])
        gap = float(self.starts[y] - self.ends[x])
        a, b = int(self.exit_of[x]), int(self.entry_of[y])
        if pair not in self.same or a < 0 or b < 0 or not self.lo <= gap < self.hi:
            return None
        k = min(int((gap - self.lo) / STEP_S), self.bins - 1)
        every = float(self.any[pair][a, b, k])
        mixed = (1 - FLOOR) * float(self.same[pair][a, b, k]) + FLOOR * every
        return min(max(np.log(mixed) - np.log(max(every, 1e-300)), -LLR_CLIP), LLR_CLIP)

    def llr_many(self, earlier: np.ndarray, later: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`llr` of many moves (tracklet index arrays) and whether each was covered."""
        out = np.zeros(len(earlier))
        covered = np.zeros(len(earlier), bool)
        if not self.same or not len(earlier):
            return out, covered
        gaps = self.starts[later] - self.ends[earlier]
        a, b = self.exit_of[earlier], self.entry_of[later]
        usable = (a >= 0) & (b >= 0) & (gaps >= self.lo) & (gaps < self.hi)
        k = np.clip(((gaps - self.lo) / STEP_S).astype(int), 0, self.bins - 1)
        for (source, target), same in self.same.items():
            mask = usable & (self.cameras[earlier] == source) & (self.cameras[later] == target)
            every = self.any[(source, target)][a[mask], b[mask], k[mask]]
            mixed = (1 - FLOOR) * same[a[mask], b[mask], k[mask]] + FLOOR * every
            out[mask] = np.clip(
                np.log(mixed) - np.log(np.maximum(every, 1e-300)), -LLR_CLIP, LLR_CLIP
            )
            covered |= mask
        return out, covered
