"""CASN heads: stripe feature pooling, the identity classifier and the Siamese head."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SAME = 1
"""Index of the "same identity" logit of the Siamese head."""


class StripeFeatures(nn.Module):
    """Feature ``f`` as a *linear* function of the feature map ``A``.

    ``A`` is average-pooled into ``stripes`` horizontal bands (1: plain GAP, the IDE
    variant; 6: PCB) and each band is optionally projected by its own bias-free linear map.
    Keeping ``f`` linear in ``A`` is what lets the Siamese attention be computed in closed
    form (see :mod:`reid.attention`).

    Args:
        channels: C, channels of ``A``.
        stripes: number of horizontal bands S.
        reduce_dim: per-band output size r, or None to keep C.
    """

    def __init__(self, channels: int, stripes: int, reduce_dim: int | None) -> None:
        super().__init__()
        self.channels = channels
        self.stripes = stripes
        self.stripe_dim = reduce_dim or channels
        self.reduce = (
            nn.Parameter(torch.empty(stripes, reduce_dim, channels)) if reduce_dim else None
        )
        if self.reduce is not None:
            nn.init.kaiming_normal_(self.reduce, mode="fan_out")

    @property
    def dim(self) -> int:
        """D, the length of ``f``."""
        return self.stripes * self.stripe_dim

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` -> ``[N, D]`` with ``D = S * r``."""
        pooled = F.adaptive_avg_pool2d(maps, (self.stripes, 1)).flatten(2).transpose(1, 2)
        if self.reduce is not None:
            pooled = torch.einsum("nsc,src->nsr", pooled, self.reduce)
        return pooled.flatten(1)

    def gradient_channel_weights(self, alpha: torch.Tensor) -> torch.Tensor:
        """``alpha @ B`` ``[N, C]`` for ``alpha`` ``[N, D]``, where ``B`` (``[D, C]``) is the
        fixed matrix with ``GAP(d(alpha . f)/dA) = alpha @ B / (h * w)``.

        Each band's pooling weights sum to one over the map, so the spatial mean of the
        gradient depends on the band projections only, whatever the band sizes.
        """
        bands = alpha.view(alpha.shape[0], self.stripes, self.stripe_dim)
        if self.reduce is None:
            return bands.sum(dim=1)
        return torch.einsum("nsr,src->nc", bands, self.reduce.to(alpha.dtype))


class IdentityClassifier(nn.Module):
    """The IDE branch: per band, two fully connected layers to identity logits.

    Returns logits of shape ``[N, S, K]`` (S = 1 for the IDE variant).
    """

    def __init__(
        self, stripes: int, stripe_dim: int, num_classes: int, hidden_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.stripes = stripes
        self.stripe_dim = stripe_dim
        self.heads = nn.ModuleList(
            nn.Sequential(
                nn.Linear(stripe_dim, hidden_dim),
                nn.BatchNorm1d(hidden_dim),
                nn.ReLU(inplace=True),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, num_classes),
            )
            for _ in range(stripes)
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        bands = features.view(features.shape[0], self.stripes, self.stripe_dim)
        return torch.stack([head(bands[:, s]) for s, head in enumerate(self.heads)], dim=1)


class SiameseHead(nn.Module):
    """Verification head on ``f- = f1 - f2`` (L2-normalised features): FC-ReLU-FC, 2-way.

    Deliberately free of normalisation and dropout so that ``dz_same/df-`` has the closed
    form :meth:`same_logit_gradient` in both train and eval mode.
    """

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden_dim)
        self.fc2 = nn.Linear(hidden_dim, 2)

    def forward(self, diff: torch.Tensor) -> torch.Tensor:
        """``[N, D]`` -> logits ``[N, 2]``; column :data:`SAME` is "same identity"."""
        return self.fc2(F.relu(self.fc1(diff)))

    def same_logit_gradient(self, diff: torch.Tensor) -> torch.Tensor:
        """``d z_same / d f-`` for each row of ``diff`` ``[N, D]``, without autograd."""
        gate = (self.fc1(diff) > 0).to(diff.dtype)
        return (gate * self.fc2.weight[SAME]) @ self.fc1.weight
