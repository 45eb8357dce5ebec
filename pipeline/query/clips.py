"""The annotated clip of a sighting, cut from its run's video of that camera.

A run writes ``video/<camera>.mp4`` (one frame per processed frame) beside the crops of
each tracklet (``tracks/<camera>_<track>/<n>.jpg``), so a sighting's crops say which run
folder holds its video. A video position is footage time minus the time of the camera's
first frame; that is fitted from what the run recorded, a straight line through each
track's first and last frame numbers (``boxes.txt``) and its start and end times
(``tracklets.jsonl``): exact for files, close for live streams that dropped frames.

The mp4 itself (MPEG-4 part 2) does not play in browsers, so a clip is re-encoded as VP8
WebM with OpenCV; the whole file is also served as is (with HTTP ranges) for download.
"""

from __future__ import annotations

import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.matcher import Sighting
from pipeline.query.run_folders import parsed, run_folder, track_times

MARGIN_S = 1.0  # footage before and after the sighting
MAX_CLIP_S = 60.0


class ClipError(LookupError):
    """The sighting has no video that may be served (none recorded, or outside the root)."""


def video_of(sighting: Sighting, root: Path | None) -> Path:
    """The run video holding ``sighting``, if it lies under ``root``."""
    where = f"sighting {sighting.camera_id}:{sighting.track_id}"
    if not sighting.crops:
        raise ClipError(f"{where} has no crops, so no run folder to find its video in")
    crop = Path(sighting.crops[0]).resolve()
    if len(crop.parents) < 3 or crop.parents[1].name != "tracks":
        raise ClipError(f"{where}: its crops are not in a run's tracks/ folder")
    run = run_folder(sighting.camera_id, sighting.track_id, crop, root) if root else None
    video = run / "video" / f"{sighting.camera_id}.mp4" if run is not None else None
    if video is None or not video.is_file():
        raise ClipError(f"{where}: no annotated video of camera {sighting.camera_id!r} served")
    return video


def track_frames(path: Path) -> dict[tuple[str, int], tuple[int, int]]:
    """(camera, track) -> first and last frame number of each track in a run's boxes.txt."""
    spans: dict[tuple[str, int], tuple[int, int]] = {}
    with path.open() as boxes:
        for line in boxes:
            if not line.endswith("\n"):  # a run cut short mid-line: the last one is partial
                break
            camera, frame, track, _ = line.split(" ", 3)
            key, n = (camera, int(track)), int(frame)
            first, last = spans.get(key, (n, n))
            spans[key] = (min(first, n), max(last, n))
    return spans


def _first_frame_time(run: Path, camera: str, fps: float) -> float:
    """Footage time of the camera's first frame (index 1), fitted from the run's records."""
    times = parsed(run / "tracklets.jsonl", track_times)
    frames = parsed(run / "boxes.txt", track_frames)
    points = [
        (index, t)
        for key, span in frames.items()
        if key[0] == camera and key in times
        for index, t in zip(span, times[key], strict=True)
    ]
    if not points:
        raise ClipError(f"{run} recorded no tracks of camera {camera!r}")
    index, t = np.array(points, dtype=np.float64).T
    if np.ptp(index) > 0:
        slope, offset = np.polyfit(index, t, 1)
        return float(offset + slope)
    return float(t[0] - (index[0] - 1) / fps)  # one frame known: assume no stride


@lru_cache(maxsize=32)
def _clip(video: str, modified: float, start: float, end: float) -> bytes:
    capture = cv2.VideoCapture(video)
    try:
        fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        first = _first_frame_time(Path(video).parents[1], Path(video).stem, fps)
        begin = max(0, round((start - MARGIN_S - first) * fps))
        stop = begin + min(round((end + MARGIN_S - first) * fps) - begin, int(MAX_CLIP_S * fps))
        capture.set(cv2.CAP_PROP_POS_FRAMES, begin)
        with tempfile.TemporaryDirectory() as folder:
            target = str(Path(folder) / "clip.webm")
            writer = None
            for _ in range(begin, max(stop, begin + 1)):
                ok, frame = capture.read()
                if not ok:
                    break
                if writer is None:
                    size = (frame.shape[1], frame.shape[0])
                    writer = cv2.VideoWriter(target, cv2.VideoWriter.fourcc(*"VP80"), fps, size)
                writer.write(frame)
            if writer is None:
                raise ClipError(f"{video} has no frames at {start:.1f}-{end:.1f} s")
            writer.release()
            return Path(target).read_bytes()
    finally:
        capture.release()


def clip(sighting: Sighting, root: Path | None) -> bytes:
    """The sighting's annotated footage (with ``MARGIN_S`` either side, at most
    ``MAX_CLIP_S``) as VP8 WebM bytes."""
    video = video_of(sighting, root)
    return _clip(str(video), video.stat().st_mtime, sighting.start, sighting.end)
