"""Pydantic settings for the CASN model and its loss; one source of defaults.

Defaults are the paper's (Zheng et al., CVPR 2019) unless noted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelConfig(Settings):
    backbone: Literal["resnet50", "resnet18", "mobilenet_v2"] = "resnet50"
    variant: Literal["ide", "pcb"] = "ide"
    pretrained: str | None = Field(
        None, description="None, 'imagenet' (mobilenet_v2 only) or a path to torchvision weights"
    )
    last_stride: Literal[1, 2] = 2
    hidden_dim: int = Field(512, ge=8)
    dropout: float = Field(0.5, ge=0.0, lt=1.0)


class LossConfig(Settings):
    """L = ide * L_ide + ia * L_ia + sa * L_sa; a weight of 0 switches that term off."""

    ide: float = Field(1.0, ge=0.0)
    ia: float = Field(0.5, ge=0.0)
    sa: float = Field(0.05, ge=0.0)
    consistency: float = Field(0.2, ge=0.0, description="weight of ||p1 - p2||^2 inside L_sa")
    mask_scale: float = Field(10.0, gt=0.0, description="a in S(M) = sigmoid(a (M - b))")
    mask_threshold: float = Field(0.5, ge=0.0, le=1.0, description="b in S(M)")
    profile_threshold: float = Field(0.3, ge=0.0, lt=1.0)


T = TypeVar("T", bound=Settings)


class ConfigError(ValueError):
    """A settings file is missing, not YAML, or does not validate."""


def load_yaml_settings(path: str | Path, schema: type[T]) -> T:
    """Read ``path`` and validate it; errors name the file and each bad field path."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"{path}: invalid settings\n" + "\n".join(lines)) from exc
