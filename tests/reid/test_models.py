import pytest
import torch

from reid.models import CASN, VARIANTS

SMALL = (128, 64)


@pytest.mark.parametrize(("variant", "dim"), [("ide", 512), ("pcb", 6 * 256)])
def test_forward_shapes(variant: str, dim: int) -> None:
    model = CASN(7, backbone="resnet18", variant=variant)
    out = model(torch.randn(3, 3, *SMALL))
    stripes = VARIANTS[variant].stripes
    assert out.maps.shape == (3, 512, 4, 2)
    assert out.raw_features.shape == (3, dim)
    assert out.logits.shape == (3, stripes, 7)
    assert torch.allclose(out.features.norm(dim=1), torch.ones(3), atol=1e-5)
    assert model.feature_dim == dim


@pytest.mark.parametrize("variant", ["ide", "pcb"])
def test_embed_matches_forward_and_keeps_no_graph(variant: str) -> None:
    model = CASN(4, backbone="resnet18", variant=variant).eval()
    images = torch.randn(2, 3, *SMALL)
    emb = model.embed(images)
    out = model(images)
    assert not emb.features.requires_grad
    assert torch.allclose(emb.features, out.features, atol=1e-6)
    assert torch.allclose(emb.maps, out.maps)


def test_mobilenet_map_channels() -> None:
    model = CASN(3, backbone="mobilenet_v2")
    assert model.embed(torch.randn(1, 3, *SMALL)).maps.shape == (1, 1280, 4, 2)


def test_last_stride_one_doubles_resolution() -> None:
    model = CASN(3, backbone="resnet18", last_stride=1)
    assert model.embed(torch.randn(1, 3, *SMALL)).maps.shape[-2:] == (8, 4)


def test_pcb_features_are_linear_in_maps() -> None:
    model = CASN(3, backbone="resnet18", variant="pcb")
    a, b = torch.randn(2, 512, 6, 3), torch.randn(2, 512, 6, 3)
    combined = model.pool(2.0 * a - 3.0 * b)
    assert torch.allclose(combined, 2.0 * model.pool(a) - 3.0 * model.pool(b), atol=1e-4)


def test_unknown_names_list_valid_ones() -> None:
    with pytest.raises(KeyError, match="resnet18"):
        CASN(3, backbone="vgg16")
    with pytest.raises(KeyError, match="pcb"):
        CASN(3, backbone="resnet18", variant="mgn")
    with pytest.raises(ValueError, match="num_classes"):
        CASN(0, backbone="resnet18")
