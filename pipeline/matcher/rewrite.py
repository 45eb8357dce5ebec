"""One atomic rewrite of identities in Redis (``lua/reassign.lua``): move tracklets between
identities, recompute each touched identity from its tracklets' vectors, retire merged
identities with a ``merged_into`` pointer. Re-association (:mod:`pipeline.matcher.relink`)
and operator corrections (:mod:`pipeline.matcher.corrections`) both describe their change
as a :class:`Rewrite`; a correction also asks the script to snapshot every key it touches,
so the correction can be undone exactly (``lua/undo.lua``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import redis

from pipeline.matcher.codec import pack, unpack
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.keys import Keys
from pipeline.matcher.types import Sighting, Tracklet

REASSIGN_SCRIPT = resources.files("pipeline.matcher").joinpath("lua/reassign.lua").read_text()


@dataclass(frozen=True)
class Recorded:
    """A tracklet as the matcher recorded it: its identity and mean exemplar vector
    (empty when it was recorded without one)."""

    camera_id: str
    track_id: int
    start: float
    end: float
    identity: str
    vector: np.ndarray
    path: np.ndarray | None = None
    rep_feature: np.ndarray | None = None  # representative crop, for attention consistency
    rep_attention: np.ndarray | None = None

    @property
    def ref(self) -> str:
        return f"{self.camera_id}:{self.track_id}"

    def as_tracklet(self) -> Tracklet:
        return Tracklet(
            self.camera_id, self.track_id, self.start, self.end, self.vector[None], path=self.path
        )


def read_recorded(client: redis.Redis, keys: Keys, sightings: Sequence[Sighting]) -> list[Recorded]:
    """The tracklets of ``sightings`` as recorded, with their vectors (empty when recorded
    without one): one pipelined round trip, none for no sightings."""
    pipe = client.pipeline(transaction=False)
    for s in sightings:
        pipe.hmget(keys.tracklet(s.camera_id, s.track_id), "vector", "vector_meta")
    rows = pipe.execute() if sightings else []
    return [
        Recorded(
            s.camera_id,
            s.track_id,
            s.start,
            s.end,
            s.identity,
            np.empty(0) if vector is None else unpack(vector, meta).astype(np.float32),
        )
        for s, (vector, meta) in zip(sightings, rows, strict=True)
    ]


@dataclass
class Rewrite:
    """What changes: ``moves`` (tracklet ref, from, to); ``splits`` new identity -> the one
    it split from; ``merges`` retired identity -> survivor; ``members`` every rewritten
    identity's tracklets afterwards (its exemplars are their vectors)."""

    moves: list[tuple[str, str, str]] = field(default_factory=list)
    splits: dict[str, str] = field(default_factory=dict)
    merges: dict[str, str] = field(default_factory=dict)
    members: dict[str, list[Recorded]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """Record a correction with the rewrite: ``event`` names it; ``fields`` (kind, who,
    when, ...) go to its record and the corrections log."""

    event: str
    fields: dict[str, str]


class Rewriter:
    """Applies :class:`Rewrite` s to one namespace under optimistic concurrency."""

    def __init__(self, client: redis.Redis, keys: Keys, config: MatcherConfig) -> None:
        self.keys, self.config = keys, config
        self._script = client.register_script(REASSIGN_SCRIPT)

    def touched_keys(self, rewrite: Rewrite) -> list[str]:
        """Every key the rewrite changes except the shared ones (version, identities, events):
        what a correction snapshots."""
        names = set(rewrite.members) | set(rewrite.merges)
        keys = [
            key(name)
            for name in sorted(names)
            for key in (self.keys.identity, self.keys.exemplars, self.keys.sightings)
        ]
        for ref, _, _ in sorted(rewrite.moves):
            camera, track = ref.rsplit(":", 1)
            keys.append(self.keys.tracklet(camera, int(track)))
        return keys

    def apply(self, version: int, rewrite: Rewrite, snapshot: Snapshot | None = None) -> str:
        """'ok', or 'retry' when the gallery moved on from ``version`` (nothing written)."""
        keys: list[str] = [self.keys.version, self.keys.identities, self.keys.events]
        blobs: list[bytes] = []

        def key(name: str) -> int:
            keys.append(name)
            return len(keys)

        def blob(data: bytes) -> int:
            blobs.append(data)
            return len(blobs)

        moves = []
        for ref, source, target in rewrite.moves:
            camera, track = ref.rsplit(":", 1)
            moves.append(
                [
                    key(self.keys.tracklet(camera, int(track))),
                    key(self.keys.sightings(source)),
                    key(self.keys.sightings(target)),
                    target,
                ]
            )
        m = self.config.exemplars_per_identity
        identities = []
        for name, members in rewrite.members.items():
            rows = sorted((r for r in members if r.vector.size), key=lambda r: r.end)
            if not rows:
                continue
            features = np.stack([r.vector for r in rows[-m:]])
            centroid = features.mean(axis=0)
            centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
            features_blob, features_meta = pack(features, "float32")
            centroid_blob, centroid_meta = pack(centroid, "float32")
            latest = max(members, key=lambda r: r.end)
            identities.append(
                {
                    "id": name,
                    "kind": "split" if name in rewrite.splits else "relink",
                    "from": rewrite.splits.get(name, ""),
                    "hash": key(self.keys.identity(name)),
                    "exemplars": key(self.keys.exemplars(name)),
                    "sightings": key(self.keys.sightings(name)),
                    "features": blob(features_blob),
                    "features_meta": features_meta,
                    "centroid": blob(centroid_blob),
                    "centroid_meta": centroid_meta,
                    "tracklets": len(members),
                    "last_seen": repr(latest.end),
                    "last_camera": latest.camera_id,
                }
            )
        merges = [
            {
                "id": name,
                "into": into,
                "hash": key(self.keys.identity(name)),
                "exemplars": key(self.keys.exemplars(name)),
                "sightings": key(self.keys.sightings(name)),
            }
            for name, into in rewrite.merges.items()
        ]
        plan: dict = {"moves": moves, "identities": identities, "merges": merges}
        if snapshot is not None:
            plan["correction"] = {
                "record": key(self.keys.correction(snapshot.event)),
                "log": key(self.keys.corrections),
                "event": snapshot.event,
                "snapshot": [key(name) for name in self.touched_keys(rewrite)],
                "ids": sorted(set(rewrite.members) | set(rewrite.merges)),
                "fields": [item for pair in snapshot.fields.items() for item in pair],
            }
        status, _ = self._script(
            keys=keys,
            args=[
                version,
                repr(time.time()),
                int(self.config.retention_s),
                self.config.events_maxlen,
                json.dumps(plan),
                *blobs,
            ],
        )
        return status.decode() if isinstance(status, bytes) else status
