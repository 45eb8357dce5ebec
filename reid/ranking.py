"""CASN ranking: feature distance plus the attention-consistency distance of each pair.

The distance is the project's one pair distance (:mod:`reid.runtime.pair_scoring`, numpy,
shared with the matcher). We re-score each query's ``top_k`` gallery entries by feature
distance with ``(1 - w) d_feat + w d_att`` and keep the rest after them in feature order,
so the cost is ``Q * top_k`` closed-form attention pairs instead of ``Q * G``.
"""

from __future__ import annotations

import numpy as np

from reid.runtime.pair_scoring import AttentionScorer, combine, feature_distance_matrix


def casn_distance(
    scorer: AttentionScorer,
    query_features: np.ndarray,
    query_maps: np.ndarray,
    gallery_features: np.ndarray,
    gallery_maps: np.ndarray,
    attention_weight: float = 0.3,
    top_k: int = 20,
    chunk: int = 4096,
) -> np.ndarray:
    """``[Q, G]`` distances: CASN re-scoring of each query's ``top_k`` feature neighbours.

    Re-scored entries lie in [0, 1]; the others get ``1 + d_feat`` so they rank after.
    ``attention_weight=0`` gives feature-only ranking.
    """
    if not 0.0 <= attention_weight <= 1.0:
        raise ValueError(f"attention_weight must be in [0, 1], got {attention_weight}")
    query_features = np.asarray(query_features, np.float32)
    gallery_features = np.asarray(gallery_features, np.float32)
    dist = feature_distance_matrix(query_features, gallery_features)
    if attention_weight == 0.0:
        return dist
    k = min(top_k, dist.shape[1])
    top = np.argpartition(dist, k - 1, axis=1)[:, :k]  # [Q, k]
    q_index = np.repeat(np.arange(len(dist)), k)
    g_index = top.reshape(-1)
    att = np.empty(len(q_index), dtype=np.float32)
    for start in range(0, len(q_index), chunk):
        qi, gi = q_index[start : start + chunk], g_index[start : start + chunk]
        att[start : start + chunk] = scorer.distance(
            query_features[qi],
            np.asarray(query_maps[qi]),
            gallery_features[gi],
            np.asarray(gallery_maps[gi]),
        )
    combined = dist + 1.0
    combined[q_index, g_index] = combine(dist[q_index, g_index], att, attention_weight)
    return combined
