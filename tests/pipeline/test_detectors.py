"""Detectors on real frames of vtest.avi (fetched by the project), HOG, MOT replay."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors import Detections, DetectorError, build_detector, default_weights
from detectors.precomputed import read_mot
from pipeline.config import load_pipeline_config
from pipeline.crop_quality import iou_matrix
from pipeline.runner import build_detectors
from reid.config import ConfigError
from reid_demo.scene import generate_scene
from tests.footage import vtest_frames as frames_of_vtest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vtest_frames() -> list[np.ndarray]:
    return frames_of_vtest(60, 20)


def _hits(found: Detections, expected: np.ndarray) -> int:
    """How many expected centres fall inside a detected box."""
    return sum(
        any(x1 <= cx <= x2 and y1 <= cy <= y2 for x1, y1, x2, y2 in found.xyxy)
        for cx, cy in expected
    )


# centres of clearly visible people in frames 0, 20 and 40 of vtest.avi (looked up by hand)
PEOPLE = [
    np.array([[512, 190], [664, 280], [267, 260]]),
    np.array([[380, 240], [459, 277], [704, 331], [741, 320]]),
    np.array([[387, 215], [413, 221], [449, 228], [584, 281], [616, 277], [755, 341]]),
]


def test_default_yolo_finds_people_where_people_are(vtest_frames) -> None:
    detector = build_detector("yolo", imgsz=640)
    found = detector.detect(vtest_frames)
    assert len(found) == len(vtest_frames)
    for dets, expected in zip(found, PEOPLE, strict=True):
        assert _hits(dets, expected) >= (len(expected) + 1) // 2
        assert np.all((dets.scores > 0) & (dets.scores <= 1))
        h = dets.xyxy[:, 3] - dets.xyxy[:, 1]
        w = dets.xyxy[:, 2] - dets.xyxy[:, 0]
        assert np.mean(h > w) >= 0.7  # mostly upright people (some are cut by the frame)


def test_onnx_weights_agree_with_pt(vtest_frames) -> None:
    pt = build_detector("yolo", weights=str(default_weights())).detect(vtest_frames[:1])[0]
    onnx = build_detector("yolo", weights=str(default_weights(onnx=True))).detect(vtest_frames[:1])[
        0
    ]
    assert abs(len(pt) - len(onnx)) <= 1
    assert _hits(onnx, PEOPLE[0]) >= 2


def test_hog_needs_no_weights(vtest_frames) -> None:
    found = build_detector("hog").detect(vtest_frames)
    assert sum(_hits(d, e) for d, e in zip(found, PEOPLE, strict=True)) >= 4


def test_motion_kind_from_the_config_finds_walking_people(tmp_path: Path) -> None:
    """The docs' one-file detector example, picked by ``detector.kind`` in cams.yaml."""
    cams = generate_scene(tmp_path, people=3, cameras=2, duration=15, seed=4)
    config = load_pipeline_config(cams, ["detector.kind=motion"])
    detector = build_detectors(config)["cam0"]  # each camera learns its own background
    truth = read_mot(tmp_path / "gt/cam0.txt")
    capture = cv2.VideoCapture(str(tmp_path / "cam0.mp4"))
    found, expected, idle = 0, 0, 0
    for number in itertools.count(1):
        ok, frame = capture.read()
        if not ok:
            break
        detections = detector.detect([frame])[0]
        people = truth.get(number, Detections())
        if number <= 20:  # the background model is still learning
            continue
        if not len(people):
            idle += len(detections)
        elif len(detections):
            expected += len(people)
            found += int((iou_matrix(people.xyxy, detections.xyxy).max(1) >= 0.5).sum())
        else:
            expected += len(people)
    assert expected > 100 and found / expected >= 0.7 and idle == 0


def test_missing_or_corrupt_weights_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="do not exist.*shipped default"):
        build_detector("yolo", weights=str(tmp_path / "nope.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"garbage")
    with pytest.raises(DetectorError, match="cannot be loaded"):
        build_detector("yolo", weights=str(bad))
    garbage_onnx = tmp_path / "bad.onnx"  # used to fail mid-run, at the first frame
    garbage_onnx.write_bytes(b"garbage")
    with pytest.raises(DetectorError, match="bad.onnx cannot be loaded"):
        build_detector("yolo", weights=str(garbage_onnx))
    with pytest.raises(DetectorError, match="must be one of"):
        build_detector("yolo", weights=str(tmp_path / "weights.txt"))
    with pytest.raises(DetectorError, match="valid kinds"):
        build_detector("rcnn")


def test_mot_replay_by_frame_number(tmp_path: Path) -> None:
    mot = tmp_path / "det.txt"
    mot.write_text("1,-1,10,20,30,60,0.9,-1,-1,-1\n1,-1,50,20,30,60,0.8\n3,-1,0,0,5,5,0.5\n")
    detector = build_detector("precomputed", detections=str(mot))
    one, two, three = detector.detect([np.zeros((1, 1, 3), np.uint8)] * 3, [1, 2, 3])
    np.testing.assert_allclose(one.xyxy, [[10, 20, 40, 80], [50, 20, 80, 80]])
    assert len(two) == 0 and len(three) == 1
    mot.write_text("1,-1,10,x,30,60,0.9\n")
    with pytest.raises(DetectorError, match="det.txt:1"):
        read_mot(mot)


GUARD = r"""
import socket, sys
attempts = []
real_connect = socket.socket.connect
def guarded(self, address):
    host = address[0] if isinstance(address, tuple) else address
    if isinstance(host, str) and not (host.startswith("127.") or host in ("localhost", "::1")
                                      or host.startswith("/")):
        attempts.append(host)
        raise OSError("network unreachable (test guard)")
    return real_connect(self, address)
socket.socket.connect = guarded
real_getaddrinfo = socket.getaddrinfo
def no_dns(host, *args, **kwargs):
    if host not in ("localhost", "127.0.0.1", "::1", None):
        attempts.append(host)
        raise socket.gaierror("no network (test guard)")
    return real_getaddrinfo(host, *args, **kwargs)
socket.getaddrinfo = no_dns
import numpy as np
from pipeline.process import configure_process
configure_process()  # as every entry point does
from detectors import build_detector
frame = np.zeros((480, 640, 3), np.uint8)
for kind in ("yolo", "hog"):
    build_detector(kind).detect([frame])
from pipeline.tracking import ByteTrackSettings, CameraTracker
from detectors import Detections
CameraTracker(ByteTrackSettings(), 10).update(Detections(), frame)
print("ATTEMPTS", attempts)
sys.exit(1 if attempts else 0)
"""


def test_no_network_access_at_run_time() -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", GUARD], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]


def test_motion_kind_runs_from_a_cams_yaml_written_as_the_docs_show(tmp_path: Path) -> None:
    """Cameras without detections files (motion needs none): it used to fail with
    "detector.kind motion needs cameras[].detections", a test passing only because the
    generated scene always writes them."""
    scene = generate_scene(tmp_path / "scene", people=2, cameras=2, duration=4, seed=4)
    cams = tmp_path / "cams.yaml"
    cams.write_text(
        "cameras:\n"
        f"  - {{id: door, source: {scene.parent / 'cam0.mp4'}}}\n"
        f"  - {{id: hall, source: {scene.parent / 'cam1.mp4'}}}\n"
        "detector: {kind: motion}\n"
    )
    detectors = build_detectors(load_pipeline_config(cams))
    assert set(detectors) == {"door", "hall"} and detectors["door"] is not detectors["hall"]
    cams.write_text(cams.read_text().replace("kind: motion", "kind: precomputed"))
    with pytest.raises(
        ConfigError, match="needs cameras\\[\\].detections for \\['door', 'hall'\\]"
    ):
        load_pipeline_config(cams)


def test_an_unknown_camera_in_overlapping_is_a_clear_error(tmp_path: Path) -> None:
    scene = generate_scene(tmp_path / "scene", people=2, cameras=2, duration=4, seed=4)
    with pytest.raises(ConfigError, match="overlapping names unknown camera 'cam9'"):
        load_pipeline_config(scene, ["matcher.overlapping=[[cam0, cam9]]"])
