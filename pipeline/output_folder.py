"""A run's output folder: its own for the run's life (a lock), never the footage's, and an
earlier run found there moved aside rather than rewritten."""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TextIO

log = logging.getLogger(__name__)
LOCK = ".run.lock"
RUN_MARKERS = (
    "summary.json",
    "events.jsonl",
    "tracklets.jsonl",
    "boxes.txt",
    "mtmc.txt",
    "sightings.jsonl",
)


class OutputFolderError(RuntimeError):
    """The output folder cannot be this run's (another run writes it, or it holds footage)."""


def _held_by_another(folder: Path) -> str | None:
    """The pid written by a live run that holds ``folder``'s lock, else None."""
    lock = folder / LOCK
    if not lock.is_file():
        return None
    with lock.open("r+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return handle.read().strip() or "?"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def keep_previous_run(folder: Path) -> Path | None:
    """If ``folder`` holds an earlier run, move it aside to ``<folder>.<n>`` (the first free
    n) and return where: a new run never rewrites an earlier run's crops or appends to its
    events."""
    if not folder.is_dir() or not any((folder / name).exists() for name in RUN_MARKERS):
        return None
    n = 1
    while folder.with_name(f"{folder.name}.{n}").exists():
        n += 1
    kept = folder.with_name(f"{folder.name}.{n}")
    folder.rename(kept)
    log.warning("%s held an earlier run: kept as %s", folder, kept)
    return kept


def claim(folder: Path, sources: Iterable[str | int] = ()) -> tuple[TextIO, Path | None]:
    """Make ``folder`` this run's: refuse it while another run writes it or when the
    cameras' footage lies in it (moving an earlier run aside would move the videos), move
    an earlier run aside, and hold its lock until the returned handle is closed. Returns
    the lock handle and where an earlier run was kept."""
    folder = folder.resolve()
    for source in sources:
        path = Path(str(source)).resolve()
        if not isinstance(source, int) and (path == folder or folder in path.parents):
            raise OutputFolderError(
                f"outputs.dir {folder} holds camera footage ({path}): a run keeps an earlier "
                "run by moving its folder aside, which would move the footage too. Give "
                "another --out"
            )
    pid = _held_by_another(folder)
    if pid is not None:
        raise OutputFolderError(
            f"outputs.dir {folder} is being written by another run (pid {pid}): give each "
            "run, and each camera group, a folder of its own (--out)"
        )
    previous = keep_previous_run(folder)
    folder.mkdir(parents=True, exist_ok=True)
    handle = (folder / LOCK).open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:  # another run took it between our check and now
        handle.close()
        raise OutputFolderError(f"outputs.dir {folder} was just taken by another run") from exc
    handle.write(str(os.getpid()))
    handle.flush()
    return handle, previous
