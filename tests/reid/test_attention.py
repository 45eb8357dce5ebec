"""Closed-form Siamese attention vs autograd Grad-CAM, and profile alignment."""

import numpy as np
import pytest
import torch

from reid.attention import (
    align_profiles,
    attended_extent,
    attention_distance,
    normalize_maps,
    pair_attention,
    vertical_profile,
)
from reid.models import CASN


def _pair_maps(model: CASN, x1: torch.Tensor, x2: torch.Tensor):
    e1, e2 = model.embed(x1), model.embed(x2)
    return pair_attention(model, e1.maps, e2.maps, e1.features, e2.features)


@pytest.mark.parametrize(
    ("backbone", "variant", "size", "last_stride"),
    [
        ("resnet18", "ide", (128, 64), 2),
        ("resnet18", "pcb", (192, 64), 2),  # 6x2 map: two rows per stripe
        ("resnet18", "pcb", (128, 64), 1),  # 8x4 map: stripes of unequal, overlapping rows
        ("mobilenet_v2", "ide", (128, 64), 2),
    ],
)
def test_closed_form_equals_autograd_gradcam(backbone, variant, size, last_stride) -> None:
    model = CASN(5, backbone=backbone, variant=variant, last_stride=last_stride).eval()
    x1, x2 = torch.randn(6, 3, *size), torch.randn(6, 3, *size)
    reference = model.siamese_attention(x1, x2)
    closed = _pair_maps(model, x1, x2)
    for ref, got in zip(reference, closed, strict=True):
        assert ref.shape == got.shape
        # Both non-trivial, so the comparison below cannot pass on zeros.
        assert (ref.flatten(1).amax(dim=1) > 0).all()
        diff = (normalize_maps(ref) - normalize_maps(got)).abs().max().item()
        assert diff <= 1e-4


def test_same_logit_gradient_matches_autograd() -> None:
    model = CASN(3, backbone="resnet18")
    diff = torch.randn(8, model.feature_dim, requires_grad=True)
    (expected,) = torch.autograd.grad(model.siamese_head(diff)[:, 1].sum(), diff)
    got = model.siamese_head.same_logit_gradient(diff.detach())
    assert torch.allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["ide", "pcb"])
def test_channel_basis_is_the_spatial_mean_of_the_gradient(variant: str) -> None:
    model = CASN(3, backbone="resnet18", variant=variant)
    maps = torch.randn(2, 512, 7, 3, requires_grad=True)
    alpha = (torch.rand(2, model.feature_dim) > 0.5).float()
    (grad,) = torch.autograd.grad((alpha * model.pool(maps)).sum(), maps)
    expected = grad.mean(dim=(2, 3))
    got = model.pool.gradient_channel_weights(alpha) / (7 * 3)
    assert torch.allclose(got, expected, atol=1e-6)


def _np_align(profile: np.ndarray, threshold: float, length: int) -> np.ndarray:
    """Independent reference: crop with numpy, resize with np.interp."""
    above = np.flatnonzero(profile > threshold)
    first, last = (above[0], above[-1]) if len(above) else (0, len(profile) - 1)
    crop = profile[first : last + 1]
    return np.interp(np.linspace(0, len(crop) - 1, length), np.arange(len(crop)), crop)


def test_alignment_of_hand_made_profiles() -> None:
    profiles = torch.tensor(
        [
            [0.0, 0.2, 0.6, 1.0, 0.6, 0.2, 0.0, 0.0],
            [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.1],
            [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],
        ]
    )
    first, last = attended_extent(profiles, 0.5)
    assert first.tolist() == [2, 4, 0]
    assert last.tolist() == [4, 6, 7]
    aligned = align_profiles(profiles, threshold=0.5, length=5)
    assert torch.allclose(aligned[0], torch.tensor([0.6, 0.8, 1.0, 0.8, 0.6]))
    assert torch.allclose(aligned[1], torch.ones(5))
    for row, got in zip(profiles.numpy(), aligned.numpy(), strict=True):
        np.testing.assert_allclose(got, _np_align(row, 0.5, 5), atol=1e-6)


def test_random_profiles_match_numpy_reference() -> None:
    profiles = vertical_profile(torch.rand(16, 12, 5) ** 3)
    aligned = align_profiles(profiles, threshold=0.4, length=9)
    for row, got in zip(profiles.numpy(), aligned.numpy(), strict=True):
        np.testing.assert_allclose(got, _np_align(row, 0.4, 9), atol=1e-5)


def _person(height: int, top: int, bottom: int, width: int = 4) -> torch.Tensor:
    """A map whose attention rises from head to waist and falls to the feet."""
    m = torch.zeros(height, width)
    rows = bottom - top
    m[top:bottom] = torch.sin(torch.linspace(0.2, 3.0, rows))[:, None]
    return m


def test_attention_distance_ignores_shift_and_scale_of_the_person() -> None:
    near = _person(24, top=2, bottom=22)
    far = _person(24, top=10, bottom=20)  # same shape, smaller and lower in the frame
    other = torch.zeros(24, 4)
    other[2:22] = torch.linspace(1.0, 0.0, 20)[:, None]  # a different attention shape
    aligned = attention_distance(near[None], far[None], threshold=0.05)
    different = attention_distance(near[None], other[None], threshold=0.05)
    unaligned = (vertical_profile(near) - vertical_profile(far)).pow(2).sum()
    assert aligned.item() < 0.05
    assert unaligned.item() > 1.0
    assert different.item() > 10 * aligned.item()


def test_attention_distance_is_differentiable_in_map_values() -> None:
    maps = torch.rand(3, 8, 4, requires_grad=True)
    attention_distance(maps, torch.rand(3, 8, 4)).sum().backward()
    assert maps.grad is not None and maps.grad.abs().sum() > 0
