"""CASN ranking: feature distance plus the attention-consistency distance of each pair.

Both distances are normalised to [0, 1]: the cosine distance as ``(1 - cos) / 2`` and the
aligned-profile distance divided by the profile length (profiles lie in [0, 1]). The
paper's ranking sums the two; we re-score each query's ``top_k`` gallery entries by feature
distance with ``(1 - w) d_feat + w d_att`` and keep the rest after them in feature order,
so the cost is ``Q * top_k`` closed-form attention pairs instead of ``Q * G``.
"""

from __future__ import annotations

import torch

from reid.attention import DEFAULT_THRESHOLD, attention_distance, pair_attention
from reid.models import CASN


def feature_distance(query: torch.Tensor, gallery: torch.Tensor) -> torch.Tensor:
    """``(1 - cos) / 2`` in [0, 1] for L2-normalised features ``[Q, D]``, ``[G, D]``."""
    return ((1.0 - query @ gallery.T) / 2.0).clamp(0.0, 1.0)


@torch.no_grad()
def casn_distance(
    model: CASN,
    query_features: torch.Tensor,
    query_maps: torch.Tensor,
    gallery_features: torch.Tensor,
    gallery_maps: torch.Tensor,
    attention_weight: float = 0.3,
    top_k: int = 20,
    threshold: float = DEFAULT_THRESHOLD,
    chunk: int = 4096,
) -> torch.Tensor:
    """``[Q, G]`` distances: CASN re-scoring of each query's ``top_k`` feature neighbours.

    Re-scored entries lie in [0, 1]; the others get ``1 + d_feat`` so they rank after.
    ``attention_weight=0`` gives feature-only ranking.
    """
    if not 0.0 <= attention_weight <= 1.0:
        raise ValueError(f"attention_weight must be in [0, 1], got {attention_weight}")
    dist = feature_distance(query_features, gallery_features)
    if attention_weight == 0.0:
        return dist
    k = min(top_k, dist.shape[1])
    top = dist.topk(k, dim=1, largest=False).indices  # [Q, k]
    q_index = torch.arange(len(dist), device=dist.device)[:, None].expand(-1, k).reshape(-1)
    g_index = top.reshape(-1)
    length = query_maps.shape[-2]
    att = torch.empty(len(q_index), dtype=dist.dtype, device=dist.device)
    for start in range(0, len(q_index), chunk):
        qi, gi = q_index[start : start + chunk], g_index[start : start + chunk]
        m1, m2 = pair_attention(
            model,
            query_maps[qi].to(dist.dtype),
            gallery_maps[gi].to(dist.dtype),
            query_features[qi],
            gallery_features[gi],
        )
        att[start : start + chunk] = attention_distance(m1, m2, threshold) / length
    combined = dist + 1.0
    rescored = (1 - attention_weight) * dist[q_index, g_index] + attention_weight * att
    combined[q_index, g_index] = rescored
    return combined
