"""The tracklets a ``reid-pipeline`` run left in its output folder, as training material.

Reads the files only (``tracklets.jsonl``, ``cameras.json``, ``identities.json``, the crops
under ``tracks/``);
the pipeline package that writes them (``pipeline.run_record``) is never imported, so
training keeps its one-way dependency. The latest summary of each tracklet counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from reid.data.datasets import DatasetError

TRACKLETS = "tracklets.jsonl"
CAMERAS = "cameras.json"
IDENTITIES = "identities.json"


@dataclass(frozen=True)
class RunTracklet:
    """One tracklet of one run: where and when, and the crops it was embedded from."""

    run: int  # index of its run folder among those read
    camera: str
    track: int
    start: float
    end: float
    crops: tuple[Path, ...]
    identity: str | None = None  # the run's final identity (identities.json), if recorded


@dataclass(frozen=True)
class RunMaterial:
    tracklets: tuple[RunTracklet, ...]
    overlapping: frozenset[frozenset[str]]  # camera pairs whose views overlap

    def overlaps(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.overlapping


def read_run(folder: str | Path, run: int = 0) -> RunMaterial:
    """One run folder; errors name the folder and what is missing or malformed."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"run folder {folder} does not exist")
    path = folder / TRACKLETS
    if not path.is_file():
        raise DatasetError(
            f"{folder} has no {TRACKLETS}: give the outputs.dir of a reid-pipeline run "
            "(runs made before tracklets were recorded cannot be adapted on)"
        )
    latest: dict[tuple[str, int], RunTracklet] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (str(record["camera"]), int(record["track"]))
            crops = tuple(Path(p) for p in record["crops"])
            latest[key] = RunTracklet(
                run, key[0], key[1], float(record["start"]), float(record["end"]), crops
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(
                f"{path}:{number}: not a tracklet record ({exc}); the file may be half-written"
            ) from exc
    if not latest:
        raise DatasetError(f"{path} holds no tracklets: the run saw nobody long enough")
    missing = [p for t in latest.values() for p in t.crops if not p.is_file()]
    if missing:
        raise DatasetError(
            f"{folder}: {len(missing)} crop files are missing (first: {missing[0]}); "
            "the run's tracks/ folder must stay beside tracklets.jsonl"
        )
    overlapping: frozenset[frozenset[str]] = frozenset()
    cameras = folder / CAMERAS
    if cameras.is_file():
        try:
            pairs = json.loads(cameras.read_text())["overlapping"]
            overlapping = frozenset(frozenset(map(str, pair)) for pair in pairs)
        except (ValueError, KeyError, TypeError) as exc:
            raise DatasetError(f"{cameras} is malformed: {exc}") from exc
    identities = _identities(folder)
    ordered = sorted(
        (replace(t, identity=identities.get((t.camera, t.track))) for t in latest.values()),
        key=lambda t: (t.end, t.camera, t.track),
    )
    return RunMaterial(tuple(ordered), overlapping)


def _identities(folder: Path) -> dict[tuple[str, int], str]:
    path = folder / IDENTITIES
    if not path.is_file():
        return {}
    try:
        return {
            (str(r["camera"]), int(r["track"])): str(r["identity"])
            for r in json.loads(path.read_text())
            if r["identity"] is not None
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise DatasetError(f"{path} is malformed: {exc}") from exc


def read_runs(folders: Sequence[str | Path]) -> RunMaterial:
    """Several runs as one body of material (their tracklets never co-occur)."""
    if not folders:
        raise DatasetError("no run folder given")
    parts = [read_run(folder, n) for n, folder in enumerate(folders)]
    return RunMaterial(
        tuple(t for part in parts for t in part.tracklets),
        frozenset(pair for part in parts for pair in part.overlapping),
    )
