"""Every source kind, strides, virtual cameras, corrupt frames, drops and reconnects."""

from __future__ import annotations

import shutil
import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.sources import CameraReader, Frame, SourceError


def write_video(path: Path, frames: int, fps: float = 10.0, size=(64, 48)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, size)
    for i in range(frames):
        image = np.full((size[1], size[0], 3), i * 5 % 255, np.uint8)
        cv2.putText(image, str(i), (5, 30), cv2.FONT_HERSHEY_SIMPLEX, 0.8, (255, 255, 255), 2)
        writer.write(image)
    writer.release()
    return path


def drain(reader: CameraReader, timeout: float = 10.0) -> list[Frame]:
    frames, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        item = reader.frames.get(timeout=timeout)
        if item is None:
            return frames
        frames.append(item)
    raise TimeoutError("source did not finish")


def test_video_file_timestamps_stride_and_virtual_crop(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 20, fps=10)
    reader = CameraReader(
        "cam",
        str(video),
        process_fps=5,
        start_time=100.0,
        time_offset=2.5,
        crop=(10, 5, 30, 20),
        queue_size=2,
    ).start()
    frames = drain(reader)
    assert [f.index for f in frames] == list(range(1, 21, 2))
    assert [f.timestamp for f in frames] == pytest.approx([102.5 + 0.2 * i for i in range(10)])
    assert frames[0].image.shape == (20, 30, 3)
    assert reader.stats.dropped == 0 and reader.stats.read == 20  # files never drop


def test_image_folder_skips_and_counts_corrupt_files(tmp_path: Path) -> None:
    for i in range(5):
        cv2.imwrite(str(tmp_path / f"{i:03d}.jpg"), np.full((20, 10, 3), 50 * i, np.uint8))
    (tmp_path / "002.jpg").write_bytes(b"broken")
    reader = CameraReader("cam", str(tmp_path), process_fps=None).start()
    frames = drain(reader)
    assert [f.index for f in frames] == [1, 2, 4, 5]
    assert reader.stats.corrupt == 1
    assert frames[2].timestamp == pytest.approx(0.3)  # folder default: 10 frames/s


def test_unopenable_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="camera c1: video file .*missing.avi does not exist"):
        CameraReader("c1", str(tmp_path / "missing.avi"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="holds no images"):
        CameraReader("c1", str(empty))


@pytest.mark.parametrize("crop", [(100, 0, 20, 20), (50, 40, 30, 20)])
def test_a_crop_outside_the_frame_is_a_clear_error(tmp_path: Path, crop) -> None:  # noqa: ANN001
    """Wholly outside it crashed the run later; partly outside it was silently cut."""
    video = write_video(tmp_path / "v.avi", 3)  # 64x48
    with pytest.raises(SourceError, match=r"camera c1: crop \[x=.*past the 64x48 frame"):
        CameraReader("c1", str(video), crop=crop)
    for i in range(2):
        cv2.imwrite(str(tmp_path / f"{i}.jpg"), np.zeros((48, 64, 3), np.uint8))
    with pytest.raises(SourceError, match="past the 64x48 frame"):
        CameraReader("c1", str(tmp_path), crop=crop)


def test_live_source_drops_oldest_when_behind(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.avi", 30)
    reader = CameraReader("cam", str(video), queue_size=3, live=True, max_reconnects=0).start()
    time.sleep(1.0)  # nobody consumes: the reader must keep only the newest frames
    frames = drain(reader)
    assert reader.stats.dropped >= 30 - 3 - 1
    assert frames and frames[-1].index == 30


def test_live_source_reconnects_after_loss(tmp_path: Path) -> None:
    """A stream that is unavailable at start and comes back is picked up with backoff."""
    target = tmp_path / "stream.avi"
    reader = CameraReader("cam", str(target), queue_size=64, live=True, max_reconnects=6)
    threading.Timer(0.8, lambda: shutil.copy(write_video(tmp_path / "src.avi", 5), target)).start()
    reader.start()
    frames = drain(reader, timeout=30)
    assert len(frames) >= 5 and reader.stats.reconnects >= 1


@pytest.mark.timeout(60)
def test_a_stream_that_accepts_and_never_sends_gives_up_after_its_timeout() -> None:
    """A camera that takes the connection and sends nothing used to hold the run's start
    for 30 s (and each such camera after it); now it waits ``open_timeout_s`` and is
    retried in the background like any lost live camera."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(4)
    held: list = []
    threading.Thread(target=lambda: held.append(server.accept()), daemon=True).start()
    url = f"rtsp://127.0.0.1:{server.getsockname()[1]}/silent"
    reader = CameraReader("door", url, open_timeout_s=0.5, max_reconnects=0)
    assert reader.live and reader.capture is None  # not opened; no exception, no hang
    server.close()
