"""Camera sources: video files, RTSP/HTTP streams, webcams and image folders.

Each camera gets a reader thread with a bounded queue. Live sources drop the oldest frame
when the pipeline falls behind (counted), files never drop (the reader waits). Streams that
fail are reopened with exponential backoff; a corrupt frame is skipped and counted.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.config import CameraConfig
from reid.preprocess import IMAGE_SUFFIXES

log = logging.getLogger(__name__)
STREAM_PREFIXES = ("rtsp://", "rtsps://", "http://", "https://", "rtmp://", "udp://", "tcp://")


class SourceError(RuntimeError):
    """A source cannot be opened (and is not set to retry)."""


@dataclass(frozen=True)
class Frame:
    """One decoded frame: 1-based ``index`` in its source, ``timestamp`` in seconds."""

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray


@dataclass
class SourceStats:
    read: int = 0
    delivered: int = 0
    dropped: int = 0
    corrupt: int = 0
    reconnects: int = 0
    finished: bool = False
    error: str | None = None


def source_kind(source: str | int) -> str:
    if isinstance(source, int) or (isinstance(source, str) and source.isdigit()):
        return "webcam"
    if source.startswith(STREAM_PREFIXES):
        return "stream"
    return "folder" if Path(source).is_dir() else "file"


class _Capture:
    """Uniform ``read() -> (status, image, timestamp)`` over OpenCV captures and folders.

    status: ``ok``, ``corrupt`` (skip this frame) or ``end`` (no more frames / stream lost).
    """

    def __init__(
        self, source: str | int, fps: float | None, start_time: float, open_timeout_s: float = 10.0
    ) -> None:
        self.kind = source_kind(source)
        self.start_time = start_time
        self.index = 0
        if self.kind == "folder":
            self.files = sorted(
                p for p in Path(str(source)).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES
            )
            if not self.files:
                raise SourceError(f"image folder {source} holds no images")
            self.fps = fps or 10.0
            return
        if self.kind == "file" and not Path(str(source)).is_file():
            raise SourceError(f"video file {source} does not exist")
        target = int(source) if self.kind == "webcam" else source
        if self.kind == "stream":  # a camera that accepts and never sends must not hang us
            ms = int(open_timeout_s * 1000)
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            self.cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, params)
        else:
            self.cap = cv2.VideoCapture(target)
        if not self.cap.isOpened():
            raise SourceError(f"cannot open {self.kind} {source!r}")
        self.fps = fps or self.cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT)) if self.kind == "file" else 0

    def size(self) -> tuple[int, int]:
        """(width, height) of the frames; (0, 0) where the source does not say."""
        if self.kind == "folder":
            first = cv2.imread(str(self.files[0]))
            return (0, 0) if first is None else (first.shape[1], first.shape[0])
        return int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(
            self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)
        )

    def read(self) -> tuple[str, np.ndarray | None, float]:
        self.index += 1
        if self.kind == "folder":
            if self.index > len(self.files):
                return "end", None, 0.0
            image = cv2.imread(str(self.files[self.index - 1]))
            stamp = self.start_time + (self.index - 1) / self.fps
            return ("ok", image, stamp) if image is not None else ("corrupt", None, stamp)
        ok, image = self.cap.read()
        if self.kind == "file":
            stamp = self.start_time + (self.index - 1) / self.fps
            if ok and image is not None:
                return "ok", image, stamp
            return ("corrupt", None, stamp) if self.index <= self.frame_count else ("end", None, 0)
        return ("ok", image, time.time()) if ok and image is not None else ("end", None, 0.0)

    def close(self) -> None:
        if self.kind != "folder":
            self.cap.release()


class CameraReader:
    """Reads one camera on a thread into a bounded queue of :class:`Frame`.

    Args:
        camera_id: id from cams.yaml.
        source: file path, folder, stream URL or webcam index.
        process_fps: frames per second to deliver (a stride over the source rate); None: all.
        start_time: timestamp of a file's first frame (live sources use the wall clock).
        time_offset: seconds added to every timestamp (virtual cameras).
        crop: ``(x, y, w, h)`` region of the frame this camera sees (virtual cameras).
        queue_size: frames buffered before dropping (live) or waiting (files).
        live: None decides by source kind (streams and webcams are live).
        max_reconnects: for live sources; None retries forever.
        open_timeout_s: how long a stream may take to open or to send a frame.
    """

    def __init__(
        self,
        camera_id: str,
        source: str | int,
        process_fps: float | None = None,
        start_time: float = 0.0,
        time_offset: float = 0.0,
        crop: tuple[int, int, int, int] | None = None,
        queue_size: int = 8,
        live: bool | None = None,
        max_reconnects: int | None = None,
        max_frames: int | None = None,
        open_timeout_s: float = 10.0,
    ) -> None:
        self.camera_id, self.source = camera_id, source
        self.open_timeout_s = open_timeout_s
        self.live = source_kind(source) in ("stream", "webcam") if live is None else live
        self.process_fps, self.start_time, self.time_offset = process_fps, start_time, time_offset
        self.crop, self.max_reconnects, self.max_frames = crop, max_reconnects, max_frames
        self.frames: queue.Queue[Frame | None] = queue.Queue(queue_size)
        self.stats = SourceStats()
        self._stop = threading.Event()
        self.capture = self._open_first()
        self.fps = self.capture.fps if self.capture else (process_fps or 25.0)
        self.stride = max(1, round(self.fps / process_fps)) if process_fps else 1
        self._thread = threading.Thread(target=self._run, name=f"camera-{camera_id}", daemon=True)

    @classmethod
    def from_config(cls, camera: CameraConfig, max_frames: int | None = None) -> CameraReader:
        return cls(
            camera.id,
            camera.source,
            camera.fps,
            camera.start_time,
            camera.time_offset,
            camera.crop,
            live=camera.live,
            max_reconnects=camera.max_reconnects,
            max_frames=max_frames,
            open_timeout_s=camera.open_timeout_s,
        )

    @property
    def output_fps(self) -> float:
        return self.fps / self.stride

    def _open_first(self) -> _Capture | None:
        try:
            capture = _Capture(self.source, None, self.start_time, self.open_timeout_s)
            if self.crop is not None:
                self._check_crop(*capture.size())
            return capture
        except SourceError as exc:
            if not self.live:
                raise SourceError(f"camera {self.camera_id}: {exc}") from exc
            log.warning("camera %s: %s; will keep retrying", self.camera_id, exc)
            return None

    def start(self) -> CameraReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _deliver(self, frame: Frame) -> None:
        if not self.live:
            while not self._stop.is_set():
                try:
                    self.frames.put(frame, timeout=0.2)
                    break
                except queue.Full:
                    continue
            return
        while True:
            try:
                self.frames.put_nowait(frame)
                return
            except queue.Full:
                try:
                    self.frames.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def _check_crop(self, width: int, height: int) -> None:
        """A virtual camera's crop must lie inside the frame: outside it the camera would
        see nothing, partly outside it would silently see less than configured."""
        x, y, w, h = self.crop  # type: ignore[misc]
        if width and height and (x + w > width or y + h > height):
            raise SourceError(
                f"crop [x={x}, y={y}, w={w}, h={h}] extends past the {width}x{height} frame "
                f"(x + w <= {width} and y + h <= {height} are needed)"
            )

    def _frame(self, image: np.ndarray, index: int, stamp: float) -> Frame:
        if self.crop is not None:
            self._check_crop(image.shape[1], image.shape[0])  # a stream may change size
            x, y, w, h = self.crop
            image = image[y : y + h, x : x + w]
        return Frame(self.camera_id, index, stamp + self.time_offset, image)

    def _reconnect(self) -> _Capture | None:
        delay = 0.5
        while not self._stop.is_set():
            if self.max_reconnects is not None and self.stats.reconnects >= self.max_reconnects:
                return None
            self.stats.reconnects += 1
            try:
                capture = _Capture(self.source, None, self.start_time, self.open_timeout_s)
                log.info("camera %s: reconnected", self.camera_id)
                return capture
            except SourceError as exc:
                log.warning(
                    "camera %s: reconnect failed (%s); next try in %.1fs",
                    self.camera_id,
                    exc,
                    delay,
                )
                self._stop.wait(delay)
                delay = min(delay * 2, 30.0)
        return None

    def _run(self) -> None:
        capture = self.capture or self._reconnect()
        try:
            while capture is not None and not self._stop.is_set():
                status, image, stamp = capture.read()
                if status == "end":
                    capture.close()
                    capture = self._reconnect() if self.live else None
                    continue
                if status == "corrupt":
                    self.stats.corrupt += 1
                    continue
                self.stats.read += 1
                if (capture.index - 1) % self.stride:
                    continue
                assert image is not None  # "ok" comes with pixels
                self._deliver(self._frame(image, capture.index, stamp))
                self.stats.delivered += 1
                if self.max_frames and self.stats.delivered >= self.max_frames:
                    break
        except Exception as exc:  # a dead camera must not take the others down
            log.exception("camera %s failed", self.camera_id)
            self.stats.error = str(exc)
        finally:
            self.stats.finished = True
            if capture is not None:
                capture.close()
            self._deliver_end()

    def _deliver_end(self) -> None:
        while True:
            try:
                self.frames.put(None, timeout=0.2)
                return
            except queue.Full:
                if self._stop.is_set():
                    return
