"""What a run leaves behind in its output folder.

mtmc.txt          AI City Challenge MTMC format, one line per box, with the final identities:
                  camera_id obj_id frame_id xmin ymin width height xworld yworld
                  (numeric camera ids and global ids; world coordinates -1: unknown)
ids.json          numeric ids used in mtmc.txt -> camera ids and identity ids
boxes.txt, tracklets.jsonl, tracks/*/summary<n>.npz   what re-linking needs
                  (:mod:`pipeline.run_record`)
events.jsonl      one JSON object per matcher decision (new_identity, link, update)
sightings.jsonl   each decision's track, identity, end time and crops, written as it is
                  made (a later row for a track replaces an earlier one): a run keeps no
                  per-track state in memory once the track has ended
video/<cam>.mp4   annotated video per camera, boxes labelled with global identities
crops/<identity>/<camera>_<end>_<track>-<n>.jpg site training data (reid-train site)
tracks/<camera>_<track>/<n>.jpg                 the crops each tracklet was embedded from
summary.json      identities, cross-camera links, frames, per-stage time
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import time
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

from pipeline.config import OutputConfig
from pipeline.matcher import Decision, Tracklet
from pipeline.matcher.relink import RelinkReport
from pipeline.output_folder import claim
from pipeline.run_record import RunRecorder, write_identities, write_mtmc
from pipeline.sources import Frame
from pipeline.tracking import Track
from pipeline.tracklets import TrackletSummary

log = logging.getLogger(__name__)
SIGHTINGS = "sightings.jsonl"


class LastDecision(NamedTuple):
    """A track's last decision as sightings.jsonl records it."""

    identity: str
    end: float
    crops: tuple[str, ...]


def _color(key: str) -> tuple[int, int, int]:
    h = zlib.crc32(key.encode()) % 180
    hsv = np.array([[[h, 200, 255]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


class RunOutputs:
    """Writes every output of one run; :meth:`close` finishes the files."""

    def __init__(
        self,
        folder: str | Path,
        config: OutputConfig,
        camera_ids: list[str],
        overlapping: Sequence[Sequence[str]] = (),
        sources: Sequence[str | int] = (),
    ) -> None:
        self.folder, self.config = Path(folder), config
        # this run's alone until close(): never another run's, never the footage's
        self._lock, self.previous = claim(self.folder, sources)
        self.camera_ids = camera_ids
        # the identity of each open track, for the video labels; a track leaves when it ends
        self.live_identity: dict[tuple[str, int], str] = {}
        self.record = RunRecorder(self.folder, camera_ids, overlapping)
        self.writers: dict[str, cv2.VideoWriter] = {}
        self.events = (self.folder / "events.jsonl").open("w") if config.events else None
        self.sightings = (self.folder / SIGHTINGS).open("w")

    def frame(self, frame: Frame, tracks: list[Track], fps: float) -> None:
        """Record boxes for mtmc.txt and draw the annotated frame."""
        for t in tracks:
            self.record.box(frame.camera_id, frame.index, t.track_id, t.xyxy)
        if not self.config.video:
            return
        image = frame.image.copy()
        for t in tracks:
            identity = self.live_identity.get((frame.camera_id, t.track_id))
            label = identity or f"t{t.track_id}"  # the id the review page and reid-query use
            color = _color(identity or f"{frame.camera_id}{t.track_id}")
            x1, y1, x2, y2 = t.xyxy.astype(int)
            cv2.rectangle(image, (x1, y1), (x2, y2), color, 2)
            cv2.putText(
                image,
                label,
                (x1, max(12, y1 - 4)),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.5,
                color,
                2,
                cv2.LINE_AA,
            )
        cv2.putText(
            image,
            f"{frame.camera_id}  t={frame.timestamp:.1f}s",
            (8, 20),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.6,
            (255, 255, 255),
            2,
            cv2.LINE_AA,
        )
        writer = self.writers.get(frame.camera_id)
        if writer is None:
            (self.folder / "video").mkdir(exist_ok=True)
            h, w = image.shape[:2]
            writer = cv2.VideoWriter(
                str(self.folder / "video" / f"{frame.camera_id}.mp4"),
                cv2.VideoWriter.fourcc(*"mp4v"),
                fps,
                (w, h),
            )
            self.writers[frame.camera_id] = writer
        writer.write(image)

    def track_crops(self, summary: TrackletSummary) -> tuple[str, ...]:
        """Save the crops a tracklet is embedded from; their absolute paths go to the matcher
        (a review server started in any folder finds them under its ``--crops-root``)."""
        folder = self.folder / "tracks" / f"{summary.camera_id}_{summary.track_id}"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for n, crop in enumerate(summary.crops):
            path = folder / f"{n}.jpg"
            cv2.imwrite(str(path), crop)
            paths.append(str(path.resolve()))
        return tuple(paths)

    def decision(
        self, summary: TrackletSummary, decision: Decision, crops: tuple[str, ...]
    ) -> None:
        key = (summary.camera_id, summary.track_id)
        if summary.final:
            self.live_identity.pop(key, None)
        else:
            self.live_identity[key] = decision.identity
        row = [summary.camera_id, summary.track_id, decision.identity, summary.end, list(crops)]
        self.sightings.write(json.dumps(row) + "\n")
        if decision.action == "duplicate":
            return
        if self.events is not None:
            self.events.write(
                json.dumps(
                    {
                        "time": time.time(),
                        "type": decision.action,
                        "identity": decision.identity,
                        "camera": summary.camera_id,
                        "track": summary.track_id,
                        "start": summary.start,
                        "end": summary.end,
                        "distance": decision.distance,
                        "crops": list(crops),
                    }
                )
                + "\n"
            )
            self.events.flush()

    def recorded(self) -> dict[tuple[str, int], LastDecision]:
        """Every decided track's last decision (from sightings.jsonl: read, not kept)."""
        if not self.sightings.closed:
            with contextlib.suppress(OSError):  # a full disk: what reached it is read below
                self.sightings.flush()
        rows: dict[tuple[str, int], LastDecision] = {}
        with (self.folder / SIGHTINGS).open() as lines:
            for line in lines:
                if not line.endswith("\n"):  # cut short mid-line (a full disk)
                    break
                camera, track, identity, end, crops = json.loads(line)
                rows[(camera, track)] = LastDecision(identity, end, tuple(crops))
        return rows

    def _write_crops(
        self,
        recorded: dict[tuple[str, int], LastDecision],
        identity_of: Callable[[str, int], str | None],
    ) -> None:
        """crops/<identity>/: every tracklet's crops under its final identity."""
        for (camera, track), (_, end, crops) in recorded.items():
            identity = identity_of(camera, track)
            if identity is None:
                continue
            folder = self.folder / "crops" / identity
            folder.mkdir(parents=True, exist_ok=True)
            for n, source in enumerate(crops):
                # track 1 crop 12 and track 11 crop 2 must not share a name
                target = folder / f"{camera}_{end:.3f}_{track}-{n}.jpg"
                if not target.exists():
                    try:
                        os.link(source, target)
                    except OSError:
                        shutil.copyfile(source, target)

    def tracklet(self, tracklet: Tracklet, final: bool, batch: int = 0) -> None:
        """Keep a summary for re-linking (:mod:`pipeline.run_record`); ``batch`` numbers the
        summaries handed to the matcher together."""
        self.record.tracklet(tracklet, final, batch)

    def relink(self, report: RelinkReport) -> None:
        """Open tracks' labels follow re-association's merges; merges and splits go to
        events.jsonl."""
        for key, identity in self.live_identity.items():  # open tracks show the survivor
            self.live_identity[key] = report.merges.get(identity, identity)
        if self.events is None:
            return
        now = time.time()
        for source, target in report.merges.items():
            self.events.write(
                json.dumps({"time": now, "type": "merge", "identity": source, "into": target})
                + "\n"
            )
        for identity, source in report.splits.items():
            self.events.write(
                json.dumps({"time": now, "type": "split", "identity": identity, "from": source})
                + "\n"
            )
        self.events.flush()

    def close(
        self,
        summary: dict[str, Any],
        recorded: dict[tuple[str, int], LastDecision],
        identities: Callable[[str, int], str | None] | None = None,
    ) -> None:
        """Finish the files. ``recorded``: :meth:`recorded`, read once at the end of the run;
        ``identities`` gives final identities (after re-association), else the last
        decisions stand."""
        for writer in self.writers.values():
            writer.release()
        if self.events is not None:
            self.events.close()
        self.record.close()
        self.sightings.close()
        found = {
            key: row.identity if identities is None else identities(*key)
            for key, row in recorded.items()
        }

        def final(camera: str, track: int) -> str | None:
            return found.get((camera, track))

        write_identities(self.folder, list(recorded), final)
        if self.config.crops:
            self._write_crops(recorded, final)
        if self.config.mtmc:
            write_mtmc(self.folder, final, cameras=self.camera_ids)
        (self.folder / "summary.json").write_text(json.dumps(summary, indent=2))
        self._lock.close()  # the folder is no longer this run's
