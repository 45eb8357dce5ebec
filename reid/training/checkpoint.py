"""Training checkpoints: plain tensors and numbers only, so they load with weights_only=True."""

from __future__ import annotations

import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from reid.config import ConfigError, validate_settings
from reid.models import CASN
from reid.training.config import TrainConfig

REQUIRED_KEYS = ("model", "config", "num_classes", "epoch")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-write never leaves a truncated checkpoint behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile) as exc:
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a reid-train checkpoint: {exc}"
        ) from exc
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        raise CheckpointError(
            f"checkpoint {path} lacks {', '.join(k for k in REQUIRED_KEYS if k not in state)}"
            if isinstance(state, dict)
            else f"checkpoint {path} is not a reid-train checkpoint"
        )
    return state


def checkpoint_config(state: dict[str, Any], path: str | Path) -> TrainConfig:
    try:
        return validate_settings(state["config"], TrainConfig, f"checkpoint {path}")
    except ConfigError as exc:
        raise CheckpointError(str(exc)) from exc


def model_from_checkpoint(path: str | Path) -> tuple[CASN, TrainConfig]:
    """The trained CASN (eval mode, CPU) and the settings it was trained with."""
    state = load_checkpoint(path)
    config = checkpoint_config(state, path)
    model = CASN.from_config(
        config.model.model_copy(update={"pretrained": None}), int(state["num_classes"])
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its model config: {exc}") from exc
    return model.eval(), config
