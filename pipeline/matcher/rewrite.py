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

import numpy as np

from pipeline.matcher.codec import (
    RECORD_FIELDS,
    Exemplars,
    Recorded,
    centroid,
    decode_record,
    encode_exemplars,
    track_ref,
)
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.store import Store
from pipeline.matcher.types import Sighting


def read_recorded(store: Store, sightings: Sequence[Sighting]) -> list[Recorded]:
    """The tracklets of ``sightings`` as recorded (vectors, paths, representative crops):
    one pipelined round trip, none for no sightings. An expired record reads as the
    sighting with an empty vector."""
    pipe = store.redis.pipeline(transaction=False)
    for s in sightings:
        pipe.hmget(store.keys.tracklet(s.camera_id, s.track_id), *RECORD_FIELDS)
    rows = pipe.execute() if sightings else []
    found = []
    for s, row in zip(sightings, rows, strict=True):
        recorded = decode_record(track_ref(s.camera_id, s.track_id), row)
        found.append(
            recorded or Recorded(s.camera_id, s.track_id, s.start, s.end, s.identity, np.empty(0))
        )
    return found


def member_exemplars(members: Sequence[Recorded], m: int) -> Exemplars | None:
    """An identity's exemplars rebuilt from its tracklets (the latest ``m``): each one's
    representative crop, feature *and* projections, when every one of them has one of one
    shape (so attention consistency keeps scoring the identity); else their mean vectors,
    feature only. None when no member has a vector."""
    rows = sorted((r for r in members if r.vector.size), key=lambda r: r.end)[-m:]
    if not rows:
        return None
    reps = [r for r in rows if r.rep_feature is not None and r.rep_attention is not None]
    shapes = {r.rep_attention.shape for r in reps if r.rep_attention is not None}
    if len(reps) == len(rows) and len(shapes) == 1:
        return Exemplars(
            np.stack([r.rep_feature for r in reps if r.rep_feature is not None]),
            np.stack([r.rep_attention for r in reps if r.rep_attention is not None]),
        )
    return Exemplars(np.stack([r.vector for r in rows]), None)


@dataclass
class Rewrite:
    """What changes: ``moves`` (tracklet ref, from, to); ``splits`` new identity -> the one
    it split from; ``merges`` retired identity -> survivor; ``members`` every rewritten
    identity's tracklets afterwards (its exemplars come from them, :func:`member_exemplars`)."""

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

    def __init__(self, store: Store, config: MatcherConfig) -> None:
        self.store, self.keys, self.config = store, store.keys, config

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
        identities = []
        for name, members in rewrite.members.items():
            exemplars = member_exemplars(members, self.config.exemplars_per_identity)
            if exemplars is None:
                continue
            features_blob, features_meta, attention_blob, attention_meta = encode_exemplars(
                exemplars
            )
            centroid_blob, centroid_meta = centroid(exemplars.features)
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
                    "attention": blob(attention_blob) if attention_meta else 0,
                    "attention_meta": attention_meta,
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
        status, _ = self.store.reassign(
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
