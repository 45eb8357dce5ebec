"""The EM that fits :class:`~pipeline.matcher.handover.Handover`: the model is written down
there; here are its rounds (E-step, per-kind M-steps, the checks that drop what the data
cannot carry)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import isotonic_regression

from pipeline.matcher.camera_links import MAX_ZONES
from pipeline.matcher.evidence import LLR_CLIP, Density
from pipeline.matcher.handover_site import Site

EM_ROUNDS = 30
CONVERGED = 1e-3  # largest change of a responsibility that ends the rounds
FINISH_ROUNDS = 3  # rounds over every pair after a fit on a sample of the starts
STEP_S = 0.25
MIN_BANDWIDTH_S = 0.5
PRIOR_SAMPLES = 2.0  # pseudo-samples of the uninformed density mixed into each estimate
START_SIGMA = 0.5  # first guess of a lost track's reappearance spread, box heights
MIN_SIGMA = 0.05
APPEARANCE_STEP = 0.005  # distances (1 - cos) / 2 in 0..1
APPEARANCE_BANDWIDTH = 0.02
# where a kind's people appear: a Gaussian (mean 2, covariance 3), or a linear map from the
# end (2 x 5) and the covariance (3)
PLACE_PARAMETERS = (5, 13)
GAP_PARAMETERS = 2  # a gap density is about a mean and a spread


@dataclass(frozen=True)
class PairAppearance:
    """Appearance for the EM: the distance of index pairs, and the cannot-links' distances."""

    distance: Callable[[np.ndarray], np.ndarray]
    negatives: np.ndarray


@dataclass(frozen=True)
class Fitted:
    """What the EM learned, per candidate pair and per ordered camera pair."""

    dropped: set[str]  # the kinds dropped: their pairs say nothing
    kept: np.ndarray  # [P] bool: the pair's kind was kept
    llr: np.ndarray  # [P] time-and-place log odds against an unrelated pair
    posterior: np.ndarray  # [P] chance that the start continues the end, all evidence
    continued: dict[tuple[str, str], float]
    gap_s: dict[tuple[str, str], float]
    sigma: float


def _gaussian_log(diff: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Log density of 2-D offsets ``diff [P, 2]`` under one zero-mean Gaussian ``cov [2, 2]``."""
    mahalanobis = ((diff @ np.linalg.inv(cov)) * diff).sum(axis=1)
    return -0.5 * (mahalanobis + np.log(np.linalg.det(cov))) - np.log(2 * np.pi)


@dataclass(frozen=True)
class WarmStart:
    """Where a fit on a sample of the starts left off: its responsibilities placed on this
    fit's pairs (0 elsewhere), the kinds it dropped, and which starts it saw."""

    resp: np.ndarray
    dropped: set[str]
    sampled: np.ndarray  # [N] bool over tracklets: a start of the sample


class HandoverEM:
    """The EM fit of :class:`~pipeline.matcher.handover.Handover`: the pairs' fixed
    features, then :meth:`run`."""

    def __init__(
        self,
        motion: dict[str, np.ndarray],
        cameras: np.ndarray,
        site: Site,
        starts: np.ndarray,
        ends: np.ndarray,
        usable: np.ndarray,
        pairs: np.ndarray,
        max_gap: float,
    ) -> None:
        self.pairs, self.max_gap, self.usable = pairs, max_gap, usable
        x, y = pairs[:, 0], pairs[:, 1]
        self.x, self.y = x, y
        self.gaps = starts[y] - ends[x]
        self.same_camera = cameras[x] == cameras[y]
        self.entry_p = motion["start_p"][y]
        self.exit_p = motion["end_p"][x]
        self.exit_v = np.nan_to_num(motion["end_v"][x])
        # where a lost track reappears: in box heights around the point its motion predicts
        velocity = np.nan_to_num((motion["end_v"][x] + motion["start_v"][y]) / 2)
        self.height = (motion["end_h"][x] + motion["start_h"][y]) / 2
        moved = self.entry_p - self.exit_p - velocity * self.gaps[:, None]
        self.offset = moved / self.height[:, None]
        # background: each camera's entry points (all of them) and rate of starts
        self.log_place, self.span, self.starts_in = site.log_place, site.span, site.starts_in
        exit_zone = site.exit_zone
        # a kind of continuation: within one camera, or from one exit zone to one camera
        names, camera_of = np.unique(cameras.astype(str), return_inverse=True)
        zone = np.where(self.same_camera, -1, exit_zone[x]) + 1
        code = (camera_of[x] * len(names) + camera_of[y]) * (MAX_ZONES + 2) + zone
        codes, inverse = np.unique(code, return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        groups = np.split(order, np.cumsum(np.bincount(inverse, minlength=len(codes)))[:-1])
        groups = groups if len(codes) else []
        self.of_kind: dict[str, np.ndarray] = {}
        self.pair_of: dict[str, tuple[str, str]] = {}  # the camera pair of each kind
        for value, members in zip(codes.tolist(), groups, strict=True):
            pair, z = divmod(value, MAX_ZONES + 2)
            a, b = str(names[pair // len(names)]), str(names[pair % len(names)])
            k = f"{a}\t{b}" + (f"\t{z - 1}" if z else "")
            self.of_kind[k], self.pair_of[k] = members, (a, b)
        self.kinds = sorted(self.of_kind)
        # where cross-camera continuations appear, per kind: the two models' designs (a
        # Gaussian: intercept only; a map: the end's foot point and velocity x gap too), the
        # entry points, the background's log density of them, and their mean and covariance
        self.place_inputs: dict[str, tuple] = {}
        for k in self.kinds:
            mine = self.of_kind[k]
            if self.same_camera[mine].any():
                continue
            features = np.c_[self.exit_p[mine], self.exit_v[mine] * self.gaps[mine, None]]
            scaled = (features - features.mean(axis=0)) / (features.std(axis=0) + 1e-6)
            ones = np.ones((len(mine), 1))
            designs = (ones, np.c_[ones, scaled])
            points = self.entry_p[mine]
            prior = (
                points.mean(axis=0),
                np.cov(points.T) + np.eye(2) if len(points) > 2 else np.eye(2) * 1e4,
            )
            self.place_inputs[k] = (designs, points, self.log_place[self.y[mine]], prior)
        self.ends_of = {}  # the ends each kind can continue
        for k in self.kinds:
            source, _, *zone_of = k.split("\t")
            ends_in = (cameras == source) & usable
            if zone_of:
                ends_in &= exit_zone == int(zone_of[0])
            self.ends_of[k] = int(ends_in.sum())

    def run(
        self,
        appearance: PairAppearance | None,
        warm: WarmStart | None = None,
        sampled: np.ndarray | None = None,
    ) -> Fitted:
        """:data:`EM_ROUNDS` rounds from no knowledge; from ``warm``, its M-step (scaled up
        from the sample's starts to all of them) and :data:`FINISH_ROUNDS` rounds.
        ``sampled``: the starts these pairs cover, when they are a sample of the window's
        (shares and rates are scaled up to the window)."""
        n = len(self.pairs)
        looks = _Looks(appearance, self.pairs)
        rho = {k: 0.5 for k in self.kinds}
        log_gap = np.full(n, -np.log(self.max_gap))
        spread = (START_SIGMA**2, START_SIGMA**2)
        places: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        rate = {c: len(m) / self.span[c] for c, m in self.starts_in.items()}
        log_b = np.full(len(self.usable), -np.inf)
        log_c, resp = np.zeros(n), np.zeros(n)
        dropped: set[str] = set()
        everyone = np.ones(len(self.usable), bool) if sampled is None else sampled
        seen = everyone  # the starts the current responsibilities cover
        rounds = range(EM_ROUNDS)
        if warm is not None:
            resp, dropped, seen = warm.resp, warm.dropped, warm.sampled
            rounds = range(EM_ROUNDS - FINISH_ROUNDS - 1, EM_ROUNDS)
        for round_ in rounds:
            if round_ > rounds[0] or warm is None:
                log_c = self._log_continuation(rho, log_gap, spread, places)
                for camera, members in self.starts_in.items():
                    log_b[members] = np.log(max(rate[camera], 1e-12)) + self.log_place[members]
                if round_ == EM_ROUNDS // 2:
                    dropped = self._untimed(resp, log_gap)
                for k in dropped:
                    log_c[self.of_kind[k]] = -np.inf
                before = resp
                resp, fresh = _responsibilities(log_c + looks.log_ratio, log_b, self.y)
                seen = everyone
                if round_ > EM_ROUNDS // 2 and np.abs(resp - before).max(initial=0.0) < CONVERGED:
                    break
            else:  # the sample's responsibilities; its fresh starts
                fresh = _fresh(resp, self.y, len(self.usable))
            share = {
                c: max(float(seen[m].mean()), 1e-9) if len(m) else 1.0
                for c, m in self.starts_in.items()
            }
            for k in self.kinds:
                # a share: an end is continued once at most (scaled up from a sample)
                scale = share[self.pair_of[k][1]]
                total = float(resp[self.of_kind[k]].sum()) / scale
                rho[k] = min(total / max(self.ends_of[k], 1), 1.0)
            for camera, members in self.starts_in.items():
                observed = float(fresh[members][seen[members]].sum()) / share[camera]
                rate[camera] = max(observed, 1e-3) / self.span[camera]
            log_gap = self._gap_log_density(resp)
            spread = self._spread(resp)
            places = self._entry_places(resp)
            looks.learn(resp)
        # time and place as a likelihood ratio: against an unrelated pair's gap (uniform
        # over the window) and place (where the camera's tracks start)
        walk = log_c - self._log_rho(rho) + np.log(self.max_gap) - self.log_place[self.y]
        continued: dict[tuple[str, str], float] = {}
        gap_s: dict[tuple[str, str], float] = {}
        for key in sorted(set(self.pair_of.values())):
            kinds = [k for k in self.kinds if self.pair_of[k] == key]
            mine = np.concatenate([self.of_kind[k] for k in kinds])
            sources = [self.ends_of[k] for k in kinds]
            ends = max(sources) if key[0] == key[1] else sum(sources)
            continued[key] = float(resp[mine].sum()) / max(ends, 1)
            gap_s[key] = _weighted_median(self.gaps[mine], resp[mine])
        kept = np.ones(len(self.pairs), bool)  # a dropped kind has no opinion
        for k in dropped:
            kept[self.of_kind[k]] = False
        return Fitted(
            dropped,
            kept,
            np.clip(walk, -LLR_CLIP, LLR_CLIP),
            resp,
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
            mine = self.of_kind[k]
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
            mine = self.of_kind[k]
            place[mine] = _gaussian_log(self.entry_p[mine] - predicted, cov)
        return self._log_rho(rho) + log_gap + place

    def _log_rho(self, rho: dict[str, float]) -> np.ndarray:
        out = np.empty(len(self.pairs))
        for k, value in rho.items():
            out[self.of_kind[k]] = np.log(max(value, 1e-6))
        return out

    def _gap_log_density(self, resp: np.ndarray) -> np.ndarray:
        """Per kind, the responsibility-weighted kernel density of the gaps (its own floor
        keeps every gap possible)."""
        out = np.full(len(self.pairs), -np.log(self.max_gap))
        for k in self.kinds:
            mine = self.of_kind[k]
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
        """Per cross-camera kind, where its continuations appear: the background's own
        density (no model), one Gaussian, or a linear map from the end (foot point, and
        velocity times gap) to the entry point, whichever scores best by BIC on the pairs
        weighted by responsibility (a model fitted to a handful of pairs would otherwise
        pull the EM towards them). Each pair's predicted entry point and the covariance."""
        out = {}
        for k, (designs, points, background, prior) in self.place_inputs.items():
            w = resp[self.of_kind[k]]
            best, best_score = None, 0.0
            for design, parameters in zip(designs, PLACE_PARAMETERS, strict=True):
                predicted, cov = self._ridge(design, points, w, prior)
                gain = float(w @ (_gaussian_log(points - predicted, cov) - background))
                score = gain - 0.5 * parameters * np.log(max(float(w.sum()), 2.0))
                if score > best_score:
                    best, best_score = (predicted, cov), score
            if best is not None:
                out[k] = best
        return out

    @staticmethod
    def _ridge(
        design: np.ndarray, points: np.ndarray, w: np.ndarray, prior: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """Weighted ridge regression of ``points`` on ``design``, with pseudo-samples at
        the ``prior`` (mean, covariance of all the kind's candidate entries) and no slope;
        the predictions and the residual covariance (shrunk towards the prior's)."""
        prior_mean, prior_cov = prior
        gram = design.T @ (w[:, None] * design) + PRIOR_SAMPLES * np.eye(design.shape[1])
        target = design.T @ (w[:, None] * points)
        target[0] += PRIOR_SAMPLES * prior_mean
        predicted = design @ np.linalg.solve(gram, target)
        residual = points - predicted
        scatter = (w[:, None] * residual).T @ residual + PRIOR_SAMPLES * prior_cov
        return predicted, scatter / (float(w.sum()) + PRIOR_SAMPLES) + np.eye(2)


class _Looks:
    """Appearance as a likelihood ratio of each candidate pair, learned in the EM."""

    def __init__(self, appearance: PairAppearance | None, pairs: np.ndarray) -> None:
        self.log_ratio = np.zeros(len(pairs))
        self.appearance = appearance
        if appearance is None or not len(pairs) or not len(appearance.negatives):
            self.appearance = None
            return
        self.d = np.asarray(appearance.distance(pairs), np.float64)
        negatives = np.asarray(appearance.negatives, np.float64)
        self.different = Density.fit(negatives, 0.0, 1.0, APPEARANCE_STEP, APPEARANCE_BANDWIDTH)
        # first round: all candidate pairs against the negatives. The candidates mix one
        # person's pairs with strangers', so where they lie closer than the negatives the
        # ratio rises with the true one; with no appearance signal at all it is 1
        self.learn(np.ones(len(pairs)))

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


def _weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    """The typical gap of a camera pair's continuations (a median: the many unlikely pairs
    spread over the window would pull a mean towards its middle)."""
    if not len(values) or weights.sum() <= 0:
        return 0.0
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, cumulative[-1] / 2)])


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
    return resp, _fresh(resp, y, len(log_b))


def _fresh(resp: np.ndarray, y: np.ndarray, n: int) -> np.ndarray:
    """``[n]`` chance that each start is fresh: what its candidate ends leave of it."""
    per_start = np.zeros(n)
    np.add.at(per_start, y, resp)
    return np.clip(1.0 - per_start, 0.0, 1.0)
