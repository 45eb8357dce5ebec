"""CASN losses (Zheng et al., CVPR 2019, Sec. 3): L = L_ide + 0.5 L_ia + 0.05 L_sa."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from reid.attention import attention_distance, pair_attention
from reid.config import LossConfig
from reid.models import CASN, CASNOutput


class LossTerms(NamedTuple):
    """The weighted total and each unweighted term (0-dim tensors)."""

    total: torch.Tensor
    ide: torch.Tensor
    ia: torch.Tensor
    sa: torch.Tensor


class Pairs(NamedTuple):
    """Index pairs into a batch and whether each is a same-identity pair."""

    first: torch.Tensor
    second: torch.Tensor
    same: torch.Tensor


def ide_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """L_ide: cross-entropy of the identity logits ``[N, S, K]``, averaged over bands."""
    n, s, k = logits.shape
    return F.cross_entropy(logits.reshape(n * s, k), labels.repeat_interleave(s))


def true_class_score(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Logit of each sample's true class summed over bands, ``[N]``."""
    index = labels[:, None, None].expand(-1, logits.shape[1], 1)
    return logits.gather(2, index).squeeze(2).sum(dim=1)


def gradcam(score: torch.Tensor, maps: torch.Tensor, create_graph: bool) -> torch.Tensor:
    """Grad-CAM ``ReLU(sum_k GAP(d score/dA_k) A_k)`` -> ``[N, h, w]``.

    ``score`` is ``[N]`` with sample i depending on ``maps[i]`` only.
    """
    (grad,) = torch.autograd.grad(score.sum(), maps, create_graph=create_graph)
    weights = grad.mean(dim=(2, 3), keepdim=True)
    return F.relu((weights * maps).sum(dim=1))


def soft_mask(attention: torch.Tensor, size: tuple[int, int], a: float, b: float) -> torch.Tensor:
    """``S(M) = sigmoid(a (M - b))`` of min-max normalised maps upsampled to ``size``."""
    up = F.interpolate(attention[:, None], size=size, mode="bilinear", align_corners=False)
    low = up.amin(dim=(2, 3), keepdim=True)
    high = up.amax(dim=(2, 3), keepdim=True)
    scaled = (up - low) / (high - low).clamp_min(1e-12)
    return torch.sigmoid(a * (scaled - b))


def identification_attention_loss(
    model: CASN,
    images: torch.Tensor,
    output: CASNOutput,
    labels: torch.Tensor,
    a: float,
    b: float,
) -> torch.Tensor:
    """L_ia: true-class probability on ``I* = I (1 - S(M))`` (minimised).

    M is Grad-CAM of the true class, kept in the graph (as in GAIN) so that the loss pushes
    the attention to cover the whole person.
    """
    attention = gradcam(true_class_score(output.logits, labels), output.maps, create_graph=True)
    height, width = images.shape[-2:]
    masked = images * (1 - soft_mask(attention, (height, width), a, b))
    probs = model(masked).logits.softmax(dim=2)
    return probs.gather(2, labels[:, None, None].expand(-1, probs.shape[1], 1)).mean()


def siamese_loss(
    model: CASN, output: CASNOutput, pairs: Pairs, consistency: float, threshold: float
) -> torch.Tensor:
    """L_sa = L_bce + consistency * ||p1 - p2||^2 (profile term on positive pairs only)."""
    f1, f2 = output.features[pairs.first], output.features[pairs.second]
    bce = F.cross_entropy(model.siamese_logits(f1, f2), pairs.same.long())
    positive = pairs.same.bool()
    if consistency == 0 or not positive.any():
        return bce
    m1, m2 = pair_attention(
        model,
        output.maps[pairs.first[positive]],
        output.maps[pairs.second[positive]],
        f1[positive],
        f2[positive],
    )
    return bce + consistency * attention_distance(m1, m2, threshold).mean()


def sample_pairs(labels: torch.Tensor, generator: torch.Generator | None = None) -> Pairs:
    """For each sample, one positive partner and one negative partner where the batch has one.

    Positives exclude the sample itself.
    """
    labels_cpu = labels.cpu()
    same = labels_cpu[:, None] == labels_cpu[None, :]
    first, second, is_same = [], [], []
    for i in range(len(labels_cpu)):
        positives = same[i].clone()
        positives[i] = False
        for candidates, flag in ((positives, 1), (~same[i], 0)):
            options = candidates.nonzero().flatten()
            if len(options):
                pick = options[torch.randint(len(options), (1,), generator=generator)]
                first.append(i)
                second.append(int(pick))
                is_same.append(flag)
    device = labels.device
    return Pairs(
        torch.tensor(first, dtype=torch.long, device=device),
        torch.tensor(second, dtype=torch.long, device=device),
        torch.tensor(is_same, dtype=torch.long, device=device),
    )


class CASNLoss(nn.Module):
    """Total CASN loss with configurable weights; a zero weight skips that term's work."""

    def __init__(self, config: LossConfig | None = None) -> None:
        super().__init__()
        self.config = config or LossConfig()

    def forward(
        self,
        model: CASN,
        images: torch.Tensor,
        labels: torch.Tensor,
        pairs: Pairs | None = None,
        output: CASNOutput | None = None,
    ) -> LossTerms:
        cfg = self.config
        output = output if output is not None else model(images)
        zero = output.logits.new_zeros(())
        ide = ide_loss(output.logits, labels) if cfg.ide else zero
        ia = (
            identification_attention_loss(
                model, images, output, labels, cfg.mask_scale, cfg.mask_threshold
            )
            if cfg.ia
            else zero
        )
        sa = zero
        if cfg.sa:
            pairs = pairs if pairs is not None else sample_pairs(labels)
            if len(pairs.first):
                sa = siamese_loss(model, output, pairs, cfg.consistency, cfg.profile_threshold)
        total = cfg.ide * ide + cfg.ia * ia + cfg.sa * sa
        return LossTerms(total, ide, ia, sa)
