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

import json
import tempfile
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from pipeline.matcher import Sighting

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
    if crop.parents[1].name != "tracks":
        raise ClipError(f"{where}: its crops are not in a run's tracks/ folder")
    video = crop.parents[2] / "video" / f"{sighting.camera_id}.mp4"
    if root is None or not video.is_relative_to(root) or not video.is_file():
        raise ClipError(f"{where}: no annotated video of camera {sighting.camera_id!r} served")
    return video


def _first_frame_time(run: Path, camera: str, fps: float) -> float:
    """Footage time of the camera's first frame (index 1), fitted from the run's records."""
    times: dict[int, tuple[float, float]] = {}
    for line in (run / "tracklets.jsonl").read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if record.get("camera") == camera:
            times[int(record["track"])] = (float(record["start"]), float(record["end"]))
    frames: dict[int, list[int]] = {}
    with (run / "boxes.txt").open() as boxes:
        for line in boxes:
            name, frame, track, _ = line.split(" ", 3)
            if name == camera and int(track) in times:
                span = frames.setdefault(int(track), [int(frame), int(frame)])
                span[0], span[1] = min(span[0], int(frame)), max(span[1], int(frame))
    points = [
        (index, t)
        for track, (first, last) in frames.items()
        for index, t in ((first, times[track][0]), (last, times[track][1]))
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
