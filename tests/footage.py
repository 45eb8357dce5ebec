"""Frames of OpenCV's vtest.avi for tests that need real footage (skipped where the video
cannot be fetched)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from reid_demo.vtest import fetch_vtest

ROOT = Path(__file__).resolve().parents[1]


def vtest_frames(first: int, every: int) -> list[np.ndarray]:
    """Every ``every``-th of vtest.avi's first ``first`` frames."""
    path = fetch_vtest(ROOT / "data")
    if path is None:
        pytest.skip("vtest.avi unavailable (no apt-get here)")
    capture = cv2.VideoCapture(str(path))
    frames = []
    for i in range(first):
        ok, frame = capture.read()
        if ok and i % every == 0:
            frames.append(frame)
    capture.release()
    return frames
