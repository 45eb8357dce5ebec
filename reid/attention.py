"""Closed-form Siamese attention and the alignment-based attention distance.

Why no backward pass is needed: ``f`` is linear in the last conv map ``A``
(:class:`reid.models.heads.StripeFeatures`), so ``d(alpha . f)/dA`` does not depend on ``A``
and its spatial mean is ``alpha @ B / (h w)`` for a fixed matrix ``B`` (``[D, C]``),
never materialised (:meth:`StripeFeatures.gradient_channel_weights`).
``alpha`` itself is the sign pattern of ``d z_same / d f-``, which the tiny Siamese head
gives in closed form. A pair's maps are therefore ``ReLU(w . A_i)`` with
``w = alpha @ B / (h w)``: a few small matrix products per pair. ``tests/reid`` checks this
against autograd Grad-CAM (:meth:`reid.models.CASN.siamese_attention`).

Because ``alpha`` is piecewise constant, the closed form is also differentiable in ``A``
exactly as the autograd map is, so the training loss uses it too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import torch
import torch.nn.functional as F

if TYPE_CHECKING:
    from reid.models import CASN
    from reid.models.heads import SiameseHead, StripeFeatures


class AttentionHeads(Protocol):
    """The two parts of a CASN that the closed form needs (the model, or an export of them)."""

    siamese_head: SiameseHead
    pool: StripeFeatures


DEFAULT_THRESHOLD = 0.3
"""Profile value (relative to its maximum) that marks the top and bottom of the attended
region when two profiles are aligned."""

_EPS = 1e-12


def siamese_alpha(
    model: CASN | AttentionHeads, features1: torch.Tensor, features2: torch.Tensor
) -> torch.Tensor:
    """``alpha`` ``[N, D]``: 1 where ``d z_same / d f-`` is positive, else 0."""
    grad = model.siamese_head.same_logit_gradient(features1 - features2)
    return (grad > 0).to(features1.dtype)


def pair_attention(
    model: CASN | AttentionHeads,
    maps1: torch.Tensor,
    maps2: torch.Tensor,
    features1: torch.Tensor,
    features2: torch.Tensor,
    basis: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Siamese attention maps of pairs, without a backward pass.

    Args:
        model: the CASN (or anything with its ``siamese_head`` and ``pool``) whose heads
            define ``alpha`` and ``B``.
        maps1, maps2: conv maps ``[N, C, h, w]`` of the two images of each pair, or their
            projections ``[N, r, h, w]`` onto ``basis``.
        features1, features2: their L2-normalised features ``[N, D]``.
        basis: ``[C, r]`` orthonormal channel basis with ``A ~ basis @ P``; the maps are
            then ``ReLU(w^T basis P)``, exact when ``A`` lies in the span of the basis.

    Returns:
        Two maps ``[N, h, w]``, equal to autograd Grad-CAM of ``alpha . f``.
    """
    alpha = siamese_alpha(model, features1, features2)
    h, w = maps1.shape[-2:]
    weights = model.pool.gradient_channel_weights(alpha) / (h * w)
    if basis is not None:
        weights = weights @ basis.to(weights.dtype)
    return (
        F.relu(torch.einsum("nc,nchw->nhw", weights, maps1)),
        F.relu(torch.einsum("nc,nchw->nhw", weights, maps2)),
    )


def normalize_maps(maps: torch.Tensor) -> torch.Tensor:
    """Scale each map ``[..., h, w]`` by its maximum to ``[0, 1]`` (all-zero maps stay 0)."""
    peak = maps.flatten(-2).amax(dim=-1).clamp_min(_EPS)
    return maps / peak[..., None, None]


def vertical_profile(maps: torch.Tensor) -> torch.Tensor:
    """Row max-pool ``[..., h, w]`` -> ``[..., h]``, scaled to a maximum of 1."""
    profile = maps.amax(dim=-1)
    return profile / profile.amax(dim=-1, keepdim=True).clamp_min(_EPS)


def attended_extent(profiles: torch.Tensor, threshold: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First and last index of each profile ``[N, h]`` above ``threshold``.

    A profile with no element above it (an all-zero map) spans its whole length.
    """
    above = profiles > threshold
    h = profiles.shape[-1]
    index = torch.arange(h, device=profiles.device)
    first = torch.where(above, index, h).amin(dim=-1)
    last = torch.where(above, index, -1).amax(dim=-1)
    empty = ~above.any(dim=-1)
    first = torch.where(empty, torch.zeros_like(first), first)
    last = torch.where(empty, torch.full_like(last, h - 1), last)
    return first, last


def align_profiles(
    profiles: torch.Tensor, threshold: float = DEFAULT_THRESHOLD, length: int | None = None
) -> torch.Tensor:
    """Crop each profile ``[N, h]`` to its attended extent and resize it to ``length``.

    Resizing is linear interpolation with the end points kept (``align_corners=True``);
    gradients flow to the profile values, the crop indices are constants.
    """
    n, h = profiles.shape
    length = length or h
    first, last = attended_extent(profiles, threshold)
    steps = torch.linspace(0.0, 1.0, length, device=profiles.device, dtype=profiles.dtype)
    position = first[:, None] + (last - first)[:, None].to(profiles.dtype) * steps[None]
    low = position.floor().long().clamp(0, h - 1)
    high = (low + 1).clamp(max=h - 1)
    frac = position - low.to(profiles.dtype)
    return profiles.gather(1, low) * (1 - frac) + profiles.gather(1, high) * frac


def attention_distance(
    maps1: torch.Tensor,
    maps2: torch.Tensor,
    threshold: float = DEFAULT_THRESHOLD,
    length: int | None = None,
) -> torch.Tensor:
    """Squared L2 distance ``||p1 - p2||^2`` of the aligned vertical profiles of map pairs.

    Args:
        maps1, maps2: attention maps ``[N, h, w]`` (any scale; profiles are max-normalised).
        threshold: see :func:`attended_extent`.
        length: common length of the aligned profiles (default ``h``).

    Returns:
        ``[N]`` distances.
    """
    p1 = align_profiles(vertical_profile(maps1), threshold, length)
    p2 = align_profiles(vertical_profile(maps2), threshold, length)
    return (p1 - p2).pow(2).sum(dim=-1)
