import pytest
import torch

from reid.config import LossConfig
from reid.losses import (
    CASNLoss,
    gradcam,
    ide_loss,
    sample_pairs,
    soft_mask,
    true_class_score,
)
from reid.models import CASN

SIZE = (96, 48)


def _batch():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    return torch.randn(len(labels), 3, *SIZE), labels


def _grad_norm(module: torch.nn.Module) -> float:
    return sum(float(p.grad.abs().sum()) for p in module.parameters() if p.grad is not None)


@pytest.mark.parametrize("variant", ["ide", "pcb"])
def test_all_terms_finite_with_paper_weights(variant: str) -> None:
    model = CASN(3, backbone="resnet18", variant=variant).train()
    images, labels = _batch()
    terms = CASNLoss()(model, images, labels)
    for value in terms:
        assert torch.isfinite(value)
    expected = terms.ide + 0.5 * terms.ia + 0.05 * terms.sa
    assert torch.allclose(terms.total, expected)


@pytest.mark.parametrize(
    ("weights", "trained", "untouched"),
    [
        ({"ide": 1.0, "ia": 0.0, "sa": 0.0}, ["backbone", "classifier"], ["siamese_head"]),
        ({"ide": 0.0, "ia": 1.0, "sa": 0.0}, ["backbone", "classifier"], ["siamese_head"]),
        ({"ide": 0.0, "ia": 0.0, "sa": 1.0}, ["backbone", "siamese_head"], ["classifier"]),
    ],
)
def test_each_term_reaches_the_right_parameters(weights, trained, untouched) -> None:
    model = CASN(3, backbone="resnet18").train()
    images, labels = _batch()
    CASNLoss(LossConfig(**weights))(model, images, labels).total.backward()
    for name in trained:
        assert _grad_norm(getattr(model, name)) > 0, name
    for name in untouched:
        assert _grad_norm(getattr(model, name)) == 0, name


def test_switched_off_terms_are_zero() -> None:
    model = CASN(3, backbone="resnet18").train()
    images, labels = _batch()
    terms = CASNLoss(LossConfig(ia=0.0, sa=0.0))(model, images, labels)
    assert terms.ia.item() == 0 and terms.sa.item() == 0
    assert torch.allclose(terms.total, terms.ide)


def test_consistency_term_moves_the_backbone_through_attention() -> None:
    """With BCE alone vs BCE + consistency, the backbone gradients differ."""
    images, labels = _batch()
    grads = []
    for consistency in (0.0, 5.0):
        torch.manual_seed(1)
        model = CASN(3, backbone="resnet18").train()
        cfg = LossConfig(ide=0.0, ia=0.0, sa=1.0, consistency=consistency)
        pairs = sample_pairs(labels, torch.Generator().manual_seed(0))
        CASNLoss(cfg)(model, images, labels, pairs=pairs).total.backward()
        grads.append(model.backbone[0].weight.grad.clone())
    assert not torch.allclose(grads[0], grads[1])


def test_ide_loss_is_cross_entropy_averaged_over_stripes() -> None:
    logits = torch.randn(4, 6, 5)
    labels = torch.tensor([0, 1, 4, 2])
    expected = torch.stack(
        [torch.nn.functional.cross_entropy(logits[:, s], labels) for s in range(6)]
    ).mean()
    assert torch.allclose(ide_loss(logits, labels), expected)


def test_gradcam_of_linear_score_is_weighted_channel_sum() -> None:
    maps = torch.rand(2, 4, 3, 3, requires_grad=True)
    weights = torch.tensor([1.0, -2.0, 0.5, 0.0])
    score = torch.einsum("c,nchw->n", weights, maps)
    cam = gradcam(score, maps, create_graph=False)
    expected = torch.relu(torch.einsum("c,nchw->nhw", weights, maps))
    assert torch.allclose(cam, expected, atol=1e-6)


def test_true_class_score_sums_bands() -> None:
    logits = torch.arange(2 * 3 * 4, dtype=torch.float).view(2, 3, 4)
    got = true_class_score(logits, torch.tensor([1, 3]))
    assert got.tolist() == [1 + 5 + 9, 15 + 19 + 23]


def test_soft_mask_hides_attended_region() -> None:
    attention = torch.zeros(1, 4, 2)
    attention[0, 1] = 1.0
    mask = soft_mask(attention, (8, 4), a=10.0, b=0.5)
    assert mask.shape == (1, 1, 8, 4)
    assert mask[0, 0, 2:4].min() > 0.9  # attended rows -> masked out
    assert mask[0, 0, 6:].max() < 0.01  # background stays visible


def test_sample_pairs_positive_and_negative() -> None:
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    pairs = sample_pairs(labels, torch.Generator().manual_seed(0))
    for a, b, same in zip(pairs.first, pairs.second, pairs.same, strict=True):
        assert a != b
        assert (labels[a] == labels[b]).item() == bool(same)
    # every sample with a partner of its own identity gets one positive
    assert int(pairs.same.sum()) == 5
    assert int((1 - pairs.same).sum()) == 6


def test_few_steps_of_sgd_reduce_the_loss_on_a_fixed_batch() -> None:
    model = CASN(3, backbone="resnet18", dropout=0.0).train()
    images, labels = _batch()
    pairs = sample_pairs(labels, torch.Generator().manual_seed(0))
    loss_fn = CASNLoss()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    losses = []
    for _ in range(8):
        optimiser.zero_grad()
        terms = loss_fn(model, images, labels, pairs=pairs)
        terms.total.backward()
        optimiser.step()
        losses.append(terms.total.item())
    assert losses[-1] < 0.7 * losses[0]
