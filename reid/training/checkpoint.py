"""Training checkpoints: plain tensors and numbers only, so they load with weights_only=True."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from reid.config import ConfigError, ModelConfig, validate_settings
from reid.models import CASN
from reid.models.checkpoint import CheckpointError, load_checkpoint, model_from_checkpoint
from reid.training.config import TrainConfig

__all__ = [
    "CheckpointError",
    "checkpoint_config",
    "load_checkpoint",
    "save_checkpoint",
    "save_untrained",
    "trained_model",
]


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def save_untrained(
    path: Path, model: CASN, config: ModelConfig, num_classes: int, **extra: Any
) -> Path:
    """``model`` as a checkpoint no training wrote (epoch 0: built, imported or random
    weights), readable wherever a reid-train checkpoint is; ``extra`` keys are kept."""
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "num_classes": num_classes,
            "epoch": 0,
            "config": {"model": config.model_dump(mode="json")},
            **extra,
        },
    )
    return path


def checkpoint_config(state: dict[str, Any], path: str | Path) -> TrainConfig:
    try:
        return validate_settings(state["config"], TrainConfig, f"checkpoint {path}")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def trained_model(path: str | Path) -> tuple[CASN, TrainConfig]:
    """The trained CASN (eval mode, CPU) and the full settings it was trained with."""
    model, state = model_from_checkpoint(path)
    return model, checkpoint_config(state, path)
