"""Identity-balanced batches: P identities x K images, so every batch holds positive and
negative pairs for the Siamese branch (:func:`reid.losses.sample_pairs` draws them)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from reid.data.datasets import DatasetError


class IdentityBatchSampler(Sampler[list[int]]):
    """Batches of ``batch_size // num_instances`` identities with ``num_instances`` images each.

    Identities with fewer images are sampled with replacement. Under data parallelism each
    rank takes every ``world_size``-th batch, and all ranks get the same number of batches.
    Call :meth:`set_epoch` so each epoch shuffles differently (the same on every rank).

    Args:
        pids: identity of each dataset index.
        batch_size: images per batch (a multiple of ``num_instances``).
        num_instances: images per identity in a batch (K).
        seed: base seed; the order depends only on ``seed`` and the epoch.
    """

    def __init__(
        self,
        pids: Sequence[int],
        batch_size: int = 16,
        num_instances: int = 4,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        if num_instances < 2 or batch_size % num_instances:
            raise DatasetError(
                f"batch_size ({batch_size}) must be a multiple of num_instances "
                f"({num_instances}) and num_instances >= 2, so each batch has positive pairs"
            )
        self.per_batch = batch_size // num_instances
        if self.per_batch < 2:
            raise DatasetError("a batch needs at least 2 identities for negative pairs")
        groups: dict[int, list[int]] = {}
        for index, pid in enumerate(pids):
            groups.setdefault(int(pid), []).append(index)
        if len(groups) < self.per_batch:
            raise DatasetError(
                f"{len(groups)} identities cannot fill batches of {self.per_batch} identities"
            )
        self.groups = [groups[p] for p in sorted(groups)]
        self.num_instances = num_instances
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _all_batches(self) -> list[list[int]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        k = self.num_instances
        chunks: list[list[list[int]]] = []  # per identity, its K-image chunks
        for indices in self.groups:
            count = max(k, len(indices) - len(indices) % k)
            picks = rng.choice(indices, size=count, replace=len(indices) < k).tolist()
            chunks.append([picks[i : i + k] for i in range(0, count, k)])
        batches = []
        remaining = [i for i, c in enumerate(chunks) if c]
        while len(remaining) >= self.per_batch:
            chosen = rng.choice(remaining, size=self.per_batch, replace=False)
            batches.append([index for pid in chosen for index in chunks[pid].pop()])
            remaining = [i for i in remaining if chunks[i]]
        return batches

    def _rank_batches(self) -> list[list[int]]:
        batches = self._all_batches()
        usable = len(batches) - len(batches) % self.world_size
        return batches[self.rank : usable : self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self._rank_batches())

    def __len__(self) -> int:
        return len(self._rank_batches())
