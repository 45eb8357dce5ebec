"""The CPU default detector: the shipped YOLO's OpenVINO export, cached under REID_HOME,
finding the boxes the .pt finds; explicit weights keep their own runtime."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from detectors import DetectorError, build_detector, default_weights
from detectors.agreement import box_recall
from detectors.openvino_export import cached_openvino, export_path
from detectors.yolo import default_weights_for
from detectors.yolo_weights import runtime_of
from tests.footage import vtest_frames

openvino = pytest.importorskip("openvino", reason="the openvino package is not installed")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A REID_HOME of the module's own, holding one export of the shipped weights."""
    home = tmp_path_factory.mktemp("reid-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REID_HOME", str(home))
        cached_openvino(default_weights())
    return home


@pytest.fixture
def reid_home(home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("REID_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    """20 frames 1.5 s apart across the first 30 s of vtest.avi (about 120 people in all)."""
    return vtest_frames(300, 15)


DEMO_CAMERAS = [(0, 432), (336, 768)]  # configs/cams/vtest_demo.yaml's crops (x0, x1)


@pytest.mark.parametrize("imgsz,crops", [(640, [(0, 768)]), (416, DEMO_CAMERAS)])
def test_openvino_finds_the_boxes_the_pt_finds(reid_home, frames, imgsz, crops) -> None:
    """Full frames at 640 px, and the demo's two tall cameras at its 416 px."""
    frames = [np.ascontiguousarray(f[:, x0:x1]) for x0, x1 in crops for f in frames]
    pt = build_detector("yolo", weights=str(default_weights()), imgsz=imgsz)
    default = build_detector("yolo", imgsz=imgsz)  # no CUDA here: OpenVINO
    assert (pt.runtime, default.runtime) == ("PyTorch", "OpenVINO")
    reference = [d for i in range(0, len(frames), 4) for d in pt.detect(frames[i : i + 4])]
    found = [d for i in range(0, len(frames), 4) for d in default.detect(frames[i : i + 4])]
    assert sum(map(len, reference)) >= 100
    assert box_recall(reference, found) >= 0.98
    assert box_recall(found, reference) >= 0.98  # and nothing much the .pt does not find


def test_the_default_follows_the_device_and_is_cached_under_reid_home(
    reid_home, monkeypatch, caplog
) -> None:
    shipped = default_weights()
    assert default_weights_for("cuda:0") == shipped  # on CUDA the .pt, fp16, as before
    cached = default_weights_for("cpu")
    assert cached == export_path(shipped) and cached.parent == reid_home / "models"
    assert runtime_of(cached) == "OpenVINO"
    monkeypatch.setattr("detectors.yolo.openvino_installed", lambda: False)
    with caplog.at_level(logging.WARNING, logger="detectors.yolo"):
        assert default_weights_for("cpu") == shipped
    assert "pip install openvino" in caplog.text


def test_explicit_weights_keep_their_runtime(reid_home) -> None:
    assert runtime_of(Path("site.engine")) == "TensorRT"
    for weights, runtime in [
        (default_weights(), "PyTorch"),
        (default_weights(onnx=True), "ONNX Runtime"),
        (export_path(default_weights()), "OpenVINO"),
    ]:
        assert build_detector("yolo", weights=str(weights), imgsz=320).runtime == runtime


def test_a_damaged_cached_export_is_made_again(reid_home) -> None:
    folder = export_path(default_weights())
    next(folder.glob("*.bin")).unlink()
    with pytest.raises(DetectorError, match=r"lacks yolo_person\.bin"):
        build_detector("yolo", weights=str(folder))
    assert cached_openvino(default_weights()) == folder
    assert build_detector("yolo", imgsz=320).weights == folder


def test_corrupt_or_mismatched_openvino_folders_are_clear_errors(reid_home, tmp_path) -> None:
    source = export_path(default_weights())
    with pytest.raises(DetectorError, match=r"must be .*_openvino_model/ folder"):
        build_detector("yolo", weights=str(tmp_path / "site_model"))
    empty = tmp_path / "empty_openvino_model"
    empty.mkdir()
    with pytest.raises(DetectorError, match=r"empty_openvino_model must hold one \.xml"):
        build_detector("yolo", weights=str(empty))
    garbage = tmp_path / "garbage_openvino_model"
    shutil.copytree(source, garbage)
    next(garbage.glob("*.xml")).write_text("<net>garbage")
    with pytest.raises(DetectorError, match=r"garbage_openvino_model cannot be loaded"):
        build_detector("yolo", weights=str(garbage))
    mismatched = tmp_path / "mismatched_openvino_model"
    shutil.copytree(source, mismatched)
    bin_file = next(mismatched.glob("*.bin"))
    bin_file.write_bytes(bin_file.read_bytes()[: 1 << 20])  # weights of another, smaller model
    with pytest.raises(DetectorError, match=r"mismatched_openvino_model cannot be loaded"):
        build_detector("yolo", weights=str(mismatched))


def test_f32_precision_gives_the_pt_boxes(reid_home, frames) -> None:
    """detector.openvino_precision: f32 computes as the .pt does (the plugin's default is
    bf16 on CPUs that have it, a few hundredths off the .pt's scores)."""
    pt = build_detector("yolo", weights=str(default_weights()))
    exact = build_detector("yolo", openvino_precision="f32")
    assert exact.runtime == "OpenVINO" and exact.inference_precision == "f32"
    reference = [d for i in range(0, 12, 4) for d in pt.detect(frames[i : i + 4])]
    found = [d for i in range(0, 12, 4) for d in exact.detect(frames[i : i + 4])]
    assert box_recall(reference, found) == box_recall(found, reference) == 1.0
    scores = (
        np.concatenate([d.scores for d in reference]),
        np.concatenate([d.scores for d in found]),
    )
    np.testing.assert_allclose(np.sort(scores[0]), np.sort(scores[1]), atol=1e-3)
