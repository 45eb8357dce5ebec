"""The one pair distance of the project, in numpy: offline ranking (:mod:`reid.ranking`) and
the matcher both use it, and a matcher worker needs no torch for it.

``d = (1 - w) d_feat + w d_att`` with ``d_feat = (1 - cos) / 2`` of L2-normalised features
and ``d_att`` the squared distance of the two Siamese attention maps' aligned vertical
profiles divided by the profile length (both in [0, 1]). The attention maps come in closed
form (:mod:`reid.attention` explains why no backward pass is needed): from the Siamese
head's ``alpha`` sign pattern, channel weights ``alpha @ B / (h w)``, ``ReLU(w . A)``.
:class:`AttentionScorer` holds the few small arrays that needs; the torch implementation
(:mod:`reid.attention`, used in training) and autograd Grad-CAM are the references tests
compare it with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

DEFAULT_THRESHOLD = 0.3
_EPS = 1e-12


def feature_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``(1 - cos) / 2`` in [0, 1] of row-aligned L2-normalised features ``[N, D]``."""
    return np.clip((1.0 - np.einsum("nd,nd->n", a, b)) / 2.0, 0.0, 1.0)


def feature_distance_matrix(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """``[Q, G]`` feature distances of L2-normalised ``[Q, D]`` and ``[G, D]``."""
    return np.clip((1.0 - query @ gallery.T) / 2.0, 0.0, 1.0)


def combine(feature_d: np.ndarray, attention_d: np.ndarray, weight: float) -> np.ndarray:
    """The combined distance ``(1 - w) d_feat + w d_att``."""
    return (1.0 - weight) * feature_d + weight * attention_d


def vertical_profile(maps: np.ndarray) -> np.ndarray:
    """Row max-pool ``[N, h, w]`` -> ``[N, h]``, scaled to a maximum of 1."""
    profile = maps.max(axis=-1)
    return profile / np.maximum(profile.max(axis=-1, keepdims=True), _EPS)


def align_profiles(profiles: np.ndarray, threshold: float, length: int | None = None) -> np.ndarray:
    """Crop each profile ``[N, h]`` to its first..last element above ``threshold`` (all of
    it when none is) and resize linearly to ``length`` with the end points kept."""
    n, h = profiles.shape
    length = length or h
    above = profiles > threshold
    index = np.arange(h)
    first = np.where(above, index, h).min(axis=-1)
    last = np.where(above, index, -1).max(axis=-1)
    empty = ~above.any(axis=-1)
    first, last = np.where(empty, 0, first), np.where(empty, h - 1, last)
    steps = np.linspace(0.0, 1.0, length)
    position = first[:, None] + (last - first)[:, None] * steps[None]
    low = np.clip(np.floor(position).astype(np.int64), 0, h - 1)
    high = np.minimum(low + 1, h - 1)
    frac = position - low
    rows = np.arange(n)[:, None]
    return profiles[rows, low] * (1 - frac) + profiles[rows, high] * frac


def attention_distance(
    maps1: np.ndarray, maps2: np.ndarray, threshold: float = DEFAULT_THRESHOLD
) -> np.ndarray:
    """``[N]`` squared distances of the aligned vertical profiles of map pairs ``[N, h, w]``."""
    p1 = align_profiles(vertical_profile(maps1), threshold)
    p2 = align_profiles(vertical_profile(maps2), threshold)
    return ((p1 - p2) ** 2).sum(axis=-1)


@dataclass(frozen=True)
class AttentionScorer:
    """Closed-form Siamese attention consistency of feature/map pairs, in numpy.

    Attributes:
        fc1_weight, fc1_bias, same_weight: the Siamese head (``[H, D]``, ``[H]``, and the
            "same" row of its second layer ``[H]``).
        reduce: per-stripe projections ``[S, r, C]`` of the stripe pooling, or None.
        stripes: S.
        basis: ``[C, r]`` channel basis the maps were projected on, or None for full maps.
        threshold: profile alignment threshold.
    """

    fc1_weight: np.ndarray
    fc1_bias: np.ndarray
    same_weight: np.ndarray
    reduce: np.ndarray | None
    stripes: int
    basis: np.ndarray | None = None
    threshold: float = DEFAULT_THRESHOLD

    def channel_weights(self, features1: np.ndarray, features2: np.ndarray) -> np.ndarray:
        """``alpha @ B`` (then onto the basis) ``[N, C or r]``; alpha = 1 where
        ``d z_same / d f-`` is positive."""
        diff = features1 - features2
        gate = (diff @ self.fc1_weight.T + self.fc1_bias) > 0
        alpha = ((gate * self.same_weight) @ self.fc1_weight > 0).astype(np.float32)
        bands = alpha.reshape(len(alpha), self.stripes, -1)
        weights = (
            bands.sum(axis=1)
            if self.reduce is None
            else np.einsum("nsr,src->nc", bands, self.reduce)
        )
        return weights if self.basis is None else weights @ self.basis

    def maps(
        self, features1: np.ndarray, maps1: np.ndarray, features2: np.ndarray, maps2: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The pair's two attention maps ``[N, h, w]`` (equal to autograd Grad-CAM)."""
        h, w = maps1.shape[-2:]
        weights = self.channel_weights(features1, features2) / (h * w)
        return (
            np.maximum(np.einsum("nc,nchw->nhw", weights, maps1), 0.0),
            np.maximum(np.einsum("nc,nchw->nhw", weights, maps2), 0.0),
        )

    def distance(
        self, features1: np.ndarray, maps1: np.ndarray, features2: np.ndarray, maps2: np.ndarray
    ) -> np.ndarray:
        """``[N]`` attention distances in [0, 1] (divided by the profile length)."""
        m1, m2 = self.maps(
            features1.astype(np.float32),
            maps1.astype(np.float32),
            features2.astype(np.float32),
            maps2.astype(np.float32),
        )
        return attention_distance(m1, m2, self.threshold) / maps1.shape[-2]
