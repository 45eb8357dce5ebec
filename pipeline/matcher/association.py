"""Re-association: cluster a window of tracklets into identities with all the evidence.

Pure numpy (a matcher worker loads no torch). The steps:

1. **Appearance** of a tracklet is the L2-normalised mean of its exemplar features with its
   camera's mean removed; clusters are compared by average linkage
   (:mod:`reid.runtime.clustering`, shared with ``reid-train adapt``).
2. **Cannot-links** come free from the footage: two tracklets seen at the same time in one
   camera, or in two cameras whose views do not overlap, are different people. Hand rules
   (topology gates) are checked on top with :func:`pipeline.matcher.gates.rejection`.
3. **Calibration**: the cannot-link pairs are a sample of known-different pairs of *this*
   site, seen by *this* model. The link threshold is their quantile at the pair rate
   ``false_links_per_tracklet / (N - 1)`` for a window of ``N`` tracklets: on average that
   many known-different tracklets fall within the threshold of any one tracklet, however
   large the window. No hand-tuned distance; it moves with the model and the site.
4. **Clustering**: constrained average linkage. Candidate pairs (k nearest neighbours) in
   ascending distance; two clusters merge when their average-linkage distance is below the
   threshold and no member of one cannot-link any member of the other.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from pipeline.matcher.camera_links import CameraLinks
from pipeline.matcher.codec import mean_vector, representative
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.evidence import (
    LLR_CLIP,
    AppearanceEvidence,
    PairedAppearance,
    TransitModel,
)
from pipeline.matcher.gates import rejection
from pipeline.matcher.geometry import SpatialEvidence
from pipeline.matcher.handover import Handover, PairAppearance
from pipeline.matcher.moves import (
    Moves,
    consecutive_pairs,
    junction_llr,
    learn_transit,
    transit_scores,
)
from pipeline.matcher.types import Sighting, Tracklet
from reid.runtime.clustering import (
    MIN_NEGATIVES,
    Cluster,
    Rule,
    camera_centred,
    cannot_links,
    linked_within,
    merge_constrained,
    nearest_neighbours,
    neighbour_pairs,
    pair_distances,
    pair_rate,
    quantile_threshold,
)
from reid.runtime.pair_scoring import AttentionScorer

NEIGHBOURS = 20  # appearance neighbours considered per tracklet in the first pass
FUSED_NEIGHBOURS = 200  # in the second pass, where time may link dissimilar-looking tracklets


def tracklet_vectors(tracklets: Sequence[Tracklet]) -> np.ndarray:
    """``[N, D]`` L2-normalised mean exemplar feature of each tracklet."""
    return np.stack([mean_vector(t) for t in tracklets])


def cannot_link_pairs(tracklets: Sequence[Tracklet], config: MatcherConfig) -> np.ndarray:
    """``[P, 2]`` index pairs (i < j) of tracklets that are certainly different people:
    overlapping in time, in one camera or in two cameras whose views do not overlap."""
    return cannot_links(
        np.array([t.start for t in tracklets]),
        np.array([t.end for t in tracklets]),
        [t.camera_id for t in tracklets],
        config.overlaps,
    )


@dataclass(frozen=True)
class Calibration:
    """The site's link threshold, learned from its known-different pairs."""

    threshold: float
    negatives: int
    pair_rate: float  # share of known-different pairs within the threshold
    learned: bool  # False: too few negatives, the configured threshold is used

    def as_dict(self) -> dict[str, float | int | bool]:
        return {
            "threshold": self.threshold,
            "negatives": self.negatives,
            "pair_rate": self.pair_rate,
            "learned": self.learned,
        }


def calibrate(vectors: np.ndarray, negatives: np.ndarray, config: MatcherConfig) -> Calibration:
    """Threshold = the known-different pair distances' quantile at the pair rate."""
    rate = pair_rate(len(vectors), config.false_links_per_tracklet)
    if len(negatives) < MIN_NEGATIVES:
        return Calibration(config.link_threshold, len(negatives), rate, False)
    d = pair_distances(vectors, negatives)
    return Calibration(quantile_threshold(d, rate), len(negatives), rate, True)


@dataclass(frozen=True)
class AttentionInputs:
    """Attention consistency for re-association: per tracklet, its representative crop (the
    one closest to the tracklet's mean) as a feature and a projected conv map."""

    scorer: AttentionScorer
    features: np.ndarray  # [N, D]
    projections: np.ndarray  # [N, r, h, w]

    def distances(self, pairs: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Closed-form attention distance of each index pair."""
        out = [
            self.scorer.distance(
                self.features[part[:, 0]],
                self.projections[part[:, 0]],
                self.features[part[:, 1]],
                self.projections[part[:, 1]],
            )
            for part in np.array_split(pairs, max(1, -(-len(pairs) // chunk)))
            if len(part)
        ]
        return np.concatenate(out) if out else np.empty(0, np.float32)


def representatives(tracklets: Sequence[Tracklet]) -> tuple[np.ndarray, np.ndarray] | None:
    """Each tracklet's crop closest to its mean (:func:`~pipeline.matcher.codec.representative`):
    (features, projections); None when a tracklet carries no attention."""
    picks = [representative(t) for t in tracklets]
    if not tracklets or any(p is None for p in picks):
        return None
    return (
        np.stack([p[0] for p in picks if p is not None]),
        np.stack([p[1] for p in picks if p is not None]),
    )


def auc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Chance that a positive pair outscores a negative one (ties count half)."""
    ranks = rankdata(scores)
    p, n = int(positive.sum()), int((~positive).sum())
    return float((ranks[positive].sum() - p * (p + 1) / 2) / (p * n)) if p and n else 0.5


ATTENTION_WEIGHTS = (0.0, 0.5, 1.0)
MIN_POSITIVES = 5


def fit_attention_weight(
    feature_d: tuple[np.ndarray, np.ndarray],
    attention_d: tuple[np.ndarray, np.ndarray],
    rate: float,
) -> tuple[float, dict[str, float]]:
    """The weight of attention evidence, fitted on pseudo-pairs: (positives, negatives)
    distances of confident links and cannot-links. Two folds: the evidence is fitted on one
    half of the pairs and judged by pair-verification AUC on the other, both ways; a weight
    above 0 is taken only if it raises AUC in both folds (then the best mean), so attention
    enters only where it helps on pairs it was not fitted on."""
    (fp, fn), (ap, an) = feature_d, attention_d
    if len(fp) < 2 * MIN_POSITIVES or len(fn) < 2 * MIN_POSITIVES:
        return 0.0, {}
    folds = []
    for part in (0, 1):
        fit_n, held_n = np.arange(len(fn)) % 2 == part, np.arange(len(fn)) % 2 != part
        held_p = np.arange(len(fp)) % 2 != part
        looks = AppearanceEvidence.fit(fn[fit_n], rate)
        consistency = AppearanceEvidence.fit(an[fit_n], rate)
        label = np.r_[np.ones(int(held_p.sum()), bool), np.zeros(int(held_n.sum()), bool)]
        folds.append(
            {
                w: auc(
                    looks.llr(np.r_[fp[held_p], fn[held_n]])
                    + w * consistency.llr(np.r_[ap[held_p], an[held_n]]),
                    label,
                )
                for w in ATTENTION_WEIGHTS
            }
        )
    mean = {w: float(np.mean([f[w] for f in folds])) for w in ATTENTION_WEIGHTS}
    helps = [w for w in ATTENTION_WEIGHTS[1:] if all(f[w] > f[0.0] for f in folds)]
    best = max(helps, key=lambda w: mean[w]) if helps else 0.0
    return best, {f"w={w:g}": round(mean[w], 4) for w in ATTENTION_WEIGHTS}


@dataclass(frozen=True)
class Association:
    """A clustering of a window with the evidence it was made with."""

    labels: list[int]
    calibration: Calibration
    transit: TransitModel | None = None
    spatial: SpatialEvidence | None = None
    attention_weight: float = 0.0
    attention_auc: dict[str, float] | None = None  # pseudo-pair AUC per candidate weight
    links: CameraLinks | None = None  # exit/entry zones and their transit times
    handover: Handover | None = None  # how ended tracks are continued


def associate(
    tracklets: Sequence[Tracklet],
    config: MatcherConfig,
    seed: int = 0,
    attention: AttentionInputs | None = None,
) -> Association:
    """Two passes. (1) Appearance only, at the calibrated threshold: confident links, from
    which the site's transit times are learned. (2) Appearance, transit and (for overlapping
    cameras) spatial evidence in log odds (:mod:`pipeline.matcher.evidence`,
    :mod:`pipeline.matcher.geometry`): clusters merge where together they favour one person,
    so a plausible transit or a matching position lets a less certain look link, and an
    implausible one vetoes."""
    if not tracklets:
        return Association([], Calibration(config.link_threshold, 0, 0.0, False))
    vectors = camera_centred(tracklet_vectors(tracklets), [t.camera_id for t in tracklets])
    negatives = cannot_link_pairs(tracklets, config)
    calibration = calibrate(vectors, negatives, config)
    index, distance = nearest_neighbours(vectors, FUSED_NEIGHBOURS)
    gates = _gates(tracklets, config)
    confident = linked_within(
        vectors, negatives, calibration.threshold, (index, distance), NEIGHBOURS, gates
    )
    if not calibration.learned or not config.spatio_temporal:
        return Association(confident, calibration)
    transit = learn_transit(tracklets, confident, config, seed)
    links = (
        CameraLinks.fit(
            tracklets,
            0.0,  # blind-zone walks; overlapping views are left to the foot-point map
            config.transit_max_s,
            consecutive_pairs(tracklets, confident),
            seed,
        )
        if config.camera_links
        else None
    )
    spatial = SpatialEvidence.fit(tracklets, config, seed)
    negative_d = pair_distances(vectors, negatives)
    weight, aucs, consistency = 0.0, None, None
    if attention is not None:
        positives = _confident_pairs(confident)
        negative_att = attention.distances(negatives)
        weight, aucs = fit_attention_weight(
            (pair_distances(vectors, positives), negative_d),
            (attention.distances(positives), negative_att),
            calibration.pair_rate,
        )
        consistency = AppearanceEvidence.fit(negative_att, calibration.pair_rate)
    cameras = np.array([t.camera_id for t in tracklets], dtype=object)
    appearance = PairedAppearance.fit(
        negative_d, cameras, negatives, calibration.pair_rate, config.appearance_per_camera_pair
    )
    handover = (
        Handover.fit(
            tracklets,
            config.handover_max_s,
            config.overlaps,
            PairAppearance(lambda pairs: pair_distances(vectors, pairs), negative_d),
            seed,
        )
        if config.handovers
        else None
    )
    moves = Moves(transit, links, handover)
    learned = transit.same or spatial.pair_llr or weight or (links and links.same)
    if not learned and handover is None:
        return Association(confident, calibration, transit, spatial, weight, aucs, links)
    near, near_d = neighbour_pairs(index, distance, FUSED_NEIGHBOURS, 1.0)
    # transit and attention add at most LLR_CLIP each, so a pair below that on looks can
    # never score above 0 unless position speaks for it (added back as `extra`)
    hopeful = appearance.llr(near_d, cameras, near) > -LLR_CLIP * (1 + weight)
    near, near_d = near[hopeful], near_d[hopeful]
    n = len(tracklets)
    seen = np.array(sorted(spatial.pair_llr), np.int64).reshape(-1, 2)
    seen_llr = np.array([spatial.pair_llr[(int(i), int(j))] for i, j in seen])
    extra = seen[~np.isin(seen[:, 0] * n + seen[:, 1], near[:, 0] * n + near[:, 1])]
    candidates = np.concatenate([near, extra])
    first, second = candidates[:, 0], candidates[:, 1]
    codes = first * n + second
    where = np.zeros(len(candidates))
    if len(seen):
        seen_codes = seen[:, 0] * n + seen[:, 1]
        slot = np.clip(np.searchsorted(seen_codes, codes), 0, len(seen) - 1)
        hit = seen_codes[slot] == codes
        where[hit] = seen_llr[slot[hit]]
    score = (
        appearance.llr(
            np.concatenate([near_d, pair_distances(vectors, extra)]), cameras, candidates
        )
        + transit_scores(tracklets, first, second, moves)
        + where
    )
    pair_att: dict[int, dict[int, float]] = {}
    if weight > 0:
        assert attention is not None and consistency is not None  # fitted with attention only
        att = weight * np.minimum(consistency.llr(attention.distances(candidates)), LLR_CLIP)
        score = score + att
        for (x, y), value in zip(candidates.tolist(), att.tolist(), strict=True):
            pair_att.setdefault(x, {})[y] = value
            pair_att.setdefault(y, {})[x] = value
    order = np.argsort(-score, kind="stable")

    seen_with: dict[int, dict[int, float]] = {}
    for (x, y), value in spatial.pair_llr.items():
        seen_with.setdefault(x, {})[y] = value
        seen_with.setdefault(y, {})[x] = value

    def favours_one_person(ca: Cluster, cb: Cluster) -> bool:
        inside = set(cb.members)
        where = sum(
            value for x in ca.members for y, value in seen_with.get(x, {}).items() if y in inside
        )
        looks = appearance.spanning(ca.average_distance(cb), cameras, ca.members, cb.members)
        known = [v for x in ca.members for y, v in pair_att.get(x, {}).items() if y in inside]
        consistent = float(np.mean(known)) if known else 0.0
        walks = junction_llr(tracklets, ca, cb, moves)
        evidence = looks + consistent + walks + where
        return evidence > 0 and gates(ca, cb)

    labels = merge_constrained(
        vectors,
        candidates[order][score[order] > 0],
        negatives,
        favours_one_person,
        _handed_over(handover, gates),
    )
    return Association(labels, calibration, transit, spatial, weight, aucs, links, handover)


def _handed_over(handover: Handover | None, gates: Rule) -> np.ndarray:
    """The hand-overs more likely than not (posterior above 0.5: the decision is the
    posterior's, no threshold is tuned), most likely first, that the topology allows."""
    if handover is None:
        return np.empty((0, 2), np.int64)
    sure = np.flatnonzero(handover.posterior > 0.5)
    sure = sure[np.argsort(-handover.posterior[sure], kind="stable")]
    pairs = [
        (x, y)
        for x, y in handover.pairs[sure].tolist()
        if gates(Cluster([x], np.empty(0)), Cluster([y], np.empty(0)))
    ]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def _confident_pairs(labels: Sequence[int]) -> np.ndarray:
    """Index pairs within the confident clusters (pseudo-positives)."""
    groups: dict[int, list[int]] = {}
    for n, label in enumerate(labels):
        groups.setdefault(label, []).append(n)
    pairs = [(a, b) for m in groups.values() for k, a in enumerate(m) for b in m[k + 1 :]]
    return np.asarray(pairs, np.int64).reshape(-1, 2)


def cluster_tracklets(
    tracklets: Sequence[Tracklet],
    config: MatcherConfig,
    scorer: AttentionScorer | None = None,
) -> tuple[list[int], Calibration]:
    """Cluster label per tracklet (0..C-1, in order of first member) and the calibration;
    with a ``scorer`` and tracklets carrying attention, attention consistency is weighed."""
    reps = representatives(tracklets) if scorer is not None else None
    attention = None if scorer is None or reps is None else AttentionInputs(scorer, *reps)
    result = associate(tracklets, config, attention=attention)
    return result.labels, result.calibration


def _gates(tracklets: Sequence[Tracklet], config: MatcherConfig) -> Rule:
    """The hand-written topology as a merge rule. Without a topology the gates say exactly
    what the cannot-links say, so only a topology costs a check."""
    if not config.topology:
        return lambda ca, cb: True
    sightings = [Sighting("", t.camera_id, t.track_id, t.start, t.end) for t in tracklets]

    def allowed(ca: Cluster, cb: Cluster) -> bool:
        seen = [sightings[n] for n in ca.members]
        return not any(rejection(tracklets[y], seen, config) for y in cb.members)

    return allowed
