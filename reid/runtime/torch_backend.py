"""PyTorch eager backend: a training checkpoint, on CPU or CUDA."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reid.models import CASN
from reid.models.checkpoint import CheckpointError, model_from_checkpoint
from reid.preprocess import crops_to_tensor
from reid.runtime.base import EmbedderError, Embeddings
from reid.runtime.consistency import ConsistencyScorer


class TorchEmbedder:
    """Embeds with the CASN itself; projections use ``basis`` when one is given."""

    name = "torch"

    def __init__(
        self, model: CASN, basis: torch.Tensor | None = None, device: str | torch.device = "cpu"
    ) -> None:
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.basis = None if basis is None else basis.to(self.device)
        self.input_size = model.input_size

    @classmethod
    def from_checkpoint(
        cls, checkpoint: str | Path, scorer: str | Path | None = None, device: str = "cpu"
    ) -> TorchEmbedder:
        """The checkpoint's model; ``scorer`` (an export's ``.consistency.pt``) adds the
        channel basis so projections match the exported artifacts."""
        try:
            model, _ = model_from_checkpoint(checkpoint)
        except CheckpointError as exc:
            raise EmbedderError(str(exc)) from exc
        basis = None if scorer is None else ConsistencyScorer.load(scorer).basis
        return cls(model, basis, device)

    @torch.no_grad()
    def embed_tensor(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb = self.model.embed(images.to(self.device))
        if self.basis is None:
            return emb.features, None
        return emb.features, torch.einsum("nchw,cr->nrhw", emb.maps, self.basis)

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings:
        try:
            images = crops_to_tensor(crops, self.input_size, self.device)
        except ValueError as exc:
            raise EmbedderError(str(exc)) from exc
        features, projections = self.embed_tensor(images)
        return Embeddings(
            features.float().cpu().numpy(),
            None if projections is None else projections.float().cpu().numpy(),
        )
