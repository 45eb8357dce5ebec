"""In-process candidate index of identity centroids, mirrored from Redis events.

Centroids are kept in a projected space of ``index_dim`` dimensions (a fixed random
orthonormal map, the same in every process: Johnson-Lindenstrauss keeps cosine ranks
close); exact scoring is left to the exemplars of the few candidates.

Search is bound by memory bandwidth: an exhaustive scan of 100k x 256 floats reads 100 MB
per query. Up to ``ivf_min`` identities the FAISS index is exact (flat inner product);
beyond, it is an inverted-file index (k-means cells, ``nprobe`` cells scanned per query)
that answers from a few percent of the gallery, retrained as the gallery quadruples.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from functools import cache

import faiss
import numpy as np
from threadpoolctl import ThreadpoolController

IVF_MIN = 20_000


def projection(dim: int, index_dim: int) -> np.ndarray | None:
    """``[dim, index_dim]`` orthonormal columns, or None when no reduction is needed."""
    if dim <= index_dim:
        return None
    rng = np.random.default_rng(20190616)  # fixed: every process must use the same map
    q, _ = np.linalg.qr(rng.standard_normal((dim, index_dim)))
    return np.ascontiguousarray(q, dtype=np.float32)


@cache
def _blas() -> ThreadpoolController:
    return ThreadpoolController()  # made on first use, once numpy's BLAS is loaded


def one_blas_thread() -> AbstractContextManager[object]:
    """BLAS on one thread while it lasts. A decision multiplies matrices of a few rows
    (a centroid projection, a candidate's exemplars), where BLAS threads cost more than
    they give, and on a busy machine they wait for each other: a 2 x 2048 by 2048 x 256
    product took 0.14 ms on one thread and 40 ms on two busy cores."""
    return _blas().limit(limits=1, user_api="blas")


def single_threaded_search() -> None:
    """faiss for one small query at a time: its threads cost more than they give. A
    process-wide setting, so entry points (the CLIs, benchmarks) call it, never a constructor."""
    faiss.omp_set_num_threads(1)


class IdentityIndex:
    """Upsert, remove and top-k by cosine over identity centroids."""

    def __init__(self, index_dim: int = 256, ivf_min: int = IVF_MIN, nprobe: int = 24) -> None:
        self.index_dim, self.ivf_min, self.nprobe = index_dim, ivf_min, nprobe
        self._proj: np.ndarray | None = None
        self._dim: int | None = None
        self._vectors = np.zeros((0, 0), np.float32)  # rows for (re)training
        self._ids: list[str] = []
        self._row: dict[str, int] = {}
        self._key: dict[str, int] = {}  # stable integer ids for FAISS
        self._name: dict[int, str] = {}
        self._next_key = 0
        self._faiss: faiss.Index | None = None  # made with the first vectors (_reduce)
        self._trained_at = 0

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, identity: str) -> bool:
        return identity in self._row

    @property
    def dim(self) -> int | None:
        """Feature dimension of the identities indexed (None before the first)."""
        return self._dim

    @property
    def approximate(self) -> bool:
        return self._trained_at > 0

    def _reduce(self, vectors: np.ndarray) -> np.ndarray:
        """``[N, D]`` -> unit rows ``[N, min(D, index_dim)]`` float32."""
        if self._dim is None:
            self._dim = vectors.shape[-1]
            self._proj = projection(self._dim, self.index_dim)
            width = min(self._dim, self.index_dim)
            self._vectors = np.zeros((1024, width), np.float32)
            self._faiss = faiss.IndexIDMap2(faiss.IndexFlatIP(width))
        if vectors.shape[-1] != self._dim:
            raise ValueError(f"feature dim {vectors.shape[-1]} != index dim {self._dim}")
        reduced = vectors if self._proj is None else vectors @ self._proj
        reduced = reduced / np.maximum(np.linalg.norm(reduced, axis=-1, keepdims=True), 1e-12)
        return np.ascontiguousarray(reduced, dtype=np.float32)

    def upsert(self, identity: str, centroid: np.ndarray) -> None:
        self.upsert_many([identity], np.asarray(centroid, np.float32).reshape(1, -1))

    def upsert_many(self, identities: list[str], centroids: np.ndarray) -> None:
        """Insert or replace ``identities`` with their centroids ``[N, D]`` (one projection)."""
        reduced = self._reduce(np.asarray(centroids, np.float32))
        for identity, vector in zip(identities, reduced, strict=True):
            row = self._row.get(identity)
            if row is None:
                row = len(self._ids)
                if row == len(self._vectors):
                    self._vectors = np.concatenate([self._vectors, np.zeros_like(self._vectors)])
                self._ids.append(identity)
                self._row[identity] = row
                key, self._next_key = self._next_key, self._next_key + 1
                self._key[identity], self._name[key] = key, identity
            self._vectors[row] = vector
        keys = np.array([self._key[i] for i in identities], np.int64)
        assert self._faiss is not None  # _reduce made it
        self._faiss.remove_ids(keys)  # type: ignore[arg-type]  # stub lacks the array form
        self._faiss.add_with_ids(reduced, keys)
        if len(self._ids) >= max(self.ivf_min, 4 * self._trained_at):
            self._train()

    def _train(self) -> None:
        n = len(self._ids)
        vectors = self._vectors[:n]
        keys = np.array([self._key[i] for i in self._ids], np.int64)
        cells = max(1, min(int(4 * np.sqrt(n)), n // 39))  # FAISS wants 39 points per cell
        quantizer = faiss.IndexFlatIP(vectors.shape[1])
        ivf = faiss.IndexIVFFlat(quantizer, vectors.shape[1], cells, faiss.METRIC_INNER_PRODUCT)
        ivf.train(vectors)
        # fast remove_ids on updates; faiss's stub lacks DirectMap
        ivf.set_direct_map_type(faiss.DirectMap.Hashtable)  # type: ignore[attr-defined]
        ivf.add_with_ids(vectors, keys)
        ivf.nprobe = self.nprobe
        self._faiss, self._trained_at = ivf, n

    def remove(self, identity: str) -> None:
        row = self._row.pop(identity, None)
        if row is None:
            return
        key = self._key.pop(identity)
        del self._name[key]
        assert self._faiss is not None  # made with the first identity
        self._faiss.remove_ids(np.array([key], np.int64))  # type: ignore[arg-type]  # as above
        last = len(self._ids) - 1
        if row != last:  # move the last row into the hole
            moved = self._ids[last]
            self._vectors[row] = self._vectors[last]
            self._ids[row] = moved
            self._row[moved] = row
        self._ids.pop()

    def search(self, queries: np.ndarray, k: int) -> list[str]:
        """Identities whose centroid is most similar to any of ``queries`` ``[K, D]``."""
        if not self._ids:
            return []
        reduced = self._reduce(np.asarray(queries, np.float32).reshape(len(queries), -1))
        assert self._faiss is not None  # _reduce made it
        scores, keys = self._faiss.search(reduced, min(k, len(self._ids)))
        best: dict[int, float] = {}
        for score, key in zip(scores.ravel(), keys.ravel(), strict=True):
            if key >= 0 and score > best.get(int(key), -np.inf):
                best[int(key)] = float(score)
        return [self._name[key] for key in sorted(best, key=best.__getitem__, reverse=True)[:k]]
