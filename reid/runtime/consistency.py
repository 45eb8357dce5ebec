"""Attention consistency of embedded crops, for ranking and matching at serving time.

Storing a crop's full conv map (``2048 x 18 x 9`` for ResNet50 IDE) per exemplar is too
much for Redis, so the runtime keeps its projection ``P = U^T A`` onto a fixed orthonormal
channel basis ``U`` (``[C, r]``, the top principal directions of maps of sample crops).
:class:`ConsistencyScorer` holds ``U`` and the two small CASN heads the closed form needs,
so the matcher can score attention consistency without the backbone.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from reid.attention import (
    DEFAULT_THRESHOLD,
    AttentionHeads,
    attention_distance,
    pair_attention,
)
from reid.models import CASN
from reid.models.heads import SAME, SiameseHead, StripeFeatures
from reid.runtime.pair_scoring import AttentionScorer

FORMAT = "casn-consistency-v1"


class ScorerFileError(ValueError):
    """A consistency-scorer file is missing, corrupt or of another format."""


def attention_scorer(
    heads: CASN | AttentionHeads,
    basis: torch.Tensor | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> AttentionScorer:
    """The numpy closed-form scorer of a CASN's heads (and a projection basis, if any)."""
    head, pool = heads.siamese_head, heads.pool

    def array(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().float().numpy()

    return AttentionScorer(
        array(head.fc1.weight),
        array(head.fc1.bias),
        array(head.fc2.weight[SAME]),
        None if pool.reduce is None else array(pool.reduce),
        pool.stripes,
        None if basis is None else array(basis),
        threshold,
    )


class ScorerHeads(nn.Module):
    """The CASN parts the closed form needs, without the backbone."""

    def __init__(self, pool: StripeFeatures, siamese_head: SiameseHead) -> None:
        super().__init__()
        self.pool = pool
        self.siamese_head = siamese_head


def fit_channel_basis(maps: torch.Tensor, rank: int) -> torch.Tensor:
    """Orthonormal ``[C, rank]`` basis of the channel space of ``maps`` ``[N, C, h, w]``.

    The top right singular vectors of all spatial positions' channel vectors (uncentred,
    since the attention map is a linear function of ``A`` itself, not of ``A - mean``).
    """
    n, c, h, w = maps.shape
    rank = min(rank, c)
    samples = maps.permute(0, 2, 3, 1).reshape(-1, c).float()
    _, _, vh = torch.linalg.svd(samples, full_matrices=False)
    return vh[:rank].T.contiguous()


@dataclass
class ConsistencyScorer:
    """Closed-form Siamese attention distance of feature/projection pairs.

    Attributes:
        heads: the CASN's ``siamese_head`` and ``pool``.
        basis: ``[C, r]`` channel basis the projections were made with.
        threshold: profile alignment threshold (:func:`reid.attention.attended_extent`).
    """

    heads: ScorerHeads
    basis: torch.Tensor
    threshold: float = DEFAULT_THRESHOLD

    @classmethod
    def from_model(cls, model: CASN, basis: torch.Tensor) -> ConsistencyScorer:
        return cls(ScorerHeads(model.pool, model.siamese_head).eval(), basis)

    def to_numpy(self) -> AttentionScorer:
        """The same scorer as numpy arrays (what the matcher uses: no torch there)."""
        return attention_scorer(self.heads, self.basis, self.threshold)

    def project(self, maps: torch.Tensor) -> torch.Tensor:
        """``[N, C, h, w]`` conv maps -> ``[N, r, h, w]`` projections."""
        return torch.einsum("nchw,cr->nrhw", maps, self.basis.to(maps.dtype))

    @torch.no_grad()
    def distance(
        self,
        features1: torch.Tensor,
        projections1: torch.Tensor,
        features2: torch.Tensor,
        projections2: torch.Tensor,
    ) -> torch.Tensor:
        """``[N]`` aligned-profile distances in [0, 1] (divided by the profile length)."""
        m1, m2 = pair_attention(
            self.heads,
            projections1.float(),
            projections2.float(),
            features1.float(),
            features2.float(),
            self.basis,
        )
        return attention_distance(m1, m2, self.threshold) / projections1.shape[-2]

    def save(self, path: str | Path) -> None:
        heads = self.heads
        torch.save(
            {
                "format": FORMAT,
                "basis": self.basis,
                "threshold": self.threshold,
                "pool": heads.pool.state_dict(),
                "pool_shape": [
                    heads.pool.channels,
                    heads.pool.stripes,
                    None if heads.pool.reduce is None else heads.pool.stripe_dim,
                ],
                "siamese_head": heads.siamese_head.state_dict(),
                "siamese_shape": [
                    heads.siamese_head.fc1.in_features,
                    heads.siamese_head.fc1.out_features,
                ],
            },
            path,
        )

    @classmethod
    def load(cls, path: str | Path) -> ConsistencyScorer:
        path = Path(path)
        if not path.is_file():
            raise ScorerFileError(
                f"consistency scorer {path} does not exist; reid-export writes it beside the "
                "model (<name>.consistency.pt)"
            )
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            if state.get("format") != FORMAT:
                raise ScorerFileError(f"{path} is not a {FORMAT} file")
            heads = ScorerHeads(
                StripeFeatures(*state["pool_shape"]), SiameseHead(*state["siamese_shape"])
            )
            heads.pool.load_state_dict(state["pool"])
            heads.siamese_head.load_state_dict(state["siamese_head"])
        except ScorerFileError:
            raise
        except Exception as exc:  # torch raises many types for a bad file
            raise ScorerFileError(f"consistency scorer {path} is corrupt: {exc}") from exc
        return cls(heads.eval(), state["basis"], float(state["threshold"]))
