"""Hand-overs learned from the footage with no link known: the track that ends and the
track that begins when one person is lost by the tracker (same camera) or walks across a
blind zone into another view.

Every track start is either a *fresh* appearance or the *continuation* of an earlier track
end. Starts are modelled as a Poisson superposition (the exit/entry family of Makris, Ellis
& Black, CVPR 2004, fitted by EM instead of correlograms, so a handful of events is enough):

- fresh starts of camera ``B`` come at its background intensity ``r_B s_B(q)``: its rate
  of fresh starts times the density of its entry points (a Gaussian mixture of all of them);
- the end ``x`` of a track is continued at ``q`` after ``gap`` seconds with intensity
  ``rho_k g_k(gap) f_k(q | x)`` for its *kind* ``k`` (within one camera, or from one exit
  zone of camera ``A`` to camera ``B``): ``rho_k`` the share of those ends continued (at
  most 1), ``g_k`` the density of their gaps (a kernel estimate weighted by the
  responsibilities), ``f_k`` where the person appears: in the same camera a Gaussian around
  the point the track's velocity predicts, in box heights, widening with the gap; in another
  camera the background's own density, one Gaussian, or a linear map from the end (foot
  point, velocity x gap), whichever BIC prefers. A kind whose gaps are no more likely than
  chance's is dropped (BIC): with no correlation in time it cannot be told from the
  background.

Appearance joins as a likelihood ratio ``a(d) = p(d | same) / p(d | different)``: the
different-people density is the site's cannot-link distances (known), the same-person one
is learned in the same EM from the distances of the pairs weighted by their
responsibilities, non-increasing in ``d`` (isotonic regression; first round: all candidate
pairs against the negatives, so exactly 1 where appearance says nothing). So the chance
components are known (the background comes from all starts, the negatives from the
cannot-links) and no continuation needs a label.

The evidence handed to re-association is time and place only, as a likelihood ratio
against an unrelated pair (re-association adds its own appearance):

    llr(x, y) = log g_k(gap) f_k(q | x) - log u(gap) s_B(q)

``u`` uniform over the window. The posterior (all evidence, with the competition of every
other end that could have started the same track) decides the hand-overs that are more
likely than not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline.matcher.camera_links import foot_points
from pipeline.matcher.handover_fit import HandoverEM, PairAppearance, WarmStart
from pipeline.matcher.handover_site import Site
from pipeline.matcher.types import Tracklet

__all__ = ["Handover", "PairAppearance", "candidate_pairs"]

VELOCITY_S = 1.0  # a track's velocity at its end (start): over its last (first) second
MAX_CANDIDATES = 64  # most recent ends considered per start
PAIR_SPAN = 1 << 31  # pair codes x * PAIR_SPAN + y: tracklet indices stay below
FIT_PAIRS = 100_000  # candidate pairs the EM learns on; a larger window learns on a sample


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


def _sampled_starts(pairs: np.ndarray, n: int, seed: int) -> np.ndarray | None:
    """``[n]`` bool: the starts a large window's EM learns on (their pairs about
    :data:`FIT_PAIRS`), drawn by ``seed``; None when the window is small enough for all."""
    if len(pairs) <= FIT_PAIRS:
        return None
    starts = np.unique(pairs[:, 1])
    keep = max(int(len(starts) * FIT_PAIRS / len(pairs)), 1)
    chosen = np.random.default_rng(seed).choice(starts, keep, replace=False)
    out = np.zeros(n, bool)
    out[chosen] = True
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


@dataclass(frozen=True)
class Handover:
    """The fitted model and its evidence for the candidate pairs."""

    pairs: np.ndarray  # [P, 2] (end x, start y)
    llr: np.ndarray  # [P] time-and-place log odds of each pair against an unrelated one
    posterior: np.ndarray  # [P] chance that y continues x, all evidence
    continued: dict[tuple[str, str], float]  # expected continuations per end, camera pair
    gap_s: dict[tuple[str, str], float]  # median gap of the continuations, camera pair
    sigma: float  # same-camera reappearance spread at gap 0, box heights
    codes: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), compare=False)
    order: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64), compare=False)

    def __post_init__(self) -> None:
        # pairs by code (x * SPAN + y), sorted once: a move is looked up by bisection
        codes = self.pairs[:, 0].astype(np.int64) * PAIR_SPAN + self.pairs[:, 1]
        order = np.argsort(codes, kind="stable")
        object.__setattr__(self, "order", order)
        object.__setattr__(self, "codes", codes[order])

    def at(self, x: int, y: int) -> float | None:
        """Log odds of the move ``x -> y``; None where it is no candidate pair."""
        code = x * PAIR_SPAN + y
        slot = int(np.searchsorted(self.codes, code))
        if slot < len(self.codes) and self.codes[slot] == code:
            return float(self.llr[self.order[slot]])
        return None

    def lookup(self, earlier: np.ndarray, later: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Log odds of moves ``earlier -> later`` (tracklet indices) and whether covered."""
        out = np.zeros(len(earlier))
        if not len(self.codes) or not len(earlier):
            return out, np.zeros(len(earlier), bool)
        wanted = np.asarray(earlier, np.int64) * PAIR_SPAN + np.asarray(later, np.int64)
        slot = np.clip(np.searchsorted(self.codes, wanted), 0, len(self.codes) - 1)
        covered = self.codes[slot] == wanted
        out[covered] = self.llr[self.order[slot[covered]]]
        return out, covered

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
            # decided once per camera pair, not once per candidate pair
            names, camera_of = np.unique(cameras.astype(str), return_inverse=True)
            apart = np.array([[a == b or not overlaps(a, b) for b in names] for a in names])
            pairs = pairs[apart[camera_of[pairs[:, 0]], camera_of[pairs[:, 1]]]]
        site = Site.fit(motion, cameras, starts, ends, usable, seed)
        every = HandoverEM(motion, cameras, site, starts, ends, usable, pairs, max_gap)
        sample = _sampled_starts(pairs, len(tracklets), seed)
        warm = None
        if sample is not None:  # learn on a sample of the starts, then settle on all pairs
            chosen = sample[pairs[:, 1]]
            part = HandoverEM(motion, cameras, site, starts, ends, usable, pairs[chosen], max_gap)
            learned = part.run(appearance, sampled=sample)
            resp = np.zeros(len(pairs))
            resp[np.flatnonzero(chosen)] = learned.posterior
            warm = WarmStart(resp, learned.dropped, sample)
        fitted = every.run(appearance, warm)
        return cls(
            pairs[fitted.kept],
            fitted.llr[fitted.kept],
            fitted.posterior[fitted.kept],
            fitted.continued,
            fitted.gap_s,
            fitted.sigma,
        )
