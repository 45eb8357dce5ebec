"""The review page's gallery: identities most recently updated first, with a thumbnail per
camera, filtered by camera, footage time and "seen in more than one camera".

Pages walk the identities ZSET by rank from an opaque cursor (``<score>|<identity>``), so a
page costs O(log N + page) in Redis whatever the gallery's size. Filters need each
identity's sightings, read in pipelined chunks; a page examines at most ``scan_budget``
identities and then answers with what it found and a cursor to go on from, so a filter
that matches rarely still answers quickly at 100k identities.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.matcher import IdentityReader, Sighting
from pipeline.matcher.codec import decode_sighting
from pipeline.matcher.reader import as_text

CHUNK = 200


class CursorError(ValueError):
    """A gallery cursor that this module did not write."""


@dataclass(frozen=True)
class GalleryFilter:
    """``camera``: seen by it; ``since``/``until``: a sighting overlaps that footage time
    span (s); ``multi_camera``: seen by two cameras or more."""

    camera: str | None = None
    since: float | None = None
    until: float | None = None
    multi_camera: bool = False

    @property
    def is_open(self) -> bool:
        return self == GalleryFilter()

    def admits(self, trajectory: Sequence[Sighting]) -> bool:
        cameras = {s.camera_id for s in trajectory}
        if not trajectory or (self.multi_camera and len(cameras) < 2):
            return False
        if self.camera is not None and self.camera not in cameras:
            return False
        return any(
            (self.since is None or s.end >= self.since)
            and (self.until is None or s.start <= self.until)
            for s in trajectory
        )


def summary(identity: str, trajectory: Sequence[Sighting], updated: float | None = None) -> dict:
    """One gallery row: cameras in order of first sighting, times, and per camera the first
    (best) crop of its longest sighting."""
    longest: dict[str, Sighting] = {}
    for s in trajectory:
        best = longest.get(s.camera_id)
        if s.crops and (best is None or s.end - s.start > best.end - best.start):
            longest[s.camera_id] = s
    cameras = list(dict.fromkeys(s.camera_id for s in trajectory))
    thumbnails = {c: longest[c].crops[0] for c in cameras if c in longest}
    return {
        "identity": identity,
        "updated": updated,
        "sightings": len(trajectory),
        "cameras": cameras,
        "first_seen": min((s.start for s in trajectory), default=None),
        "last_seen": max((s.end for s in trajectory), default=None),
        "thumbnail": next(iter(thumbnails.values()), None),
        "thumbnails": thumbnails,
    }


def trajectories(reader: IdentityReader, names: Iterable[str]) -> dict[str, list[Sighting]]:
    """Sightings of each identity, one pipelined round trip."""
    names = list(names)
    pipe = reader.redis.pipeline(transaction=False)
    for name in names:
        pipe.zrange(reader.keys.sightings(name), 0, -1)
    replies = reader.store.call(pipe.execute) if names else []
    return {
        name: [decode_sighting(name, m) for m in members]
        for name, members in zip(names, replies, strict=True)
    }


def _start(reader: IdentityReader, cursor: str | None) -> int:
    """The rank (most recent first) a page after ``cursor`` starts at."""
    if not cursor:
        return 0
    score, bar, identity = cursor.partition("|")
    try:
        value = float(score)
    except ValueError:
        value = math.nan
    if not bar or not math.isfinite(value):  # nan would reach Redis as a range bound
        raise CursorError(
            f"{cursor!r} is not one this gallery gave out (<score>|<identity>: a page's next)"
        )
    key = reader.keys.identities
    pipe = reader.redis.pipeline(transaction=True)
    pipe.zrevrank(key, identity)
    pipe.zscore(key, identity)
    pipe.zcount(key, f"({value!r}", "+inf")
    rank, current, higher = reader.store.call(pipe.execute)
    if rank is not None and current == value:
        return rank + 1
    return higher  # the cursor's identity moved on since: go on from its old score


def gallery_page(
    reader: IdentityReader,
    filters: GalleryFilter = GalleryFilter(),
    cursor: str | None = None,
    limit: int = 50,
    scan_budget: int = 2000,
) -> dict[str, Any]:
    """Up to ``limit`` rows after ``cursor``: ``{"rows", "next", "scanned", "total"}``;
    ``next`` is None at the end of the gallery."""
    rank = _start(reader, cursor)
    rows: list[dict] = []
    scanned, last = 0, None
    budget = max(scan_budget, limit)
    while len(rows) < limit and scanned < budget:
        # unfiltered, nearly every identity makes a row: read no more than the page needs
        size = min(CHUNK, budget - scanned, limit - len(rows) if filters.is_open else CHUNK)
        chunk = reader.store.call(
            reader.redis.zrevrange, reader.keys.identities, rank, rank + size - 1, True
        )
        if not chunk:
            break
        found = trajectories(reader, (as_text(n) for n, _ in chunk))
        for name, score in chunk:
            scanned, rank = scanned + 1, rank + 1
            identity = as_text(name)
            last = f"{float(score)!r}|{identity}"
            if filters.admits(found[identity]):
                rows.append(summary(identity, found[identity], float(score)))
                if len(rows) == limit:
                    break
    total = reader.store.call(reader.redis.zcard, reader.keys.identities)
    more = last is not None and rank < total
    return {"rows": rows, "next": last if more else None, "scanned": scanned, "total": total}
