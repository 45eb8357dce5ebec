"""Where a sighting's run folder lies now, under the crops root.

A run records its crops with absolute paths (``<run>/tracks/<camera>_<track>/<n>.jpg``),
but run folders move: the next run into the same ``--out`` keeps the earlier one as
``<out>.<n>``, and operators archive runs by hand. A run folder's ``tracklets.jsonl`` lists
every tracklet it recorded, and track ids are unique within a namespace (each run has its
own session), so the folder under the root whose ``tracklets.jsonl`` holds the sighting's
(camera, track) and whose ``tracks/`` has its crops is the sighting's run folder, wherever
it went. A copy of crops without the run's records is not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

DEPTH = 2  # run folders looked for at the root, one and two levels under it
T = TypeVar("T")


def track_times(path: Path) -> dict[tuple[str, int], tuple[float, float]]:
    """(camera, track) -> start and end (s) of each tracklet in a run's tracklets.jsonl."""
    times: dict[tuple[str, int], tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        record = json.loads(line) if line.strip() else {}
        if "camera" in record:
            times[record["camera"], int(record["track"])] = (record["start"], record["end"])
    return times


@lru_cache(maxsize=16)
def _parsed_once(parse: Callable[[Path], T], path: str, size: int, modified_ns: int) -> T:
    return parse(Path(path))


def parsed(path: Path, parse: Callable[[Path], T]) -> T:
    """``parse(path)``, parsed again only when the file's size or modification time
    changes (a run still writing it): a clip request does not re-read a whole run."""
    stat = path.stat()
    return _parsed_once(parse, str(path), stat.st_size, stat.st_mtime_ns)


def holds(run: Path, camera: str, track: int) -> bool:
    """Whether ``run`` is the run folder that recorded tracklet ``camera:track``."""
    records = run / "tracklets.jsonl"
    if not (run / "tracks" / f"{camera}_{track}").is_dir() or not records.is_file():
        return False
    try:
        return (camera, track) in parsed(records, track_times)
    except (OSError, ValueError, KeyError):  # a cut or foreign file: not a run's records
        return False


def _run_folders(root: Path) -> Iterator[Path]:
    level = [root]
    for _ in range(DEPTH + 1):
        yield from level
        level = [child for folder in level for child in sorted(folder.iterdir()) if child.is_dir()]


# recorded run folder -> where it was last found: a page shows many crops of a moved run,
# and each would otherwise walk the root again (checked with holds() before it is used)
_moved_to: dict[Path, Path] = {}


def run_folder(camera: str, track: int, recorded: Path, root: Path) -> Path | None:
    """The run folder under ``root`` of tracklet ``camera:track`` whose crop was recorded
    at ``recorded``: the folder it was recorded in if that is still it, else the one it
    was moved to; None if neither lies under ``root``."""
    where = recorded.parents[2] if len(recorded.parents) > 2 else None
    if where is not None and where.is_relative_to(root) and holds(where, camera, track):
        return where
    known = _moved_to.get(where) if where is not None else None
    if known is not None and known.is_relative_to(root) and holds(known, camera, track):
        return known
    found = next((run for run in _run_folders(root) if holds(run, camera, track)), None)
    if found is not None and where is not None:
        _moved_to[where] = found
    return found
