"""Which files ``/api/crop`` serves: crop images that the namespace's records reference.

A run writes each tracklet's crops to ``<run>/tracks/<camera>_<track>/`` and records their
paths with the tracklet's sighting, so a crop's folder names the one sighting to ask. A file
is served only when that sighting lists it and it lies under the crops root (where it was
recorded, or where its run folder was moved): a stray image under the root, a run the
namespace never saw, or one more file dropped into a tracks folder is not, whatever its
name.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.query.run_folders import run_folder
from pipeline.query.service import QueryError, QueryService

CROP_TYPES = {".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".png": "image/png"}


class NoSuchCrop(LookupError):
    """Not a crop this server serves."""


def _resolved(path: str) -> Path | None:
    try:
        return Path(path).resolve()
    except (ValueError, OSError):  # NUL bytes, loops: not a crop either
        return None


def recorded(service: QueryService, file: Path) -> tuple[str, int] | None:
    """The (camera, track) whose tracks folder holds ``file``, if that sighting lists it."""
    camera, _, track = file.parent.name.rpartition("_")
    if file.parent.parent.name != "tracks" or not camera:
        return None
    try:
        sighting = service.sighting(camera, int(track))
    except (ValueError, QueryError):
        return None
    listed = any(_resolved(crop) == file for crop in sighting.crops)
    return (camera, int(track)) if listed else None


def crop_file(service: QueryService, root: Path | None, path: str) -> tuple[Path, str]:
    """The file of crop ``path`` and its media type; :class:`NoSuchCrop` unless its sighting
    records it and it lies under ``root``, where it was recorded or in the folder its run
    was moved to (:mod:`pipeline.query.run_folders`)."""
    file = _resolved(path)
    kind = CROP_TYPES.get(file.suffix.lower()) if file is not None else None
    if file is None or kind is None or root is None:
        raise NoSuchCrop(path)
    owner = recorded(service, file)
    if owner is None:
        raise NoSuchCrop(path)
    run = run_folder(*owner, file, root)
    moved = run / file.relative_to(file.parents[2]) if run is not None else None
    if moved is None or not moved.is_file():
        raise NoSuchCrop(path)
    return moved, kind
