"""Shared by the runtime tests: a tiny CASN checkpoint and its ONNX export, drawn crops and
crops of real people."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from detectors import build_detector
from reid.config import validate_settings
from reid.export.onnx_export import export_onnx
from reid.export.samples import load_crops
from reid.models import CASN
from reid.training.checkpoint import save_checkpoint
from reid.training.config import TrainConfig
from tests.footage import vtest_frames


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = validate_settings(
        {"model": {"backbone": "resnet18", "input_size": [64, 32], "hidden_dim": 32}},
        TrainConfig,
        "test",
    )
    torch.manual_seed(0)
    model = CASN.from_config(config.model, num_classes=7)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    save_checkpoint(
        path,
        {
            "model": model.state_dict(),
            "config": config.model_dump(mode="json"),
            "num_classes": 7,
            "epoch": 1,
        },
    )
    return path


@pytest.fixture(scope="module")
def exported(checkpoint: Path) -> Path:
    return export_onnx(checkpoint, checkpoint.with_suffix(".onnx"), basis_rank=16).onnx


@pytest.fixture(scope="module")
def crops() -> list[np.ndarray]:
    return load_crops(None, 12, seed=5)


@pytest.fixture(scope="session")
def people() -> list[np.ndarray]:
    """Person crops from real footage: what OpenCV's HOG boxes on 20 frames of vtest.avi."""
    frames = vtest_frames(400, 20)
    found = build_detector("hog").detect(frames, list(range(len(frames))))
    crops = [
        frame[int(y1) : int(y2), int(x1) : int(x2)]
        for frame, dets in zip(frames, found, strict=True)
        for x1, y1, x2, y2 in dets.xyxy
    ]
    assert len(crops) >= 12
    return crops
