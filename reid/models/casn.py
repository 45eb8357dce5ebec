"""Consistent Attentive Siamese Network (Zheng et al., CVPR 2019).

A backbone produces the last convolutional map ``A``; ``f`` is pooled from it (GAP for the
IDE variant, 6 stripes for PCB); an identity classifier and a Siamese verification head sit
on ``f``. The attention mechanisms live in :mod:`reid.attention` and :mod:`reid.losses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.backbones import build_backbone
from reid.models.heads import SAME, IdentityClassifier, SiameseHead, StripeFeatures

if TYPE_CHECKING:
    from reid.config import ModelConfig


@dataclass(frozen=True)
class Variant:
    """Feature layout and input size (height, width) of a CASN variant."""

    stripes: int
    reduce_dim: int | None
    input_size: tuple[int, int]


VARIANTS: dict[str, Variant] = {
    "ide": Variant(stripes=1, reduce_dim=None, input_size=(288, 144)),
    "pcb": Variant(stripes=6, reduce_dim=256, input_size=(384, 128)),
}


class CASNOutput(NamedTuple):
    """Everything one forward pass yields; losses read the fields they need.

    Attributes:
        maps: last conv feature maps ``A``, ``[N, C, h, w]``.
        raw_features: ``f``, linear in ``A``, ``[N, D]``.
        features: ``f`` L2-normalised, ``[N, D]``; used for retrieval and the Siamese head.
        logits: identity logits per band, ``[N, S, K]``.
    """

    maps: torch.Tensor
    raw_features: torch.Tensor
    features: torch.Tensor
    logits: torch.Tensor


class FeaturesAndMaps(NamedTuple):
    """What the torch model gives inference: ``features`` ``[N, D]`` (L2-normalised) and
    ``maps`` ``A`` (the runtime's numpy counterpart is :class:`reid.runtime.Embeddings`)."""

    features: torch.Tensor
    maps: torch.Tensor


class CASN(nn.Module):
    """CASN with an IDE or PCB feature head.

    Args:
        num_classes: identities in the training set (K).
        backbone: a name from :data:`reid.models.backbones.BACKBONES`.
        variant: ``"ide"`` or ``"pcb"``.
        pretrained: None, ``"imagenet"`` (MobileNetV2 only, shipped offline) or a path to
            torchvision backbone weights.
        last_stride: 1 keeps ResNet's last stage at 1/16 resolution.
        hidden_dim: width of the classifier and Siamese hidden layers.
        dropout: dropout of the identity classifier.
        input_size: (height, width) the model is trained and served at; default: the
            variant's paper size.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        variant: str = "ide",
        pretrained: str | Path | None = None,
        last_stride: int = 2,
        hidden_dim: int = 512,
        dropout: float = 0.5,
        input_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise KeyError(f"unknown CASN variant {variant!r}; valid variants: {sorted(VARIANTS)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        spec = VARIANTS[variant]
        built = build_backbone(backbone, pretrained=pretrained, last_stride=last_stride)
        self.backbone_name = backbone
        self.variant = variant
        height, width = input_size or spec.input_size
        self.input_size = (height, width)
        self.backbone = built.body
        self.pool = StripeFeatures(built.channels, spec.stripes, spec.reduce_dim)
        self.classifier = IdentityClassifier(
            spec.stripes, self.pool.stripe_dim, num_classes, hidden_dim, dropout
        )
        self.siamese_head = SiameseHead(self.pool.dim, hidden_dim)

    @classmethod
    def from_config(cls, config: ModelConfig, num_classes: int) -> CASN:
        return cls(
            num_classes,
            backbone=config.backbone,
            variant=config.variant,
            pretrained=config.pretrained,
            last_stride=config.last_stride,
            hidden_dim=config.hidden_dim,
            dropout=config.dropout,
            input_size=config.input_size,
        )

    @property
    def feature_dim(self) -> int:
        return self.pool.dim

    def forward(self, images: torch.Tensor) -> CASNOutput:
        """``images`` ``[N, 3, H, W]`` (normalised) -> :class:`CASNOutput`."""
        maps = self.backbone(images)
        return self.head(maps)

    def head(self, maps: torch.Tensor) -> CASNOutput:
        """Everything after the backbone, for maps computed elsewhere."""
        raw = self.pool(maps)
        return CASNOutput(maps, raw, F.normalize(raw, dim=1), self.classifier(raw))

    @torch.no_grad()
    def embed(self, images: torch.Tensor) -> FeaturesAndMaps:
        """Inference features and maps (no classifier, no graph)."""
        maps = self.backbone(images)
        return FeaturesAndMaps(F.normalize(self.pool(maps), dim=1), maps)

    def siamese_logits(self, features1: torch.Tensor, features2: torch.Tensor) -> torch.Tensor:
        """Verification logits ``[N, 2]`` for L2-normalised feature pairs."""
        return self.siamese_head(features1 - features2)

    def siamese_attention(
        self, images1: torch.Tensor, images2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Siamese attention maps of image pairs by autograd Grad-CAM, as in the paper.

        ``alpha_i = 1`` where ``d z_same / d f-_i > 0``; each image's map is Grad-CAM of
        ``alpha . f`` on its last conv map: ``ReLU(sum_k GAP(d(alpha . f)/dA_k) A_k)``.
        This is the reference that :func:`reid.attention.pair_attention` reproduces
        without a backward pass.

        Returns:
            Two maps ``[N, h, w]`` (unnormalised).
        """
        with torch.enable_grad():
            maps = [self.backbone(x) for x in (images1, images2)]
            raw = [self.pool(m) for m in maps]
            diff = F.normalize(raw[0], dim=1) - F.normalize(raw[1], dim=1)
            z_same = self.siamese_head(diff)[:, SAME]
            (dz,) = torch.autograd.grad(z_same.sum(), diff, retain_graph=True)
            alpha = (dz > 0).to(diff.dtype)
            attention = []
            for m, f in zip(maps, raw, strict=True):
                (grad,) = torch.autograd.grad((alpha * f).sum(), m, retain_graph=True)
                weights = grad.mean(dim=(2, 3), keepdim=True)
                attention.append(F.relu((weights * m).sum(dim=1)).detach())
        return attention[0], attention[1]
