"""What a run keeps so its tracklets can be re-linked without detecting again.

    boxes.txt          one line per tracked box, written as frames are processed:
                       ``camera frame track x1 y1 x2 y2`` (local track ids)
    tracklets.jsonl    one JSON line per tracklet summary, in the order they were decided:
                       camera, track, start, end, final, crops, embedding file, batch
                       (summaries of one batch were handed to the matcher together)
    tracks/<camera>_<track>/summary<n>.npz   that summary's features (and projections);
                       n counts the run's summaries (a tracker may reuse an ended id)
    cameras.json       the cameras and which of them overlap (for cannot-links)
    identities.json    each tracklet's final identity (after re-association), when it ends

The format is read without importing this package by ``reid-train adapt``
(:mod:`reid.data.run_folder`): keep the two in step.

Re-linking (``reid-pipeline relink``, ``benchmarks.mtmc``) reads the summaries back as
:class:`~pipeline.matcher.Tracklet` objects and rewrites ``mtmc.txt`` from ``boxes.txt``
with new identities.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO, TextIO

import cv2
import numpy as np

from pipeline.matcher.types import Tracklet
from reid.runtime import Embedder

log = logging.getLogger(__name__)
BOXES = "boxes.txt"
TRACKLETS = "tracklets.jsonl"
CAMERAS = "cameras.json"
IDENTITIES = "identities.json"


class RunRecordError(ValueError):
    """A run folder lacks what re-linking needs, or holds malformed records."""


class RunRecorder:
    """Appends a run's boxes and tracklet summaries to its output folder."""

    def __init__(
        self, folder: Path, cameras: Sequence[str] = (), overlapping: Sequence[Sequence[str]] = ()
    ) -> None:
        self.folder = folder
        (folder / CAMERAS).write_text(
            json.dumps({"cameras": list(cameras), "overlapping": [list(p) for p in overlapping]})
        )
        self._boxes: TextIO = (folder / BOXES).open("w")
        self._tracklets: BinaryIO = (folder / TRACKLETS).open("wb", buffering=0)
        self._written = 0  # summaries so far: each one's file name

    def box(self, camera: str, frame: int, track: int, xyxy: np.ndarray) -> None:
        x1, y1, x2, y2 = (float(v) for v in xyxy)
        self._boxes.write(f"{camera} {frame} {track} {x1:.1f} {y1:.1f} {x2:.1f} {y2:.1f}\n")

    def tracklet(self, tracklet: Tracklet, final: bool, batch: int = 0) -> None:
        n, self._written = self._written, self._written + 1
        folder = self.folder / "tracks" / f"{tracklet.camera_id}_{tracklet.track_id}"
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {"features": tracklet.features}
        if tracklet.projections is not None:
            arrays["attention"] = tracklet.projections.astype(np.float16)
        if tracklet.path is not None:
            arrays["path"] = tracklet.path
        np.savez(folder / f"summary{n}.npz", allow_pickle=False, **arrays)  # as np.load reads
        record = {
            "camera": tracklet.camera_id,
            "track": tracklet.track_id,
            "start": tracklet.start,
            "end": tracklet.end,
            "final": final,
            "crops": list(tracklet.crops),
            "embedding": str((folder / f"summary{n}.npz").relative_to(self.folder)),
            "batch": batch,
        }
        _append_line(self._tracklets, json.dumps(record) + "\n")

    def close(self) -> None:
        self._boxes.close()
        self._tracklets.close()


def _append_line(handle: BinaryIO, line: str) -> None:
    """Append one whole line or nothing: a write the disk cuts short (full) is taken back,
    so a reader never meets half a record."""
    data, at = line.encode(), handle.tell()
    try:
        if handle.write(data) != len(data):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    except OSError:
        handle.truncate(at)
        handle.seek(at)
        raise


def read_summaries(
    run: str | Path, embedder: Embedder | None = None
) -> Iterator[tuple[Tracklet, bool]]:
    """Every summary of the run, in decision order, with its ``final`` flag; with an
    ``embedder``, re-embedded from its crops (a new model on the same tracks, no detection;
    each crop file embedded once)."""
    for tracklet, final, _ in _recorded_summaries(run, embedder):
        yield tracklet, final


def read_batches(run: str | Path, embedder: Embedder | None = None) -> Iterator[list[Tracklet]]:
    """The run's summaries in the batches they were handed to the matcher (each summary its
    own batch in runs recorded before batches were), so a replay decides as the run did."""
    batch: list[Tracklet] = []
    current: int | None = None
    for tracklet, _, number in _recorded_summaries(run, embedder):
        if batch and (number is None or number != current):
            yield batch
            batch = []
        batch.append(tracklet)
        current = number
    if batch:
        yield batch


def _recorded_summaries(
    run: str | Path, embedder: Embedder | None = None
) -> Iterator[tuple[Tracklet, bool, int | None]]:
    """(summary, final, batch number or None) of every line of ``tracklets.jsonl``."""
    embedded: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    run = Path(run)
    path = run / TRACKLETS
    if not path.is_file():
        raise RunRecordError(
            f"{path} does not exist: re-linking needs a run made by reid-pipeline "
            "(outputs.dir of that run)"
        )
    text = path.read_text()
    lines = text.splitlines()
    if lines and not text.endswith("\n"):  # a run cut short (disk full, killed) mid-line
        log.warning("%s: its last line is incomplete and left out", path)
        lines.pop()
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
            with np.load(run / record["embedding"]) as arrays:
                attention = arrays["attention"] if "attention" in arrays else None
                track_path = arrays["path"] if "path" in arrays else None
                features = arrays["features"]
            tracklet = Tracklet(
                record["camera"],
                int(record["track"]),
                float(record["start"]),
                float(record["end"]),
                features,
                attention,
                tuple(record["crops"]),
                track_path,
            )
        except (ValueError, KeyError, OSError) as exc:
            raise RunRecordError(f"{path}:{number}: {exc}") from exc
        if embedder is not None:
            tracklet = _reembed(tracklet, embedder, embedded)
        batch = record.get("batch")
        yield tracklet, bool(record["final"]), None if batch is None else int(batch)


def read_tracklets(run: str | Path, embedder: Embedder | None = None) -> list[Tracklet]:
    """The latest summary of every tracklet of the run, ordered by end time; with an
    ``embedder``, re-embedded from its crops (a new model on the same tracks, no detection)."""
    latest: dict[tuple[str, int], Tracklet] = {}
    for tracklet, _ in read_summaries(run):
        latest[(tracklet.camera_id, tracklet.track_id)] = tracklet
    tracklets = sorted(latest.values(), key=lambda t: (t.end, t.camera_id, t.track_id))
    if embedder is None:
        return tracklets
    embedded: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    return [_reembed(t, embedder, embedded) for t in tracklets]


def _reembed(
    tracklet: Tracklet,
    embedder: Embedder,
    embedded: dict[str, tuple[np.ndarray, np.ndarray | None]],
) -> Tracklet:
    """``tracklet`` with features (and projections) of ``embedder`` for its crops."""
    fresh = [p for p in dict.fromkeys(tracklet.crops) if p not in embedded]
    if fresh:
        crops: list[np.ndarray] = []
        for path in fresh:
            crop = cv2.imread(path)
            if crop is None or not crop.size:
                raise RunRecordError(f"tracklet {tracklet.ref!r}: crop {path} is unreadable")
            crops.append(crop)
        out = embedder.embed(crops)
        for n, path in enumerate(fresh):
            embedded[path] = (
                out.features[n],
                None if out.projections is None else out.projections[n],
            )
    rows = [embedded[p] for p in tracklet.crops]
    projections = [r[1] for r in rows if r[1] is not None]  # all or none: one embedder
    attention = None if rows[0][1] is None else np.stack(projections)
    return replace(tracklet, features=np.stack([r[0] for r in rows]), projections=attention)


def write_identities(
    run: str | Path,
    tracklets: Sequence[tuple[str, int]],
    identity_of: Callable[[str, int], str | None],
) -> None:
    """``identities.json``: the final identity of each ``(camera, track)`` (``reid-train
    adapt`` starts its pseudo-identities from them)."""
    rows = [
        {"camera": camera, "track": track, "identity": identity_of(camera, track)}
        for camera, track in tracklets
    ]
    (Path(run) / IDENTITIES).write_text(json.dumps(rows))


def write_mtmc(
    run: str | Path,
    identity_of: Callable[[str, int], str | None],
    out: str | Path | None = None,
    cameras: Sequence[str] = (),
) -> Path:
    """``mtmc.txt`` (AI City format) and ``ids.json`` from ``boxes.txt`` and final identities.

    Cameras are numbered in the order of ``cameras`` (then as they appear); boxes of tracks
    that never got an identity (too short to summarise) are left out.
    """
    run = Path(run)
    out = Path(out) if out is not None else run / "mtmc.txt"
    source = run / BOXES
    if not source.is_file():
        raise RunRecordError(f"{source} does not exist: the run recorded no boxes")
    numbering = {camera: n for n, camera in enumerate(cameras, 1)}
    numbers: dict[str, int] = {}
    cache: dict[tuple[str, int], str | None] = {}
    with source.open() as boxes, out.open("w") as handle:
        for line in boxes:
            if not line.endswith("\n"):  # a run cut short (disk full, killed) mid-line
                log.warning("%s: its last line is incomplete and left out", source)
                break
            camera, frame, track, x1, y1, x2, y2 = line.split()
            key = (camera, int(track))
            if key not in cache:
                cache[key] = identity_of(*key)
            identity = cache[key]
            numbering.setdefault(camera, len(numbering) + 1)
            if identity is None:
                continue
            number = numbers.setdefault(identity, len(numbers) + 1)
            left, top, right, bottom = float(x1), float(y1), float(x2), float(y2)
            handle.write(
                f"{numbering[camera]} {number} {frame} {left:.0f} {top:.0f} "
                f"{right - left:.0f} {bottom - top:.0f} -1 -1\n"
            )
    out.with_name("ids.json").write_text(
        json.dumps(
            {
                "cameras": {str(n): c for c, n in numbering.items()},
                "identities": {str(n): i for i, n in numbers.items()},
            },
            indent=2,
        )
    )
    return out
