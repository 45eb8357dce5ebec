"""Reading ``reid-train`` checkpoints for inference (no training code needed).

Checkpoints hold plain tensors and numbers only, so they load with ``weights_only=True``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from reid.config import ConfigError, ModelConfig, validate_settings
from reid.models.casn import CASN

REQUIRED_KEYS = ("model", "config", "num_classes", "epoch")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, or does not fit the model."""


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a text or foreign file fails in many ways (KeyError, ...)
        raise CheckpointError(
            f"checkpoint {path} is corrupt or not a reid-train checkpoint: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {path} is not a reid-train checkpoint")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {', '.join(missing)}")
    return state


def model_from_checkpoint(path: str | Path) -> tuple[CASN, dict[str, Any]]:
    """The trained CASN (eval mode, CPU) and the checkpoint's state."""
    state = load_checkpoint(path)
    try:
        config = validate_settings(
            state["config"].get("model", {}), ModelConfig, f"checkpoint {path} (model)"
        )
    except (ConfigError, AttributeError) as exc:
        raise CheckpointError(str(exc)) from exc
    model = CASN.from_config(
        config.model_copy(update={"pretrained": None}), int(state["num_classes"])
    )
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"checkpoint {path} does not match its model config: {exc}") from exc
    return model.eval(), state
