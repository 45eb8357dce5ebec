"""The write side of the matcher's Redis state: the in-process candidate index mirrored
from the events stream, the candidates' exemplars, and the atomic commit of a decision.

A decision costs three Redis round trips: (1) in one MULTI/EXEC, the gallery version, the
events since the last sync (mirrored into the in-process :class:`IdentityIndex`) and the
tracklets' records; (2) the exemplars and sightings of the candidates; (3) the
``commit.lua`` script, which writes only if the gallery version is the one the decision
expected. Otherwise the matcher re-syncs and decides again, so concurrent matchers never
link against a stale gallery, and a tracklet is recorded once however often it is submitted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from pipeline.matcher.codec import (
    Exemplars,
    centroid,
    decode_exemplars,
    decode_sighting,
    encode_exemplars,
    encode_sighting,
    identity_id,
    record_args,
    unpack,
)
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.index import IdentityIndex
from pipeline.matcher.reader import as_text
from pipeline.matcher.store import Store
from pipeline.matcher.types import Sighting, Tracklet

log = logging.getLogger(__name__)

SYNC_BATCH = 10_000
PRUNE_EVERY_S = 60.0  # how often (at most) the index looks for identities Redis expired


class Gallery:
    """Identities as the matcher sees them: candidate search, exemplars, atomic commits.

    Args:
        store: the namespace's Redis state.
        config: exemplar count, retention, index size.
    """

    def __init__(self, store: Store, config: MatcherConfig) -> None:
        self.store, self.config = store, config
        self.redis, self.keys = store.redis, store.keys
        self.index = IdentityIndex(self.config.index_dim)
        self.round_trips = 0
        self.feature_dim: int | None = None  # the namespace's, once a run recorded it
        self.rewinds = 0  # times the gallery version went back (cleared, or a restore)
        self._cursor = "0-0"
        self._version = 0
        self._updated: dict[str, float] = {}  # identity -> last update seen (unix s)
        self._prune_every = min(PRUNE_EVERY_S, self.config.retention_s)
        self._next_prune = time.time() + self._prune_every
        self.store.call(self._bootstrap)

    @property
    def version(self) -> int:
        """The gallery version this process has mirrored."""
        return self._version

    def _bootstrap(self) -> None:
        """Load every live identity's centroid; events after the cursor are applied later."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xrevrange(self.keys.events, count=1)
        pipe.get(self.keys.version)
        pipe.zrange(self.keys.identities, 0, -1, withscores=True)
        last, version, ids = pipe.execute()
        self.round_trips += 1
        self._cursor = as_text(last[0][0]) if last else "0-0"
        self._version = int(version or 0)
        self.index = IdentityIndex(self.config.index_dim)
        self._updated = {as_text(i): float(score) for i, score in ids}
        names = list(self._updated)
        for start in range(0, len(names), 1000):
            chunk = names[start : start + 1000]
            pipe = self.redis.pipeline(transaction=False)
            for name in chunk:
                pipe.hmget(self.keys.identity(name), "centroid", "centroid_meta")
            found = [
                (n, unpack(b, m))
                for n, (b, m) in zip(chunk, pipe.execute(), strict=True)
                if b is not None
            ]
            if found:
                self.index.upsert_many([n for n, _ in found], np.stack([c for _, c in found]))
            self.round_trips += 1

    def _apply_events(self, events: list[tuple[bytes, dict[bytes, bytes]]]) -> bool:
        """Mirror events into the index; False when one was missed (stream trimmed)."""
        for event_id, fields in events:
            version = int(fields[b"version"])
            if version <= self._version:
                continue  # already applied (our own commit, or a bootstrap overlap)
            if version != self._version + 1:
                return False
            identity = fields[b"identity"].decode()
            if fields[b"type"] == b"merge":
                self.index.remove(identity)
                self._updated.pop(identity, None)
            else:
                self.index.upsert(identity, unpack(fields[b"centroid"], fields[b"centroid_meta"]))
                self._updated[identity] = int(event_id.split(b"-")[0]) / 1000  # stream time
            self._version = version
            self._cursor = event_id.decode()
        return True

    def sync(self, tracklets: Sequence[Tracklet]) -> list[dict[bytes, bytes]]:
        """Round trip 1: catch up with other matchers; the tracklets' records ({} if none)."""
        while True:
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(self.keys.version)
            pipe.xrange(self.keys.events, min=f"({self._cursor}", count=SYNC_BATCH)
            pipe.hget(self.keys.model, "dim")
            for tracklet in tracklets:
                pipe.hgetall(self.keys.tracklet(tracklet.camera_id, tracklet.track_id))
            version, events, dim, *records = pipe.execute()
            self.round_trips += 1
            self.feature_dim = None if dim is None else int(dim)
            if not self._apply_events(events):
                log.warning("events stream was trimmed past this matcher; reloading the index")
                self._bootstrap()
                continue
            if int(version or 0) < self._version:
                # cleared, expired, or restored from an older snapshot: what this process
                # mirrored is ahead of Redis, so reload instead of failing every commit
                log.warning(
                    "gallery version went back from %d to %d (namespace cleared or Redis "
                    "restored from an older snapshot); reloading the index",
                    self._version,
                    int(version or 0),
                )
                self.rewinds += 1
                self._bootstrap()
                continue
            if len(events) < SYNC_BATCH:
                self._forget_expired()
                return records

    def _forget_expired(self) -> None:
        """Drop from the index the identities Redis has expired (no update within
        ``retention_s``): they would take top-k places from live ones. Checked with Redis,
        so a clock that runs ahead never drops a live identity."""
        now = time.time()
        if now < self._next_prune:
            return
        self._next_prune = now + self._prune_every
        stale = [i for i, t in self._updated.items() if t < now - self.config.retention_s]
        if not stale:
            return
        pipe = self.redis.pipeline(transaction=False)
        for identity in stale:
            pipe.exists(self.keys.identity(identity))
        self.round_trips += 1
        for identity, alive in zip(stale, pipe.execute(), strict=True):
            if not alive:
                self.index.remove(identity)
                del self._updated[identity]

    def fetch(self, identities: list[str]) -> tuple[list[Exemplars | None], list[list[Sighting]]]:
        """Round trip 2: exemplars and sightings of ``identities``."""
        pipe = self.redis.pipeline(transaction=False)
        for identity in identities:
            pipe.hgetall(self.keys.exemplars(identity))
            pipe.zrange(self.keys.sightings(identity), 0, -1)
        replies = pipe.execute() if identities else []
        self.round_trips += 1 if identities else 0
        exemplars: list[Exemplars | None] = []
        sightings = []
        for identity, raw, members in zip(identities, replies[::2], replies[1::2], strict=True):
            found = decode_exemplars(raw)
            if found is None:  # expired since the index saw it: forget it
                self.index.remove(identity)
                self._updated.pop(identity, None)
            exemplars.append(found)
            sightings.append([decode_sighting(identity, m) for m in members])
        return exemplars, sightings

    def merge(self, old: Exemplars | None, tracklet: Tracklet) -> Exemplars:
        """The identity's exemplars after adding the tracklet's: the most recent M."""
        m = self.config.exemplars_per_identity
        feats = tracklet.features
        att = tracklet.projections
        if len(feats) > m:  # evenly spaced over the track
            keep = np.linspace(0, len(feats) - 1, m).round().astype(int)
            feats, att = feats[keep], None if att is None else att[keep]
        if old is not None:
            feats = np.concatenate([old.features, feats])[-m:]
            if (
                old.projections is not None
                and att is not None
                and old.projections.shape[1:] == att.shape[1:]
            ):
                att = np.concatenate([old.projections.astype(np.float32), att])[-m:]
            else:
                att = None
        return Exemplars(feats, att)

    def new_identity_id(self, tracklet: Tracklet) -> str:
        """Deterministic: the same first tracklet always founds the same identity id."""
        return identity_id(f"{self.keys.namespace}|{tracklet.ref}|{tracklet.start!r}")

    def commit(
        self,
        tracklet: Tracklet,
        identity: str,
        action: str,
        exemplars: Exemplars,
        distance: float | None,
        expected: int,
    ) -> list[str]:
        """Round trip 3 (``lua/commit.lua``): ``[identity, outcome]``, outcome the action, or
        ``retry`` / ``conflict`` / ``duplicate``."""
        keys = self.keys
        result = self.store.commit(
            keys=[
                keys.version,
                keys.identities,
                keys.identity(identity),
                keys.exemplars(identity),
                keys.sightings(identity),
                keys.tracklet(tracklet.camera_id, tracklet.track_id),
                keys.events,
                keys.tracklets,
                keys.tracklets_seen,
            ],
            args=[
                expected,
                identity,
                action,
                tracklet.camera_id,
                tracklet.track_id,
                repr(tracklet.start),
                repr(tracklet.end),
                encode_sighting(tracklet),
                *encode_exemplars(exemplars),
                *centroid(exemplars.features),
                "" if distance is None else repr(distance),
                repr(time.time()),
                int(self.config.retention_s),
                self.config.events_maxlen,
                *record_args(tracklet),
            ],
        )
        self.round_trips += 1
        return [as_text(v) for v in result]

    def similar(self, features: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """Identities most similar to ``features`` ``[K, D]`` (L2-normalised), with the best
        exemplar cosine similarity, most similar first (for search by image)."""
        self.store.call(self.sync, ())
        names = self.index.search(features, k)
        exemplars, _ = self.store.call(self.fetch, names)
        scored = [
            (name, float((features @ ex.features.T).max()))
            for name, ex in zip(names, exemplars, strict=True)
            if ex is not None
        ]
        return sorted(scored, key=lambda item: -item[1])
