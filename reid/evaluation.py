"""Evaluate a CASN on a dataset's query/gallery split (feature-only or CASN ranking)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch.utils.data import DataLoader

from reid.data.datasets import ReidDataset, Sample
from reid.data.loading import ImageDataset, build_transform
from reid.metrics import evaluate_rank
from reid.models import CASN, FeaturesAndMaps
from reid.ranking import casn_distance
from reid.runtime.consistency import attention_scorer

Ranking = Literal["feature", "casn"]


@dataclass(frozen=True)
class EvalResult:
    """CMC (rank-1/5/10) and mAP, all in [0, 1]."""

    ranking: str
    rank1: float
    rank5: float
    rank10: float
    mAP: float

    def as_dict(self) -> dict[str, float | str]:
        return {
            "ranking": self.ranking,
            "rank1": self.rank1,
            "rank5": self.rank5,
            "rank10": self.rank10,
            "mAP": self.mAP,
        }


@torch.no_grad()
def extract(
    model: CASN,
    samples: Sequence[Sample],
    device: torch.device,
    batch_size: int = 64,
    keep_maps: bool = False,
    workers: int = 0,
) -> FeaturesAndMaps:
    """Features ``[N, D]`` (and maps ``[N, C, h, w]`` in fp16 on CPU when ``keep_maps``)."""
    loader = DataLoader(
        ImageDataset(samples, build_transform(model.input_size, train=False)),
        batch_size=batch_size,
        num_workers=workers,
    )
    model.eval()
    features, maps = [], []
    for images, _, _ in loader:
        emb = model.embed(images.to(device))
        features.append(emb.features.float().cpu())
        if keep_maps:
            maps.append(emb.maps.half().cpu())
    return FeaturesAndMaps(torch.cat(features), torch.cat(maps) if keep_maps else torch.empty(0))


def evaluate(
    model: CASN,
    dataset: ReidDataset,
    device: torch.device,
    rankings: Sequence[Ranking] = ("feature",),
    attention_weight: float = 0.3,
    top_k: int = 20,
    batch_size: int = 64,
    workers: int = 0,
) -> list[EvalResult]:
    """One :class:`EvalResult` per ranking, from a single feature extraction."""
    keep_maps = "casn" in rankings
    query = extract(model, dataset.query, device, batch_size, keep_maps, workers)
    gallery = extract(model, dataset.gallery, device, batch_size, keep_maps, workers)
    labels = [
        np.array([getattr(s, f) for s in split])
        for split in (dataset.query, dataset.gallery)
        for f in ("pid", "camid")
    ]
    q_pids, q_cams, g_pids, g_cams = labels
    scorer = attention_scorer(model.to("cpu"))
    results = []
    for ranking in rankings:
        weight = attention_weight if ranking == "casn" else 0.0
        dist = casn_distance(
            scorer,
            query.features.numpy(),
            query.maps.numpy(),
            gallery.features.numpy(),
            gallery.maps.numpy(),
            weight,
            top_k,
        )
        cmc, mean_ap = evaluate_rank(dist, q_pids, g_pids, q_cams, g_cams)
        results.append(
            EvalResult(
                ranking,
                float(cmc[0]),
                float(cmc[min(4, len(cmc) - 1)]),
                float(cmc[min(9, len(cmc) - 1)]),
                mean_ap,
            )
        )
    model.to(device)
    return results
