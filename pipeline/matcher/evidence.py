"""Evidence that two tracklets are one person, learned from the site's own footage.

Both cues are on one scale, log odds, so they add up (appearance and time are independent
given the identity) and neither needs a hand-set weight:

- appearance (:class:`AppearanceEvidence`): ``log(rate / F(d))``, where ``F`` is the share
  of the site's cannot-link pairs (certainly different people) closer than ``d`` and
  ``rate`` the tolerated false-link rate. Zero at the calibrated threshold, one nat per
  factor e fewer (or more) known-different pairs that close.
- transit time (:class:`TransitModel`, st-ReID, Wang et al., AAAI 2019): per ordered camera
  pair, a Parzen-smoothed histogram of the gap between leaving one camera and appearing in
  the next, from confident links, against the gap distribution of all tracklet pairs of that
  camera pair: ``log p(gap | linked) - log p(gap | any pair)``. Sparse pairs borrow strength
  from the pooled distribution of all pairs; a pair with too few links says nothing.

Densities are kernel estimates on a fixed grid with Scott's bandwidth and a small uniform
floor, so a cue never claims certainty from a handful of samples (LLRs are clipped too).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

LLR_CLIP = 3.0
MIN_LINKS = 5  # confident links before the transit model says anything
FLOOR = 0.02  # share of a uniform density mixed into every estimate
POOL_WEIGHT = 5.0  # pseudo-samples of the pooled distribution added to each camera pair


@dataclass(frozen=True)
class Density:
    """A 1-D density on a regular grid (kernel estimate of weighted samples)."""

    lo: float
    step: float
    pdf: np.ndarray

    @classmethod
    def fit(
        cls,
        samples: np.ndarray,
        lo: float,
        hi: float,
        step: float,
        min_bandwidth: float,
        weights: np.ndarray | None = None,
    ) -> Density:
        bins = max(int(np.ceil((hi - lo) / step)), 1)
        uniform = np.full(bins, 1.0 / (bins * step))
        samples = np.asarray(samples, np.float64)
        weights = np.ones_like(samples) if weights is None else np.asarray(weights, np.float64)
        inside = (samples >= lo) & (samples < hi)
        samples, weights = samples[inside], weights[inside]
        total = float(weights.sum())
        if total <= 1e-9:
            return cls(lo, step, uniform)
        mean = float(np.average(samples, weights=weights))
        spread = float(np.sqrt(np.average((samples - mean) ** 2, weights=weights)))
        effective = total**2 / max(float((weights**2).sum()), 1e-12)
        bandwidth = max(1.06 * spread * effective**-0.2, min_bandwidth)
        counts = np.bincount(((samples - lo) / step).astype(int), weights=weights, minlength=bins)[
            :bins
        ]
        radius = int(np.ceil(3 * bandwidth / step))
        offsets = np.arange(-radius, radius + 1) * step
        kernel = np.exp(-0.5 * (offsets / bandwidth) ** 2)
        smooth = np.convolve(counts.astype(np.float64), kernel / kernel.sum())[
            radius : radius + bins
        ]
        smooth /= smooth.sum() * step
        return cls(lo, step, (1 - FLOOR) * smooth + FLOOR * uniform)

    def at(self, x: float) -> float:
        """One value (no numpy call overhead, for loops over single gaps)."""
        index = min(max(int((x - self.lo) / self.step), 0), len(self.pdf) - 1)
        return float(self.pdf[index])

    def __call__(self, x: np.ndarray | float) -> np.ndarray:
        index = np.clip(((np.asarray(x) - self.lo) / self.step).astype(int), 0, len(self.pdf) - 1)
        return self.pdf[index]

    @property
    def mode(self) -> float:
        """The centre of the densest bin."""
        return self.lo + (int(np.argmax(self.pdf)) + 0.5) * self.step

    def mixed(self, other: Density, weight: float, other_weight: float) -> Density:
        total = weight + other_weight
        return Density(self.lo, self.step, (weight * self.pdf + other_weight * other.pdf) / total)


Pair = tuple[str, str]
POOLED: Pair = ("*", "*")


@dataclass(frozen=True)
class AppearanceEvidence:
    """Log odds of a link from an appearance distance, against the site's negatives:
    ``log(rate / F(d))`` with ``F`` the share of known-different pairs closer than ``d``.

    Closer than every negative, ``F`` is 0 and says nothing more; there the log odds keep
    rising by one per spread (MAD) of the negatives, so that two such distances are still
    told apart (capped at ``2 LLR_CLIP``).
    """

    negatives: np.ndarray  # sorted cannot-link distances
    rate: float
    spread: float

    @classmethod
    def fit(cls, negative_distances: np.ndarray, rate: float) -> AppearanceEvidence:
        negatives = np.sort(np.asarray(negative_distances, np.float64))
        spread = 1.4826 * float(np.median(np.abs(negatives - np.median(negatives))))
        return cls(negatives, rate, max(spread, 1e-6))

    def llr(self, d: np.ndarray | float) -> np.ndarray:
        d = np.asarray(d, np.float64)
        n = len(self.negatives)
        closer = np.searchsorted(self.negatives, d) / n
        beyond = np.maximum(self.negatives[0] - d, 0.0) / self.spread
        llr = np.log(self.rate) - np.log(np.maximum(closer, 0.5 / n)) + beyond
        return np.minimum(llr, 2 * LLR_CLIP)


MIN_PAIR_NEGATIVES = 20  # cannot-links of one camera pair before it gets its own evidence


def camera_pair_keys(cameras: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The unordered camera pair of each index pair, as one string (``a\tb``, a <= b)."""
    a, b = cameras[pairs[:, 0]].astype(str), cameras[pairs[:, 1]].astype(str)
    first = a <= b
    low, high = np.where(first, a, b), np.where(first, b, a)
    return np.char.add(np.char.add(low, "\t"), high)


@dataclass(frozen=True)
class PairedAppearance:
    """:class:`AppearanceEvidence`, optionally per camera pair
    (``MatcherConfig.appearance_per_camera_pair``): a distance is then judged against the
    known-different pairs *of the same two cameras*. Pairs seen in one camera share its
    background and angle; pairs across two views are compared with both views' biases,
    so their distances may be spread differently. Camera pairs with fewer than
    :data:`MIN_PAIR_NEGATIVES` cannot-links use all of them; with ``by_pair`` empty every
    distance is judged against all the cannot-links."""

    pooled: AppearanceEvidence
    by_pair: dict[str, AppearanceEvidence]

    @classmethod
    def fit(
        cls,
        negative_distances: np.ndarray,
        cameras: np.ndarray,
        negatives: np.ndarray,
        rate: float,
        per_pair: bool,
    ) -> PairedAppearance:
        """From the cannot-links' distances and index pairs ``negatives`` into ``cameras``
        (one camera per tracklet)."""
        pooled = AppearanceEvidence.fit(negative_distances, rate)
        if not per_pair:
            return cls(pooled, {})
        negative_keys = camera_pair_keys(cameras, negatives)
        keys, counts = np.unique(negative_keys, return_counts=True)
        return cls(
            pooled,
            {
                str(k): AppearanceEvidence.fit(negative_distances[negative_keys == k], rate)
                for k, c in zip(keys, counts, strict=True)
                if c >= MIN_PAIR_NEGATIVES
            },
        )

    def llr(self, d: np.ndarray, cameras: np.ndarray, pairs: np.ndarray) -> np.ndarray:
        """Log odds of the distances ``d`` of index ``pairs`` into ``cameras``."""
        out = self.pooled.llr(d)
        if not self.by_pair:
            return out
        keys = camera_pair_keys(cameras, pairs)
        for key, evidence in self.by_pair.items():
            mask = keys == key
            out[mask] = evidence.llr(np.asarray(d)[mask])
        return out

    def spanning(self, d: float, cameras: np.ndarray, a: list[int], b: list[int]) -> float:
        """Log odds of the average-linkage distance ``d`` of two clusters (member indices
        ``a``, ``b`` into ``cameras``), averaged over the camera pairs their member pairs
        span, each judged against its own negatives."""
        if not self.by_pair:
            return float(self.pooled.llr(d))
        spans = Counter("\t".join(sorted((str(cameras[x]), str(cameras[y])))) for x in a for y in b)
        total = sum(spans.values())
        return sum(
            float(self.by_pair.get(key, self.pooled).llr(d)) * n / total for key, n in spans.items()
        )


@dataclass
class TransitModel:
    """Per ordered camera pair: transit-gap densities of confident links vs of all pairs."""

    lo: float
    hi: float
    step: float = 0.5
    same: dict[Pair, Density] = field(default_factory=dict)
    any: dict[Pair, Density] = field(default_factory=dict)
    samples: dict[Pair, np.ndarray] = field(default_factory=dict)

    @classmethod
    def fit(
        cls,
        linked_gaps: dict[Pair, np.ndarray],
        all_gaps: dict[Pair, np.ndarray],
        lo: float,
        hi: float,
    ) -> TransitModel:
        model = cls(lo, hi)
        model.samples = {p: np.asarray(v, np.float64) for p, v in linked_gaps.items()}
        pooled_linked = np.concatenate([*model.samples.values(), np.empty(0)])
        if len(pooled_linked) < MIN_LINKS:
            return model
        pooled_all = np.concatenate([*all_gaps.values(), np.empty(0)])
        fit = lambda x: Density.fit(x, lo, hi, model.step, 1.0)  # noqa: E731
        pool_same, pool_any = fit(pooled_linked), fit(pooled_all)
        model.same[POOLED], model.any[POOLED] = pool_same, pool_any
        for pair in set(model.samples) | set(all_gaps):
            linked = model.samples.get(pair, np.empty(0))
            every = all_gaps.get(pair, np.empty(0))
            model.same[pair] = fit(linked).mixed(pool_same, len(linked), POOL_WEIGHT)
            model.any[pair] = fit(every).mixed(pool_any, len(every), POOL_WEIGHT)
        return model

    def llr(self, source: str, target: str, gap: float) -> float:
        """Log odds from a ``source`` -> ``target`` move taking ``gap`` seconds (0 when
        nothing was learned or the gap is outside the learned span)."""
        if not self.same or not self.lo <= gap < self.hi:
            return 0.0
        same, every = self._densities((source, target))
        return min(max(math.log(same.at(gap)) - math.log(every.at(gap)), -LLR_CLIP), LLR_CLIP)

    def _densities(self, pair: Pair) -> tuple[Density, Density]:
        """(linked, any pair) gap densities of ``pair``; the pooled ones when unseen."""
        return self.same.get(pair, self.same[POOLED]), self.any.get(pair, self.any[POOLED])

    def llr_many(self, sources: np.ndarray, targets: np.ndarray, gaps: np.ndarray) -> np.ndarray:
        """:meth:`llr` of many moves at once."""
        out = np.zeros(len(gaps))
        if not self.same:
            return out
        inside = (gaps >= self.lo) & (gaps < self.hi)
        keys = np.char.add(np.char.add(sources.astype(str), "\t"), targets.astype(str))
        for key in np.unique(keys[inside]):
            mask = inside & (keys == key)
            same, every = self._densities(tuple(key.split("\t", 1)))
            llr = np.log(same(gaps[mask])) - np.log(every(gaps[mask]))
            out[mask] = np.clip(llr, -LLR_CLIP, LLR_CLIP)
        return out


def sample_gaps(
    cameras: Sequence[str],
    starts: np.ndarray,
    ends: np.ndarray,
    lo: float,
    hi: float,
    rng: np.random.Generator,
    max_pairs: int = 200_000,
) -> dict[Pair, np.ndarray]:
    """Gaps ``start_b - end_a`` (``a`` starts first) of tracklet pairs per ordered camera
    pair: what any pair's gap looks like (a random sample when there are many pairs)."""
    n = len(cameras)
    if n < 2:
        return {}
    if n * (n - 1) // 2 <= max_pairs:
        i, j = np.triu_indices(n, 1)
    else:
        i, j = rng.integers(0, n, max_pairs), rng.integers(0, n, max_pairs)
        i, j = i[i != j], j[i != j]
    first = starts[i] <= starts[j]
    a, b = np.where(first, i, j), np.where(first, j, i)
    gap = starts[b] - ends[a]
    keep = (gap >= lo) & (gap < hi)
    names = np.asarray(cameras, dtype=object)
    sources, targets, gap = names[a[keep]], names[b[keep]], gap[keep]
    out: dict[Pair, np.ndarray] = {}
    for pair in set(zip(sources, targets, strict=True)):
        out[pair] = gap[(sources == pair[0]) & (targets == pair[1])]
    return out
