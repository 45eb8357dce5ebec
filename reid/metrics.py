"""Retrieval metrics under the Market-1501 protocol."""

from __future__ import annotations

import numpy as np


class NoValidQueryError(ValueError):
    """No query has a valid gallery match, so CMC and mAP are undefined."""


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> tuple[np.ndarray, float]:
    """CMC curve and mean average precision.

    For each query, gallery entries with the same identity *and* camera are excluded; a
    query left with no gallery entry of its identity is skipped. Ties in distance keep
    gallery order (stable sort).

    Args:
        distmat: ``[Q, G]`` distances (smaller is more similar).
        q_pids, g_pids, q_camids, g_camids: ``[Q]`` / ``[G]`` integer labels.
        max_rank: length of the CMC curve (capped at ``G``).

    Returns:
        ``(cmc [max_rank], mAP)``; ``cmc[k]`` is the rank-(k+1) accuracy, both in [0, 1].
    """
    distmat = np.asarray(distmat)
    num_q, num_g = distmat.shape
    if (
        (len(q_pids), len(g_pids)) != (num_q, num_g)
        or len(q_camids) != num_q
        or len(g_camids) != num_g
    ):
        raise ValueError(
            f"distmat is {num_q}x{num_g} but got {len(q_pids)} query / {len(g_pids)} gallery "
            f"ids and {len(q_camids)} / {len(g_camids)} cameras"
        )
    max_rank = min(max_rank, num_g)
    order = np.argsort(distmat, axis=1, kind="stable")
    g_pids, g_camids = np.asarray(g_pids)[order], np.asarray(g_camids)[order]
    matches = g_pids == np.asarray(q_pids)[:, None]
    keep = ~(matches & (g_camids == np.asarray(q_camids)[:, None]))
    cmcs, aps = [], []
    for hits in (m[k] for m, k in zip(matches, keep, strict=True)):
        if not hits.any():
            continue
        first = int(np.argmax(hits))
        cmc = np.zeros(max_rank)
        cmc[first:] = 1.0
        cmcs.append(cmc)
        positions = np.flatnonzero(hits) + 1
        aps.append(float(np.mean(np.arange(1, len(positions) + 1) / positions)))
    if not cmcs:
        raise NoValidQueryError("no query has a gallery match from another camera")
    return np.mean(cmcs, axis=0), float(np.mean(aps))
