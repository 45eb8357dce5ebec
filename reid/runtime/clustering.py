"""Constrained clustering of tracklets, shared by the live matcher's re-association and
label-free adaptation (``reid-train adapt``). Pure numpy.

A tracklet is one vector (the mean of its crops' features, with its camera's mean removed:
:func:`camera_centred`); the distance of two is ``(1 - cos) / 2``. With unit vectors the
average-linkage similarity of two clusters is ``sum_A . sum_B / (|A| |B|)``: O(D) per
cluster pair whatever the cluster sizes. Clusters merge along candidate pairs, best first,
where the caller's rule agrees and no *cannot-link* (two tracklets certainly of different
people) would end up inside one cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

CAMERA_PRIOR = 5.0  # pseudo-tracklets of the overall mean in each camera's mean
MIN_NEGATIVES = 20  # fewer cannot-links than this: no threshold can be learned from them


def camera_centred(vectors: np.ndarray, cameras: Sequence[str]) -> np.ndarray:
    """Vectors with their camera's mean removed, re-normalised.

    Each camera adds its own bias to every embedding (light, colour cast, angle), and all
    people share a component; removing the per-camera mean, estimated from the tracklets at
    hand, brings one person's views from different cameras closer (the camera-aware
    normalisation of label-free re-id). Cameras with few tracklets borrow from the mean of
    all (``CAMERA_PRIOR`` pseudo-tracklets), so a lone tracklet is not centred to nothing.
    """
    labels = np.asarray(cameras)
    overall = vectors.mean(axis=0)
    out = np.empty_like(vectors)
    for camera in np.unique(labels):
        mask = labels == camera
        n = int(mask.sum())
        mean = (vectors[mask].sum(axis=0) + CAMERA_PRIOR * overall) / (n + CAMERA_PRIOR)
        out[mask] = vectors[mask] - mean
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def pair_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance in [0, 1] of row-aligned unit vectors."""
    return np.clip((1.0 - np.einsum("nd,nd->n", a, b)) / 2.0, 0.0, 1.0)


def pair_distances(vectors: np.ndarray, pairs: np.ndarray, chunk: int = 16_384) -> np.ndarray:
    """Distances of index ``pairs`` ``[P, 2]`` into ``vectors``, a chunk at a time (never a
    ``P x D`` copy)."""
    return np.concatenate(
        [
            pair_distance(vectors[part[:, 0]], vectors[part[:, 1]])
            for part in np.array_split(pairs, max(1, -(-len(pairs) // chunk)))
        ]
        or [np.empty(0, np.float32)]
    )


def co_occurring_pairs(starts: np.ndarray, ends: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs ``(i, j)``, ``i < j``, whose time spans overlap (a sweep over start times:
    the cost grows with how many are seen at once, not with the square)."""
    order = np.argsort(starts, kind="stable").tolist()
    pairs: list[tuple[int, int]] = []
    live: list[int] = []
    for n in order:
        live = [m for m in live if ends[m] >= starts[n]]
        pairs += [(min(m, n), max(m, n)) for m in live]
        live.append(n)
    return pairs


def cannot_links(
    starts: np.ndarray,
    ends: np.ndarray,
    cameras: Sequence[str],
    overlaps: Callable[[str, str], bool],
) -> np.ndarray:
    """``[P, 2]`` index pairs (i < j) certainly of different people: seen at the same time
    in one camera, or in two cameras whose views do not overlap."""
    pairs = [
        (i, j)
        for i, j in co_occurring_pairs(starts, ends)
        if cameras[i] == cameras[j] or not overlaps(cameras[i], cameras[j])
    ]
    return np.asarray(pairs, dtype=np.int64).reshape(-1, 2)


def pair_rate(tracklets: int, links_per_tracklet: float) -> float:
    """The share of known-different pairs a link threshold may admit among ``tracklets``,
    so that on average ``links_per_tracklet`` of them fall within reach of any one."""
    return min(links_per_tracklet / max(tracklets - 1, 1), 0.5)


def nearest_neighbours(vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each vector's ``k`` nearest others ``[N, k]`` and their distances (blocked)."""
    n = len(vectors)
    k = min(k, n - 1)
    index = np.empty((n, max(k, 0)), np.int64)
    distance = np.empty((n, max(k, 0)), np.float32)
    if k <= 0:
        return index, distance
    for start in range(0, n, 2048):
        block = np.clip((1.0 - vectors[start : start + 2048] @ vectors.T) / 2.0, 0.0, 1.0)
        rows = np.arange(start, min(start + 2048, n))
        block[rows - start, rows] = np.inf
        near = np.argpartition(block, k - 1, axis=1)[:, :k]
        index[rows], distance[rows] = near, np.take_along_axis(block, near, axis=1)
    return index, distance


def neighbour_pairs(
    index: np.ndarray, distance: np.ndarray, k: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``[P, 2]`` (i < j) among the ``k`` nearest within ``threshold``, closest first,
    and their distances."""
    n = len(index)
    order = np.argsort(distance, axis=1, kind="stable")[:, :k]
    near = np.take_along_axis(index, order, axis=1)
    d = np.take_along_axis(distance, order, axis=1)
    keep = d <= threshold
    rows = np.broadcast_to(np.arange(n)[:, None], near.shape)[keep]
    cols, d = near[keep], d[keep]
    codes = np.minimum(rows, cols) * n + np.maximum(rows, cols)
    codes, first = np.unique(codes, return_index=True)  # each pair once
    order = np.argsort(d[first], kind="stable")
    codes, d = codes[order], d[first][order]
    return np.stack([codes // n, codes % n], axis=1), d


@dataclass
class Cluster:
    members: list[int]
    total: np.ndarray  # sum of member vectors
    apart: set[int] = field(default_factory=set)  # tracklets that cannot-link a member

    def average_distance(self, other: Cluster) -> float:
        """Average-linkage distance to ``other``."""
        average = float(self.total @ other.total) / (len(self.members) * len(other.members))
        return (1.0 - average) / 2.0


Rule = Callable[[Cluster, Cluster], bool]


def merge_constrained(
    vectors: np.ndarray,
    candidates: np.ndarray,
    negatives: np.ndarray,
    accept: Rule,
    must_links: np.ndarray | None = None,
) -> list[int]:
    """Merge clusters along ``must_links`` (index pairs an operator said are one person),
    then along ``candidates`` (index pairs, best first) where ``accept`` agrees; never
    where a cannot-link (``negatives``) separates them, not even for a must-link. The
    cluster label of each vector (0..C-1 in order of first member)."""
    clusters = {n: Cluster([n], vectors[n].astype(np.float64)) for n in range(len(vectors))}
    for x, y in negatives.tolist():
        clusters[x].apart.add(y)
        clusters[y].apart.add(x)
    owner = list(range(len(vectors)))

    def join(i: int, j: int, rule: Rule) -> None:
        a, b = owner[i], owner[j]
        if a == b:
            return
        ca, cb = clusters[a], clusters[b]
        if len(ca.members) < len(cb.members):
            a, b, ca, cb = b, a, cb, ca
        if not ca.apart.isdisjoint(cb.members) or not rule(ca, cb):
            return
        ca.members += cb.members
        ca.total += cb.total
        ca.apart |= cb.apart
        for y in cb.members:
            owner[y] = a
        del clusters[b]

    for i, j in (must_links if must_links is not None else np.empty((0, 2), int)).tolist():
        join(i, j, lambda a, b: True)
    for i, j in candidates.tolist():
        join(i, j, accept)
    labels: dict[int, int] = {}
    return [labels.setdefault(owner[n], len(labels)) for n in range(len(vectors))]


def quantile_threshold(negative_distances: np.ndarray, rate: float) -> float:
    """The distance below which a share ``rate`` of known-different pairs fall."""
    return float(np.quantile(negative_distances, rate))


def linked_within(
    vectors: np.ndarray,
    negatives: np.ndarray,
    threshold: float,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
    k: int = 20,
    rule: Rule | None = None,
    must_links: np.ndarray | None = None,
) -> list[int]:
    """Constrained average linkage at ``threshold`` along each vector's ``k`` nearest
    (``neighbours`` from :func:`nearest_neighbours`, computed when not given), where
    ``rule`` (if any) also agrees; ``must_links`` are joined first."""
    index, distance = neighbours if neighbours is not None else nearest_neighbours(vectors, k)
    return merge_constrained(
        vectors,
        neighbour_pairs(index, distance, k, threshold)[0],
        negatives,
        lambda a, b: a.average_distance(b) <= threshold and (rule is None or rule(a, b)),
        must_links,
    )
