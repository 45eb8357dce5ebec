"""CASN model, its heads and backbones."""

from reid.models.backbones import BACKBONES, PretrainedWeightsError, build_backbone
from reid.models.casn import CASN, VARIANTS, CASNOutput, FeaturesAndMaps

__all__ = [
    "BACKBONES",
    "CASN",
    "CASNOutput",
    "FeaturesAndMaps",
    "PretrainedWeightsError",
    "VARIANTS",
    "build_backbone",
]
