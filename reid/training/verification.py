"""Self-validation's verdict: does the adapted model tell the held-out pairs apart better than
the current one (the model adaptation starts from)?

The score is pair-verification ROC AUC (:func:`weighted_auc`: the chance that a pair of
different people is farther apart than a pair of one person, ties counting half, the
Mann-Whitney rank formula) of the held-out *run links* (two tracklets of one identity:
a person seen again, mostly in another camera) against the held-out *cannot-links*, the
same-camera and the cross-camera ones carrying half the weight each (:mod:`reid.training.heldout`).

Within-tracklet pairs (first against last crop) give a second figure, reported but not
scored: training on any pseudo-identities makes a model better at them, since every
pseudo-identity holds whole tracklets. Measured on generated sites (docs/adaptation.md),
identities shuffled across cameras raised it as much as the true identities did, while the
run-link AUC rose only with the true ones.

Distances are taken as the matcher takes them: crop features with their camera's mean
removed (:func:`~reid.runtime.clustering.camera_centred`), ``(1 - cos) / 2``.

The best round is adopted when its AUC beats the current model's by more than a margin:
``min_gain`` (0.005 by default: a gain too small to be worth a new feature space for the
site), or twice the standard error of the gain if that is larger. The error comes from
resampling the held-out groups with replacement (:data:`DRAWS` draws, the same draws for
both models): the pairs of one person or one moment are not independent, so a small site
needs a large gain. Picking the best of a few rounds on the same evidence flatters it a
little; the margin covers that too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from reid.data.datasets import Sample
from reid.evaluation import extract
from reid.models import CASN
from reid.runtime.clustering import camera_centred, pair_distances
from reid.training.heldout import LINK, WITHIN, Evidence

DRAWS = 200
NOISE_Z = 2.0  # a gain of two standard errors: about 1 in 40 by chance alone
MIN_GROUPS = 5  # held-out groups with run links, and with cannot-links, needed at least


def weighted_auc(distance: np.ndarray, positive: np.ndarray, weight: np.ndarray) -> float:
    """The weighted chance that a negative pair is farther apart than a positive one (ties
    half); NaN without weight on either side."""
    pos_d, pos_w = distance[positive], weight[positive]
    neg_d, neg_w = distance[~positive], weight[~positive]
    total_p, total_n = float(pos_w.sum()), float(neg_w.sum())
    if total_p <= 0.0 or total_n <= 0.0:
        return float("nan")
    order = np.argsort(neg_d, kind="stable")
    neg_d = neg_d[order]
    below = np.concatenate([[0.0], np.cumsum(neg_w[order])])  # weight of the i nearest
    low = np.searchsorted(neg_d, pos_d, side="left")
    high = np.searchsorted(neg_d, pos_d, side="right")
    farther, tied = total_n - below[high], below[high] - below[low]
    return float((pos_w * (farther + 0.5 * tied)).sum() / (total_p * total_n))


def pair_weights(evidence: Evidence, drawn: np.ndarray) -> np.ndarray:
    """Each pair's weight when held-out group ``g`` is drawn ``drawn[g]`` times: the product
    of its two sides' draws (one, for a pair inside one group), each kind summing to one."""
    a, b = drawn[evidence.units[:, 0]], drawn[evidence.units[:, 1]]
    weight = np.where(evidence.units[:, 0] == evidence.units[:, 1], a, a * b).astype(np.float64)
    for kind in np.unique(evidence.kinds):
        mask = evidence.kinds == kind
        total = weight[mask].sum()
        weight[mask] /= total if total > 0 else 1.0
    return weight


@dataclass(frozen=True)
class Measure:
    """One model on the held-out pairs: the scored AUC and the within-tracklet figure."""

    distance: np.ndarray  # of every pair
    auc: float
    within_auc: float


@dataclass(frozen=True)
class Verdict:
    adopted: bool
    line: str  # what the command says
    best_round: int | None = None  # the round adopted, or the best one refused
    current_auc: float | None = None
    adapted_auc: float | None = None
    margin: float | None = None

    @classmethod
    def unchecked(cls, last_round: int) -> Verdict:
        return cls(
            True,
            "self-validation off (holdout 0): the last round's model adopted unchecked",
            last_round,
        )


class SelfValidation:
    """Measures the current model, then each round's, on ``evidence``; gives the verdict."""

    def __init__(self, evidence: Evidence, min_gain: float, seed: int) -> None:
        self.evidence, self.min_gain = evidence, min_gain
        groups = max(evidence.groups, 1)
        self.draws = np.random.default_rng(seed).multinomial(
            groups, np.full(groups, 1.0 / groups), size=DRAWS
        )
        self.weight = pair_weights(evidence, np.ones(groups, np.int64))
        self.scored = evidence.kinds != WITHIN
        # the error is estimated by resampling groups, so each side of the verdict must
        # come from enough of them: a few moments of two people at once (vtest held one
        # or two) would make every draw that misses them say nothing, and the noise look small
        links = evidence.kinds == LINK
        apart = (evidence.kinds != LINK) & (evidence.kinds != WITHIN)
        self.link_groups = len(np.unique(evidence.units[links]))
        self.apart_groups = len(np.unique(evidence.units[apart]))
        self.enough = min(self.link_groups, self.apart_groups) >= MIN_GROUPS
        self.current: Measure | None = None
        self.rounds: list[Measure] = []

    def _auc(self, distance: np.ndarray, mask: np.ndarray, weight: np.ndarray) -> float:
        return weighted_auc(distance[mask], self.evidence.positive[mask], weight[mask])

    def measure(self, model: CASN) -> Measure:
        samples = [Sample(path, 0, 0) for path in self.evidence.crops]
        features = extract(model, samples, torch.device("cpu")).features.numpy()
        vectors = camera_centred(features, self.evidence.cameras)
        distance = pair_distances(vectors, self.evidence.pairs)
        return Measure(
            distance,
            self._auc(distance, self.scored, self.weight),
            self._auc(distance, self.evidence.kinds != LINK, self.weight),
        )

    def measure_current(self, model: CASN) -> Measure | None:
        self.current = self.measure(model) if self.enough else None
        return self.current

    def measure_round(self, model: CASN) -> Measure | None:
        if not self.enough:
            return None
        self.rounds.append(self.measure(model))
        return self.rounds[-1]

    def noise(self, adapted: Measure, current: Measure) -> float:
        """Standard error of the AUC gain over resamples of the held-out groups."""
        gains = []
        for drawn in self.draws:
            weight = pair_weights(self.evidence, drawn)
            gains.append(
                self._auc(adapted.distance, self.scored, weight)
                - self._auc(current.distance, self.scored, weight)
            )
        return float(np.nanstd(gains))

    def verdict(self) -> Verdict:
        if self.current is None or not self.rounds:
            return Verdict(
                False,
                "kept the current model, nothing trained: too little held-out evidence to "
                f"judge an adapted one by (run links in {self.link_groups} and cannot-links "
                f"in {self.apart_groups} of the {self.evidence.groups} held-out groups, "
                f"{MIN_GROUPS} of each needed; pairs {self.evidence.counts()}); "
                "--set holdout=0 adapts and adopts unchecked",
            )
        current = self.current.auc
        aucs = [m.auc for m in self.rounds]
        best = int(np.argmax(aucs))  # never NaN: there are run links and cannot-links
        noise = NOISE_Z * self.noise(self.rounds[best], self.current)
        margin = max(self.min_gain, noise)
        why = "twice its noise on this evidence" if noise > self.min_gain else "min_gain"
        gain = aucs[best] - current
        if gain > margin:
            line = (
                f"adopted the model of round {best + 1}: held-out AUC {aucs[best]:.3f} against "
                f"{current:.3f} for the current model (gain {gain:+.3f} > margin {margin:.3f})"
            )
        else:
            line = (
                f"kept the current model: held-out AUC {current:.3f} for it, {aucs[best]:.3f} "
                f"for the best adapted round ({best + 1}); adopting needs a gain above "
                f"{margin:.3f} ({why})"
            )
        return Verdict(gain > margin, line, best, current, aucs[best], margin)
