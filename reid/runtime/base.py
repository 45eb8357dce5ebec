"""The one interface every inference backend implements."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

FEATURES = "features"
PROJECTIONS = "projections"
INPUT = "images"


class EmbedderError(ValueError):
    """Missing, corrupt or mismatched model artifacts, or bad crops."""


@dataclass(frozen=True)
class Embeddings:
    """What the matcher needs for each crop.

    Attributes:
        features: ``[N, D]`` float32, L2-normalised.
        projections: ``[N, r, h, w]`` float32 conv maps projected on the model's channel
            basis (attention-consistency inputs), or None when the artifact has no basis.
    """

    features: np.ndarray
    projections: np.ndarray | None

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: slice | Sequence[int] | np.ndarray) -> Embeddings:
        proj = None if self.projections is None else self.projections[index]
        return Embeddings(self.features[index], proj)


@runtime_checkable
class Embedder(Protocol):
    """``embed`` a list of ``H x W x 3`` uint8 BGR crops (any sizes)."""

    name: str
    input_size: tuple[int, int]

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings: ...


def l2_normalise(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)
