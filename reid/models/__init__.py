"""CASN model, its heads and backbones."""

from reid.models.backbones import BACKBONES, PretrainedWeightsError, build_backbone
from reid.models.casn import CASN, VARIANTS, CASNOutput, Embedding

__all__ = [
    "BACKBONES",
    "CASN",
    "CASNOutput",
    "Embedding",
    "PretrainedWeightsError",
    "VARIANTS",
    "build_backbone",
]
