"""In-process candidate index of identity centroids, mirrored from Redis events.

Candidate retrieval is a matrix product over all identities, so centroids are kept in a
projected space of ``index_dim`` dimensions (a fixed random orthonormal map, the same in
every process: Johnson-Lindenstrauss keeps cosine ranks close) and the exact scoring is left
to the exemplars of the few candidates. The projected centroids are held in bfloat16: the
search is bound by memory bandwidth (100k x 256 float32 is 100 MB per query), and bf16
halves it while keeping 8 bits of mantissa, plenty to shortlist candidates.
"""

from __future__ import annotations

import numpy as np
import torch


def projection(dim: int, index_dim: int) -> np.ndarray | None:
    """``[dim, index_dim]`` orthonormal columns, or None when no reduction is needed."""
    if dim <= index_dim:
        return None
    rng = np.random.default_rng(20190616)  # fixed: every process must use the same map
    q, _ = np.linalg.qr(rng.standard_normal((dim, index_dim)))
    return np.ascontiguousarray(q, dtype=np.float32)


class IdentityIndex:
    """Upsert, remove and top-k by cosine over identity centroids."""

    def __init__(self, index_dim: int = 256) -> None:
        self.index_dim = index_dim
        self._proj: np.ndarray | None = None
        self._dim: int | None = None
        self._vectors = torch.zeros((0, 0), dtype=torch.bfloat16)
        self._ids: list[str] = []
        self._row: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, identity: str) -> bool:
        return identity in self._row

    def _reduce(self, vectors: np.ndarray) -> np.ndarray:
        """``[N, D]`` -> unit rows ``[N, min(D, index_dim)]``."""
        if self._dim is None:
            self._dim = vectors.shape[-1]
            self._proj = projection(self._dim, self.index_dim)
            self._vectors = torch.zeros(
                (1024, min(self._dim, self.index_dim)), dtype=torch.bfloat16
            )
        if vectors.shape[-1] != self._dim:
            raise ValueError(f"feature dim {vectors.shape[-1]} != index dim {self._dim}")
        reduced = vectors if self._proj is None else vectors @ self._proj
        return reduced / np.maximum(np.linalg.norm(reduced, axis=-1, keepdims=True), 1e-12)

    def upsert(self, identity: str, centroid: np.ndarray) -> None:
        self.upsert_many([identity], np.asarray(centroid, np.float32).reshape(1, -1))

    def upsert_many(self, identities: list[str], centroids: np.ndarray) -> None:
        """Insert or replace ``identities`` with their centroids ``[N, D]`` (one projection)."""
        vectors = torch.from_numpy(self._reduce(np.asarray(centroids, np.float32)))
        for identity, vector in zip(identities, vectors, strict=True):
            row = self._row.get(identity)
            if row is None:
                row = len(self._ids)
                if row == len(self._vectors):
                    self._vectors = torch.cat([self._vectors, torch.zeros_like(self._vectors)])
                self._ids.append(identity)
                self._row[identity] = row
            self._vectors[row] = vector

    def remove(self, identity: str) -> None:
        row = self._row.pop(identity, None)
        if row is None:
            return
        last = len(self._ids) - 1
        if row != last:  # move the last row into the hole
            moved = self._ids[last]
            self._vectors[row] = self._vectors[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()

    def search(self, queries: np.ndarray, k: int) -> list[str]:
        """Identities whose centroid is most similar to any of ``queries`` ``[K, D]``."""
        n = len(self._ids)
        if n == 0:
            return []
        reduced = self._reduce(np.asarray(queries, np.float32).reshape(len(queries), -1))
        queries_t = torch.from_numpy(np.ascontiguousarray(reduced.T)).to(torch.bfloat16)
        scores = (self._vectors[:n] @ queries_t).amax(dim=1)
        top = torch.topk(scores.float(), min(k, n)).indices.tolist()
        return [self._ids[i] for i in top]
