"""Frozen pydantic settings and their YAML loading, shared by every package of the project.

Neutral ground: ``detectors``, ``reid`` and ``pipeline`` import it, it imports none of them
(``make lint`` checks it).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union

import yaml
from pydantic import BaseModel, ConfigDict, Discriminator, Tag, ValidationError

__all__ = [
    "ConfigError",
    "Settings",
    "apply_overrides",
    "kind_union",
    "load_yaml_settings",
    "read_yaml",
    "validate_settings",
]


class Settings(BaseModel):
    """Settings that reject unknown fields and cannot change once made."""

    model_config = ConfigDict(extra="forbid", frozen=True)


T = TypeVar("T", bound=Settings)


class ConfigError(ValueError):
    """A settings file is missing, not YAML, or does not validate."""


def kind_union(kinds: Sequence[type[Settings]], default: str) -> Any:
    """The settings of any of ``kinds`` (each with a ``kind`` literal), told apart by
    ``kind``; settings that leave ``kind`` out are the ``default`` kind's (so ``--set
    detector.batch=16`` needs no ``kind``)."""

    def kind_of(value: Any) -> str:
        return value.get("kind", default) if isinstance(value, dict) else value.kind

    tagged = tuple(Annotated[k, Tag(k.model_fields["kind"].default)] for k in kinds)
    return Annotated[Union[tagged], Discriminator(kind_of)]  # noqa: UP007 - built at run time


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
