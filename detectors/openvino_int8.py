"""INT8 for the OpenVINO detector, calibrated on the site's own frames and kept only where it
still finds the ``.pt``'s boxes.

``reid-export detector --int8 --calib VIDEO``: frames drawn evenly from ``VIDEO`` are cut in
two, alternately. One half calibrates ultralytics' OpenVINO INT8 export (NNCF post-training
quantisation, with ultralytics' own ignored scope for the detection head); on the other
half the INT8 model's boxes are matched one to one against the ``.pt``'s (IoU 0.5,
:mod:`detectors.agreement`). Under ``min_recall`` (0.98) the export is removed and the
command says so with the figure: calibrate on more, or more typical, footage, or keep fp32.
The folder is a ``*_openvino_model/`` like any other: ``detector.weights`` points at it.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from detectors.agreement import box_recall
from detectors.base import DetectorError
from detectors.openvino_export import (
    NAME,
    models_dir,
    openvino_installed,
    quiet_export,
    weights_digest,
)
from detectors.yolo_weights import OPENVINO_FOLDER, check_openvino_folder, pt_model

INSTALL_HINT = "pip install 'reid-pipeline[int8]' (NNCF) and openvino"
MIN_FRAMES = 20


@dataclass(frozen=True)
class Int8Export:
    folder: Path
    recall: float  # share of the .pt boxes the INT8 model finds on the held-back frames
    boxes: int  # .pt boxes on those frames
    frames: int  # held-back frames


def sample_frames(video: Path, count: int) -> list[np.ndarray]:
    """``count`` frames drawn evenly over ``video``."""
    capture = cv2.VideoCapture(str(video))
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) if capture.isOpened() else 0
    if total <= 0:
        raise DetectorError(f"{video}: not a video OpenCV can read (no frames)")
    frames = []
    for index in np.linspace(0, total - 1, min(count, total)).astype(int):
        capture.set(cv2.CAP_PROP_POS_FRAMES, int(index))
        ok, frame = capture.read()
        if ok:
            frames.append(frame)
    if len(frames) < MIN_FRAMES:
        raise DetectorError(f"{video}: {len(frames)} frames read, {MIN_FRAMES} needed at least")
    return frames


def int8_path(weights: Path, cache: Path | None = None) -> Path:
    """Where ``reid-export detector --int8`` writes by default."""
    return (cache or models_dir()) / f"{NAME}_{weights_digest(weights)}_int8{OPENVINO_FOLDER}"


def export_int8(
    weights: Path,
    video: Path,
    out: Path,
    frames: int = 300,
    imgsz: int = 640,
    conf: float = 0.35,
    min_recall: float = 0.98,
) -> Int8Export:
    """The INT8 OpenVINO export of ``weights`` calibrated on ``video``, written to ``out``
    only when it finds ``min_recall`` of the ``.pt``'s boxes on frames it was not calibrated
    on (at ``imgsz`` and ``conf``, as the pipeline runs it)."""
    if not out.name.endswith(OPENVINO_FOLDER):
        raise DetectorError(
            f"{out}: an OpenVINO export's folder name must end in {OPENVINO_FOLDER}"
        )
    drawn = sample_frames(video, frames)
    if not openvino_installed() or importlib.util.find_spec("nncf") is None:
        raise DetectorError(f"the INT8 detector needs NNCF and OpenVINO: {INSTALL_HINT}")
    calibration, check = drawn[0::2], drawn[1::2]
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".int8-") as work:
        written = _quantize(weights, calibration, Path(work), imgsz)
        found = _recall(weights, written, check, imgsz, conf)
        if found.recall < min_recall:
            raise DetectorError(
                f"INT8 found {found.recall:.1%} of the .pt's {found.boxes} boxes on "
                f"{found.frames} frames of {video} it was not calibrated on (under "
                f"{min_recall:.0%}): nothing written; calibrate on more, or more typical, "
                "footage (--frames), or keep the fp32 default"
            )
        if out.exists():
            shutil.rmtree(out)
        os.replace(written, out)  # whole or not at all
    check_openvino_folder(out)
    return Int8Export(out, found.recall, found.boxes, found.frames)


def _quantize(weights: Path, frames: list[np.ndarray], work: Path, imgsz: int) -> Path:
    """Ultralytics' INT8 OpenVINO export, calibrated on ``frames`` (written as a one-folder
    image dataset: calibration needs no labels)."""
    images = work / "images"
    images.mkdir()
    for n, frame in enumerate(frames):
        cv2.imwrite(str(images / f"{n:05d}.jpg"), frame)
    data = work / "calibration.yaml"
    data.write_text(
        yaml.safe_dump(
            {"path": str(work), "train": "images", "val": "images", "names": {0: "person"}}
        )
    )
    yolo = pt_model(weights)
    yolo.model.pt_path = str(work / f"{NAME}.pt")  # ultralytics writes beside it
    try:
        with quiet_export():
            written = yolo.export(
                format="openvino",
                quantize=8,
                data=str(data),
                dynamic=True,
                imgsz=imgsz,
                batch=1,
                device="cpu",
                fraction=1.0,
            )
    except Exception as exc:  # ultralytics, NNCF and OpenVINO raise many types
        raise DetectorError(f"the INT8 export of {weights} failed: {exc}") from exc
    return Path(written)


def _recall(
    weights: Path, folder: Path, frames: list[np.ndarray], imgsz: int, conf: float
) -> Int8Export:
    from detectors import build_detector

    reference = build_detector("yolo", weights=str(weights), imgsz=imgsz, conf=conf)
    quantised = build_detector("yolo", weights=str(folder), imgsz=imgsz, conf=conf)
    expected = [d for i in range(0, len(frames), 8) for d in reference.detect(frames[i : i + 8])]
    found = [d for i in range(0, len(frames), 8) for d in quantised.detect(frames[i : i + 8])]
    return Int8Export(
        folder, box_recall(expected, found), sum(len(d) for d in expected), len(frames)
    )
