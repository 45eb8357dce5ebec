"""Hand-overs learned from the footage with no link known: the track that ends and the
track that begins when one person is lost by the tracker (same camera) or walks across a
blind zone into another view.

Every track start is either a *fresh* appearance or the *continuation* of an earlier track
end. Starts are modelled as a Poisson superposition (the exit/entry family of Makris, Ellis
& Black, CVPR 2004, fitted by EM instead of correlograms, so a handful of events is enough):

- fresh starts of camera ``B`` come at its background intensity ``r_B s_B(q)``: its rate
  of fresh starts times the density of its entry points (a Gaussian mixture of all of them);
- the end ``x`` of a track in camera ``A`` is continued at ``q`` after ``gap`` seconds with
  intensity ``rho_AB g_AB(gap) f_AB(q | x)``: ``rho_AB`` the share of ``A``'s ends that
  continue in ``B``, ``g_AB`` the density of their gaps (a kernel estimate weighted by the
  responsibilities), ``f_AB`` where the person appears: in the same camera a Gaussian around
  the point the track's velocity predicts, in box heights, widening with the gap; in another
  camera a Gaussian over entry points per (exit zone of ``A``, ``B``).

Appearance joins as a likelihood ratio ``a(d) = p(d | same) / p(d | different)``: the
different-people density is the site's cannot-link distances (known), the same-person one
is learned in the same EM from the distances of the pairs weighted by their
responsibilities. So the chance components are known (the background comes from all
starts, the negatives from the cannot-links), no continuation needs a label, and the
posterior of a pair is a calibrated "same person" (first round: the negatives' CDF at the
prior odds of one continuation among a start's candidates).

The evidence handed to re-association is time and place only, as a likelihood ratio
against an unrelated pair (re-association adds its own appearance):

    llr(x, y) = log g_AB(gap) f_AB(q | x) - log u(gap) s_B(q)

``u`` uniform over the window. The posterior (all evidence, with the competition of every
other end that could have started the same track) decides the hand-overs that are more
likely than not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import isotonic_regression

from pipeline.matcher.camera_links import fit_zones, foot_points
from pipeline.matcher.evidence import LLR_CLIP, Density
from pipeline.matcher.types import Tracklet

VELOCITY_S = 1.0  # a track's velocity at its end (start): over its last (first) second
MAX_CANDIDATES = 64  # most recent ends considered per start
EM_ROUNDS = 30
STEP_S = 0.25
MIN_BANDWIDTH_S = 0.5
PRIOR_SAMPLES = 2.0  # pseudo-samples of the uninformed density mixed into each estimate
START_SIGMA = 0.5  # first guess of a lost track's reappearance spread, box heights
MIN_SIGMA = 0.05
APPEARANCE_STEP = 0.005  # distances (1 - cos) / 2 in 0..1
APPEARANCE_BANDWIDTH = 0.02
PLACE_PARAMETERS = 13  # the entry map (2 x 5) and its covariance (3)
GAP_PARAMETERS = 2  # a gap density is about a mean and a spread


def _motion(tracklets: Sequence[Tracklet]) -> dict[str, np.ndarray]:
    """Foot points, velocities (pixels/s) and box heights at each track's start and end."""
    n = len(tracklets)
    out: dict[str, np.ndarray] = {k: np.full((n, 2), np.nan) for k in ("start_v", "end_v")}
    out["start_h"] = np.full(n, np.nan)
    out["end_h"] = np.full(n, np.nan)
    out["start_p"], out["end_p"] = foot_points(tracklets)
    for i, t in enumerate(tracklets):
        if t.path is None or not len(t.path):
            continue
        path = t.path
        foot = np.c_[(path[:, 1] + path[:, 3]) / 2, path[:, 4]]
        height = path[:, 4] - path[:, 2]
        for side, rows in (
            ("start", path[:, 0] <= path[0, 0] + VELOCITY_S),
            ("end", path[:, 0] >= path[-1, 0] - VELOCITY_S),
        ):
            span = path[rows, 0]
            dt = float(span[-1] - span[0])
            step = foot[rows][-1] - foot[rows][0]
            out[f"{side}_v"][i] = step / dt if dt > 0 else 0.0
            out[f"{side}_h"][i] = max(float(np.median(height[rows])), 1.0)
    return out


def candidate_pairs(
    starts: np.ndarray,
    ends: np.ndarray,
    usable: np.ndarray,
    max_gap: float,
    most: int = MAX_CANDIDATES,
) -> np.ndarray:
    """``[P, 2]`` (end x, start y) index pairs with ``0 <= start_y - end_x <= max_gap``, at
    most ``most`` latest ends per start."""
    order = np.flatnonzero(usable)[np.argsort(ends[usable], kind="stable")]
    sorted_ends = ends[order]
    targets = np.flatnonzero(usable)
    hi = np.searchsorted(sorted_ends, starts[targets], side="right")
    lo = np.maximum(np.searchsorted(sorted_ends, starts[targets] - max_gap, side="left"), hi - most)
    count = hi - lo
    y = np.repeat(targets, count)
    offsets = np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count)
    x = order[np.repeat(lo, count) + offsets]
    keep = x != y
    return np.stack([x[keep], y[keep]], axis=1).astype(np.int64)


def _gaussian_log(diff: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Log density of 2-D offsets ``diff [P, 2]`` under zero-mean Gaussians ``cov [P, 2, 2]``."""
    inverse = np.linalg.inv(cov)
    mahalanobis = np.einsum("pi,pij,pj->p", diff, inverse, diff)
    return -0.5 * (mahalanobis + np.log(np.linalg.det(cov))) - np.log(2 * np.pi)


def pair_lookup(
    pairs: np.ndarray, values: np.ndarray, earlier: np.ndarray, later: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``values`` of the index pairs ``(earlier, later)`` found in ``pairs``, and which were."""
    out = np.zeros(len(earlier))
    if not len(pairs) or not len(earlier):
        return out, np.zeros(len(earlier), bool)
    size = int(max(pairs.max(), np.max(earlier), np.max(later))) + 1
    codes = pairs[:, 0] * size + pairs[:, 1]
    order = np.argsort(codes)
    wanted = np.asarray(earlier, np.int64) * size + np.asarray(later, np.int64)
    slot = np.clip(np.searchsorted(codes[order], wanted), 0, len(codes) - 1)
    covered = codes[order][slot] == wanted
    out[covered] = values[order][slot[covered]]
    return out, covered


@dataclass(frozen=True)
class PairAppearance:
    """Appearance for the EM: the distance of index pairs, and the cannot-links' distances."""

    distance: Callable[[np.ndarray], np.ndarray]
    negatives: np.ndarray


@dataclass(frozen=True)
class Handover:
    """The fitted model and its evidence for the candidate pairs."""

    pairs: np.ndarray  # [P, 2] (end x, start y)
    llr: np.ndarray  # [P] time-and-place log odds of each pair, with competition
    posterior: np.ndarray  # [P] chance that y continues x, all evidence
    continued: dict[tuple[str, str], float]  # expected continuations per end, camera pair
    gap_s: dict[tuple[str, str], float]  # mean gap of the continuations, camera pair
    sigma: float  # same-camera reappearance spread at gap 0, box heights
    by_pair: dict[tuple[int, int], float] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        self.by_pair.update(zip(map(tuple, self.pairs.tolist()), self.llr.tolist(), strict=True))

    def at(self, x: int, y: int) -> float | None:
        """Log odds of the move ``x -> y``; None where it is no candidate pair."""
        return self.by_pair.get((x, y))

    def lookup(self, earlier: np.ndarray, later: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log odds of moves ``earlier -> later`` (tracklet indices) and whether covered."""
        return pair_lookup(self.pairs, self.llr, earlier, later)

    def summary(self) -> dict[str, object]:
        """JSON-ready: per ordered camera pair, the share of ends continued and the gap."""
        return {
            "sigma_heights": round(self.sigma, 3),
            "pairs": [
                {
                    "source": a,
                    "target": b,
                    "continued": round(rho, 3),
                    "gap_s": round(self.gap_s[(a, b)], 2),
                }
                for (a, b), rho in sorted(self.continued.items())
                if rho >= 0.01
            ],
        }

    @classmethod
    def fit(
        cls,
        tracklets: Sequence[Tracklet],
        max_gap: float,
        overlaps: Callable[[str, str], bool] | None = None,
        appearance: PairAppearance | None = None,
        seed: int = 0,
    ) -> Handover:
        """EM over every (end, start) pair within ``max_gap`` seconds, cameras whose views
        overlap excepted."""
        motion = _motion(tracklets)
        cameras = np.array([t.camera_id for t in tracklets], dtype=object)
        starts = np.array([t.start for t in tracklets], np.float64)
        ends = np.array([t.end for t in tracklets], np.float64)
        usable = np.isfinite(motion["start_p"]).all(axis=1)
        pairs = candidate_pairs(starts, ends, usable, max_gap)
        if len(pairs) and overlaps is not None:
            keep = np.array(
                [
                    a == b or not overlaps(a, b)
                    for a, b in zip(cameras[pairs[:, 0]], cameras[pairs[:, 1]], strict=True)
                ],
                bool,
            )
            pairs = pairs[keep]
        return _EM(motion, cameras, starts, ends, usable, pairs, max_gap, seed).run(appearance)


class _EM:
    """The EM fit of :class:`Handover`: the pairs' fixed features, then :meth:`run`."""

    def __init__(
        self,
        motion: dict[str, np.ndarray],
        cameras: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        usable: np.ndarray,
        pairs: np.ndarray,
        max_gap: float,
        seed: int,
    ) -> None:
        rng = np.random.default_rng(seed)
        self.pairs, self.max_gap, self.usable = pairs, max_gap, usable
        x, y = pairs[:, 0], pairs[:, 1]
        self.x, self.y = x, y
        self.gaps = starts[y] - ends[x]
        self.camera_pair = np.char.add(
            np.char.add(cameras[x].astype(str), "\t"), cameras[y].astype(str)
        )
        self.same_camera = cameras[x] == cameras[y]
        self.entry_p = motion["start_p"][y]
        self.exit_p = motion["end_p"][x]
        self.exit_v = np.nan_to_num(motion["end_v"][x])
        # where a lost track reappears: in box heights around the point its motion predicts
        velocity = np.nan_to_num((motion["end_v"][x] + motion["start_v"][y]) / 2)
        self.height = (motion["end_h"][x] + motion["start_h"][y]) / 2
        self.offset = (
            self.entry_p - motion["end_p"][x] - velocity * self.gaps[:, None]
        ) / self.height[:, None]
        # background: each camera's entry points (all of them) and rate of starts
        self.log_place = np.zeros(len(usable))
        self.span: dict[str, float] = {}
        self.starts_in: dict[str, np.ndarray] = {}
        exit_zone = np.full(len(usable), -1, np.int64)
        for camera in sorted(set(cameras.tolist())):
            mine = (cameras == camera) & usable
            if not mine.any():
                continue
            entries = motion["start_p"][mine]
            zones = fit_zones(entries, rng)
            log = zones.log_densities(entries)
            top = log.max(axis=1)
            self.log_place[mine] = (
                top + np.log(np.exp(log - top[:, None]).sum(axis=1)) - 2 * np.log(zones.scale)
            )
            self.span[camera] = max(float(ends[mine].max() - starts[mine].min()), 1.0)
            self.starts_in[camera] = np.flatnonzero(mine)
            exit_zone[mine] = fit_zones(motion["end_p"][mine], rng).assign(motion["end_p"][mine])
        # a kind of continuation: within one camera, or from one exit zone to one camera
        zone_tag = np.where(self.same_camera, "", np.char.add("\t", exit_zone[x].astype(str)))
        self.kind = np.char.add(self.camera_pair, zone_tag)
        self.kinds = sorted(set(self.kind.tolist()))
        self.ends_of = {}  # the ends each kind can continue
        for k in self.kinds:
            source, _, *zone = k.split("\t")
            mine = (cameras == source) & usable
            self.ends_of[k] = int((mine & (exit_zone == int(zone[0])) if zone else mine).sum())

    def run(self, appearance: PairAppearance | None) -> Handover:
        n = len(self.pairs)
        looks = _Looks(appearance, self.pairs, self.y, len(self.usable))
        rho = {k: 0.5 for k in self.kinds}
        log_gap = np.full(n, -np.log(self.max_gap))
        spread = (START_SIGMA**2, START_SIGMA**2)
        places: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rate = {c: len(m) / self.span[c] for c, m in self.starts_in.items()}
        log_b = np.full(len(self.usable), -np.inf)
        log_c, resp = np.zeros(n), np.zeros(n)
        dropped: set[str] = set()
        for round_ in range(EM_ROUNDS):
            log_c = self._log_continuation(rho, log_gap, spread, places)
            for camera, members in self.starts_in.items():
                log_b[members] = np.log(max(rate[camera], 1e-12)) + self.log_place[members]
            if round_ == EM_ROUNDS // 2:
                dropped = self._untimed(resp, log_gap)
            for k in dropped:
                log_c[self.kind == k] = -np.inf
            resp, fresh = _responsibilities(log_c + looks.log_ratio, log_b, self.y)
            for k in self.kinds:
                rho[k] = float(resp[self.kind == k].sum()) / max(self.ends_of[k], 1)
            for camera, members in self.starts_in.items():
                rate[camera] = max(float(fresh[members].sum()), 1e-3) / self.span[camera]
            log_gap = self._gap_log_density(resp)
            spread = self._spread(resp)
            places = self._entry_places(resp)
            looks.learn(resp)
        # time and place as a likelihood ratio: against an unrelated pair's gap (uniform
        # over the window) and place (where the camera's tracks start)
        walk = log_c - self._log_rho(rho) + np.log(self.max_gap) - self.log_place[self.y]
        continued: dict[tuple[str, str], float] = {}
        gap_s: dict[tuple[str, str], float] = {}
        for pair in sorted(set(self.camera_pair.tolist())):
            mine = self.camera_pair == pair
            key = (pair.split("\t")[0], pair.split("\t")[1])
            sources = [self.ends_of[k] for k in self.kinds if k.startswith(pair)]
            ends = max(sources) if key[0] == key[1] else sum(sources)
            continued[key] = float(resp[mine].sum()) / max(ends, 1)
            total = float(resp[mine].sum())
            gap_s[key] = float(resp[mine] @ self.gaps[mine]) / total if total > 0 else 0.0
        # a dropped kind has no opinion: its pairs are left to the other evidence
        kept = ~np.isin(self.kind, sorted(dropped))
        return Handover(
            self.pairs[kept],
            np.clip(walk[kept], -LLR_CLIP, LLR_CLIP),
            resp[kept],
            continued,
            gap_s,
            float(np.sqrt(spread[0])),
        )

    def _untimed(self, resp: np.ndarray, log_gap: np.ndarray) -> set[str]:
        """The kinds of continuation whose gaps are no more likely than chance's (uniform
        over the window), beyond what two parameters can fit (BIC): with no correlation in
        time a "continuation" cannot be told from the background (a camera whose tracks all
        start in one place would explain its own starts by any other camera's ends)."""
        out = set()
        for k in self.kinds:
            mine = self.kind == k
            weights = resp[mine]
            gain = float(weights @ (log_gap[mine] + np.log(self.max_gap)))
            if gain <= GAP_PARAMETERS / 2 * np.log(max(float(weights.sum()), 2.0)):
                out.add(k)
        return out

    def _log_continuation(
        self,
        rho: dict[str, float],
        log_gap: np.ndarray,
        spread: tuple[float, float],
        places: dict[str, tuple[np.ndarray, np.ndarray]],
    ) -> np.ndarray:
        """``log c(x, y)`` of every candidate pair (per pixel squared and second)."""
        place = np.empty(len(self.pairs))
        same = self.same_camera
        if same.any():
            var = spread[0] + spread[1] * self.gaps[same]
            place[same] = (
                -0.5 * (self.offset[same] ** 2).sum(axis=1) / var
                - np.log(2 * np.pi * var)
                - 2 * np.log(self.height[same])
            )
        # before anything is learned, a person from another camera appears wherever that
        # camera's tracks start: the background's own place density
        other = ~same
        place[other] = self.log_place[self.y[other]]
        for k, (predicted, cov) in places.items():
            mine = self.kind == k
            place[mine] = _gaussian_log(
                self.entry_p[mine] - predicted, np.broadcast_to(cov, (int(mine.sum()), 2, 2))
            )
        return self._log_rho(rho) + log_gap + place

    def _log_rho(self, rho: dict[str, float]) -> np.ndarray:
        out = np.empty(len(self.pairs))
        for k, value in rho.items():
            out[self.kind == k] = np.log(max(value, 1e-6))
        return out

    def _gap_log_density(self, resp: np.ndarray) -> np.ndarray:
        """Per kind, the responsibility-weighted kernel density of the gaps (its own floor
        keeps every gap possible)."""
        out = np.full(len(self.pairs), -np.log(self.max_gap))
        for k in self.kinds:
            mine = self.kind == k
            density = Density.fit(
                self.gaps[mine], 0.0, self.max_gap + STEP_S, STEP_S, MIN_BANDWIDTH_S, resp[mine]
            )
            out[mine] = np.log(np.maximum(density(self.gaps[mine]), 1e-300))
        return out

    def _spread(self, resp: np.ndarray) -> tuple[float, float]:
        """Same-camera reappearance variance ``sigma0 + sigma1 gap`` (per axis, heights^2)
        by weighted least squares of the squared offsets on the gap."""
        same = self.same_camera
        weights = np.r_[resp[same], PRIOR_SAMPLES, PRIOR_SAMPLES]
        half = np.r_[(self.offset[same] ** 2).sum(axis=1) / 2, START_SIGMA**2, START_SIGMA**2]
        design = np.c_[np.ones(len(half)), np.r_[self.gaps[same], 0.0, 1.0]]
        root = np.sqrt(weights)[:, None]
        solution, *_ = np.linalg.lstsq(design * root, half * root[:, 0], rcond=None)
        return max(float(solution[0]), MIN_SIGMA**2), max(float(solution[1]), 0.0)

    def _entry_places(self, resp: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Per cross-camera kind, where its continuations appear: a linear map from the end
        (foot point, and velocity times gap) to the entry point, by ridge regression
        weighted by the responsibilities and shrunk towards no map at all (the mean of the
        kind's candidate entries); the residual covariance with it. Each pair's predicted
        entry point and the covariance."""
        out = {}
        for k in self.kinds:
            mine = self.kind == k
            if self.same_camera[mine].any():
                continue
            points, w = self.entry_p[mine], resp[mine]
            features = np.c_[self.exit_p[mine], self.exit_v[mine] * self.gaps[mine, None]]
            centre = features.mean(axis=0)
            scale = features.std(axis=0) + 1e-6
            design = np.c_[np.ones(len(points)), (features - centre) / scale]
            prior_mean = points.mean(axis=0)
            prior_cov = np.cov(points.T) + np.eye(2) if len(points) > 2 else np.eye(2) * 1e4
            # pseudo-samples at the prior mean with no slope: ridge on the slopes, and a
            # pull of the intercept towards the mean of all candidates
            ridge = np.diag([PRIOR_SAMPLES] * design.shape[1])
            gram = design.T @ (w[:, None] * design) + ridge
            target = design.T @ (w[:, None] * points)
            target[0] += PRIOR_SAMPLES * prior_mean
            coefficients = np.linalg.solve(gram, target)
            predicted = design @ coefficients
            residual = points - predicted
            scatter = (w[:, None] * residual).T @ residual + PRIOR_SAMPLES * prior_cov
            cov = scatter / (float(w.sum()) + PRIOR_SAMPLES) + np.eye(2)
            # kept only where it explains the continuations better than the background
            # does by more than its parameters' worth (BIC): a map fitted to a handful of
            # pairs would otherwise pull the EM towards them
            gain = float(
                w
                @ (
                    _gaussian_log(residual, np.broadcast_to(cov, (len(w), 2, 2)))
                    - self.log_place[self.y[mine]]
                )
            )
            if gain > 0.5 * PLACE_PARAMETERS * np.log(max(float(w.sum()), 2.0)):
                out[k] = (predicted, cov)
        return out


class _Looks:
    """Appearance as a likelihood ratio of each candidate pair, learned in the EM."""

    def __init__(
        self, appearance: PairAppearance | None, pairs: np.ndarray, y: np.ndarray, n: int
    ) -> None:
        self.log_ratio = np.zeros(len(pairs))
        self.appearance = appearance
        if appearance is None or not len(pairs) or not len(appearance.negatives):
            self.appearance = None
            return
        self.d = np.asarray(appearance.distance(pairs), np.float64)
        negatives = np.sort(np.asarray(appearance.negatives, np.float64))
        self.different = Density.fit(negatives, 0.0, 1.0, APPEARANCE_STEP, APPEARANCE_BANDWIDTH)
        # first round: the negatives' CDF at the prior odds of one continuation per start
        candidates = np.bincount(y, minlength=n)[y]
        closer = np.maximum(
            np.searchsorted(negatives, self.d) / len(negatives), 0.5 / len(negatives)
        )
        self.log_ratio = np.clip(-np.log(candidates * closer), -2 * LLR_CLIP, 2 * LLR_CLIP)

    def learn(self, resp: np.ndarray) -> None:
        """The same-person distance density from the pairs weighted by responsibility."""
        if self.appearance is None or resp.sum() <= 0:
            return
        same = Density.fit(self.d, 0.0, 1.0, APPEARANCE_STEP, APPEARANCE_BANDWIDTH, resp)
        grid = (np.arange(len(same.pdf)) + 0.5) * APPEARANCE_STEP
        index = np.clip((self.d / APPEARANCE_STEP).astype(int), 0, len(grid) - 1)
        # closer never means less alike: the ratio is made non-increasing in the distance
        # (isotonic regression, weighted by the candidate pairs at each distance)
        ratio = np.log(same(grid)) - np.log(self.different(grid))
        weights = np.bincount(index, minlength=len(grid)) + 1e-6
        ratio = isotonic_regression(ratio, weights=weights, increasing=False).x
        self.log_ratio = np.clip(ratio[index], -2 * LLR_CLIP, 2 * LLR_CLIP)


def _competition(log_c: np.ndarray, log_b: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per pair, log of everything that explains its start: background plus every
    candidate end (log-sum-exp per start)."""
    top = log_b.copy()
    np.maximum.at(top, y, log_c)
    top = np.where(np.isfinite(top), top, 0.0)
    total = np.exp(np.where(np.isfinite(log_b), log_b - top, -np.inf))
    np.add.at(total, y, np.exp(log_c - top[y]))
    return (np.log(np.maximum(total, 1e-300)) + top)[y]


def _responsibilities(
    log_c: np.ndarray, log_b: np.ndarray, y: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """E-step: chance that each pair's start continues its end, and that each start is
    fresh (the start's intensities normalised)."""
    if not len(y):
        return np.empty(0), np.ones(len(log_b))
    resp = np.exp(log_c - _competition(log_c, log_b, y))
    per_start = np.zeros(len(log_b))
    np.add.at(per_start, y, resp)
    return resp, np.clip(1.0 - per_start, 0.0, 1.0)
