"""Crops in, embeddings out, for the backends that run a graph on numpy arrays (ONNX Runtime,
OpenVINO)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from reid.preprocess import crops_to_array
from reid.runtime.base import EmbedderError, Embeddings, l2_normalise


def crop_batch(crops: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """``[N, 3, H, W]`` normalised float32; bad crops are an :class:`EmbedderError`."""
    try:
        return crops_to_array(crops, size)
    except ValueError as exc:
        raise EmbedderError(str(exc)) from exc


def embeddings_from(outputs: Sequence[np.ndarray]) -> Embeddings:
    """The graph's ``features`` (normalised here) and ``projections``, if it has them."""
    projections = outputs[1].astype(np.float32) if len(outputs) > 1 else None
    return Embeddings(l2_normalise(outputs[0]), projections)
