"""Pydantic settings for the CASN model and its loss; one source of defaults.

Defaults are the paper's (Zheng et al., CVPR 2019) unless noted.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

# the shared settings helpers live in settingskit; these names stay importable from here
from settingskit import (
    ConfigError,
    Settings,
    apply_overrides,
    kind_union,
    load_yaml_settings,
    read_yaml,
    validate_settings,
)

__all__ = [
    "ConfigError",
    "LossConfig",
    "ModelConfig",
    "Settings",
    "apply_overrides",
    "kind_union",
    "load_yaml_settings",
    "read_yaml",
    "validate_settings",
]


class ModelConfig(Settings):
    backbone: Literal["resnet50", "resnet18", "mobilenet_v2", "osnet_x1_0"] = "resnet50"
    variant: Literal["ide", "pcb"] = "ide"
    pretrained: str | None = Field(
        None, description="None, 'imagenet' (mobilenet_v2 only) or a path to torchvision weights"
    )
    last_stride: Literal[1, 2] = 2
    hidden_dim: int = Field(512, ge=8)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)
    input_size: tuple[int, int] | None = Field(
        None, description="(height, width); None: the variant's paper size"
    )

    @field_validator("input_size")
    @classmethod
    def _positive_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and min(value) < 32:
            raise ValueError(f"input_size must be at least 32x32 pixels, got {value}")
        return value


class LossConfig(Settings):
    """L = ide * L_ide + ia * L_ia + sa * L_sa; a weight of 0 switches that term off."""

    ide: float = Field(1.0, ge=0.0)
    ia: float = Field(0.5, ge=0.0)
    sa: float = Field(0.05, ge=0.0)
    consistency: float = Field(0.2, ge=0.0, description="weight of ||p1 - p2||^2 inside L_sa")
    mask_scale: float = Field(10.0, gt=0.0, description="a in S(M) = sigmoid(a (M - b))")
    mask_threshold: float = Field(0.5, ge=0.0, le=1.0, description="b in S(M)")
    profile_threshold: float = Field(0.3, ge=0.0, lt=1.0)
