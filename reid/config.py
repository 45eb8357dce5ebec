"""Pydantic settings for the CASN model and its loss; one source of defaults.

Defaults are the paper's (Zheng et al., CVPR 2019) unless noted.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar, Union

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    field_validator,
)


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def kind_union(kinds: Sequence[type[Settings]], default: str) -> Any:
    """The settings of any of ``kinds`` (each with a ``kind`` literal), told apart by
    ``kind``; settings that leave ``kind`` out are the ``default`` kind's (so ``--set
    detector.batch=16`` needs no ``kind``)."""

    def kind_of(value: Any) -> str:
        return value.get("kind", default) if isinstance(value, dict) else value.kind

    tagged = tuple(Annotated[k, Tag(k.model_fields["kind"].default)] for k in kinds)
    return Annotated[Union[tagged], Discriminator(kind_of)]  # noqa: UP007 - built at run time


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


T = TypeVar("T", bound=Settings)


class ConfigError(ValueError):
    """A settings file is missing, not YAML, or does not validate."""


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return ``raw`` with ``dotted.key=value`` overrides applied (values parsed as YAML)."""
    result = copy.deepcopy(raw)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r}: expected dotted.key=value, e.g. optim.lr=0.01")
        node = result
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
            node = child
        node[leaf] = yaml.safe_load(text)
    return result


def validate_settings(raw: dict[str, Any], schema: type[T], source: str) -> T:
    """Validate ``raw``; the error names ``source`` and each bad field path."""
    try:
        return schema.model_validate(raw)
    except ValidationError as exc:
        lines = [
            f"  {'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"{source}: invalid settings\n" + "\n".join(lines)) from exc


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML mapping from ``path``; a missing file, bad YAML or a non-mapping is a ConfigError."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: file not found") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(raw).__name__}")
    return raw


def load_yaml_settings(path: str | Path, schema: type[T], overrides: Sequence[str] = ()) -> T:
    """Read ``path``, apply ``overrides`` and validate; errors name the file and field paths."""
    raw = apply_overrides(read_yaml(path), overrides)
    return validate_settings(raw, schema, str(path))
