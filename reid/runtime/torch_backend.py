"""PyTorch eager backend: a training checkpoint, on CPU or CUDA (fp16 there by default)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from reid.models import CASN
from reid.models.checkpoint import CheckpointError, model_from_checkpoint
from reid.preprocess import crops_to_tensor
from reid.runtime.base import EmbedderError, Embeddings
from reid.runtime.consistency import ConsistencyScorer
from reid.runtime.cuda_graphs import GraphedForward

log = logging.getLogger(__name__)


class TorchEmbedder:
    """Embeds with the CASN itself; projections use ``basis`` when one is given.

    ``half`` (default: on CUDA) runs the model in fp16 with channels-last memory, which
    tensor cores need; features come back as float32. ``graphs`` (default: on CUDA) replays
    the forward pass as CUDA graphs per batch-size bucket (:mod:`reid.runtime.cuda_graphs`).
    """

    def __init__(
        self,
        model: CASN,
        basis: torch.Tensor | None = None,
        device: str | torch.device = "cpu",
        half: bool | None = None,
        graphs: bool | None = None,
    ) -> None:
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        self.half = cuda if half is None else half
        self.dtype = torch.float16 if self.half else torch.float32
        # channels-last is what fp16 tensor-core convolutions read without a transpose
        self.memory_format = torch.channels_last if self.half else torch.contiguous_format
        # Module.to takes memory_format with a device and dtype; torch's overloads omit it
        self.model: CASN = model.eval().to(  # type: ignore[call-overload]
            self.device, self.dtype, memory_format=self.memory_format
        )
        self.basis = None if basis is None else basis.to(self.device, self.dtype)
        self.input_size = model.input_size
        self.name = f"torch-{self.device.type}{' fp16' if self.half else ''}"
        self.graphed = GraphedForward(self._eager) if (cuda if graphs is None else graphs) else None

    def _eager(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.model.embed(images)
        return emb.features, emb.maps

    def _forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.graphed is not None:
            try:
                return self.graphed(images)  # type: ignore[return-value]
            except RuntimeError as exc:  # a model that cannot be captured still embeds
                log.warning("CUDA graph capture failed (%s): running eagerly", exc)
                self.graphed = None
        return self._eager(images)

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
        images = images.to(self.device, self.dtype, memory_format=self.memory_format)
        features, maps = self._forward(images)
        if self.basis is None:
            return features.float(), None
        return features.float(), torch.einsum("nchw,cr->nrhw", maps, self.basis).float()

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
