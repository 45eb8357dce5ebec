"""Cross-camera identity linking with all state in Redis.

A decision costs three Redis round trips: (1) in one MULTI/EXEC, the gallery version, the
events since the last sync (mirrored into the in-process :class:`IdentityIndex`) and the
tracklet's record; (2) the exemplars and sightings of the top-k candidates; (3) the
``commit.lua`` script, which writes only if the gallery version is still the one the
decision saw. Otherwise the matcher re-syncs and decides again, so concurrent matchers never
link against a stale gallery, and a tracklet is recorded once however often it is submitted.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np
import redis
from scipy.optimize import linear_sum_assignment

from pipeline.matcher.association import cannot_link_pairs, tracklet_vectors
from pipeline.matcher.codec import decode_sighting, encode_sighting, pack, unpack
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.connection import RETRY_ERRORS, RedisUnavailable, connect
from pipeline.matcher.gates import rejection
from pipeline.matcher.index import IdentityIndex
from pipeline.matcher.keys import Keys
from pipeline.matcher.relink import Reassociator, RelinkReport
from pipeline.matcher.types import Decision, Sighting, Tracklet
from reid.runtime.pair_scoring import AttentionScorer, combine

log = logging.getLogger(__name__)

COMMIT_SCRIPT = resources.files("pipeline.matcher").joinpath("lua/commit.lua").read_text()
SYNC_BATCH = 10_000


class MatcherBusy(RuntimeError):
    """Commits kept losing to concurrent matchers for ``max_retries`` attempts."""


@dataclass
class Exemplars:
    features: np.ndarray  # [M, D] float32
    attention: np.ndarray | None  # [M, r, h, w] or None


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class Matcher:
    """Links tracklets into global identities stored in Redis.

    Args:
        redis_url: ``redis://`` / ``rediss://`` / ``unix://`` URL; None starts the embedded
            server (:func:`pipeline.matcher.connection.connect`).
        namespace: key namespace (several deployments can share one Redis).
        config: thresholds, gates and retention; None uses :class:`MatcherConfig` defaults.
        scorer: attention-consistency scorer (numpy, ``ConsistencyScorer.to_numpy()``) for
            tracklets that carry attention; without it matching is feature-only.
        client: an existing redis-py client (takes precedence over ``redis_url``).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str = "reid",
        config: MatcherConfig | None = None,
        scorer: AttentionScorer | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.config = config or MatcherConfig()
        self.redis = client if client is not None else connect(redis_url)
        self.keys = Keys(namespace)
        self.scorer = scorer
        self._commit = self.redis.register_script(COMMIT_SCRIPT)
        self.index = IdentityIndex(self.config.index_dim)
        self.round_trips = 0
        self._cursor = "0-0"
        self._version = 0
        self.call_with_retry(self._bootstrap)

    # -- Redis plumbing ------------------------------------------------------------------
    def call_with_retry(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` with retries while Redis is unreachable (redis-py retries each command
        briefly; this outer loop rides out restarts of up to about a minute)."""
        delay = 0.1
        for attempt in range(12):
            try:
                return fn(*args)
            except RETRY_ERRORS as exc:
                if attempt == 11:
                    raise RedisUnavailable(f"Redis unavailable after retries: {exc}") from exc
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)
        raise AssertionError("unreachable")

    def _bootstrap(self) -> None:
        """Load every live identity's centroid; events after the cursor are applied later."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.xrevrange(self.keys.events, count=1)
        pipe.get(self.keys.version)
        pipe.zrange(self.keys.identities, 0, -1)
        last, version, ids = pipe.execute()
        self.round_trips += 1
        self._cursor = _text(last[0][0]) if last else "0-0"
        self._version = int(version or 0)
        self.index = IdentityIndex(self.config.index_dim)
        names = [_text(i) for i in ids]
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
            else:
                self.index.upsert(identity, unpack(fields[b"centroid"], fields[b"centroid_meta"]))
            self._version = version
            self._cursor = event_id.decode()
        return True

    def _sync_index(self) -> None:
        self._sync(())

    def _sync(self, tracklets: Sequence[Tracklet]) -> list[dict[bytes, bytes]]:
        """Round trip 1: catch up with other matchers; the tracklets' records ({} if none)."""
        while True:
            pipe = self.redis.pipeline(transaction=True)
            pipe.get(self.keys.version)
            pipe.xrange(self.keys.events, min=f"({self._cursor}", count=SYNC_BATCH)
            for tracklet in tracklets:
                pipe.hgetall(self.keys.tracklet(tracklet.camera_id, tracklet.track_id))
            version, events, *records = pipe.execute()
            self.round_trips += 1
            if not self._apply_events(events):
                log.warning("events stream was trimmed past this matcher; reloading the index")
                self._bootstrap()
                continue
            if int(version or 0) == 0 and self._version > 0:
                self._bootstrap()  # the namespace expired or was cleared
                continue
            if len(events) < SYNC_BATCH:
                return records

    def _fetch(self, identities: list[str]) -> tuple[list[Exemplars | None], list[list[Sighting]]]:
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
            if not raw:
                exemplars.append(None)  # expired since the index saw it
            else:
                attention = (
                    unpack(raw[b"attention"], raw[b"attention_meta"])
                    if b"attention" in raw
                    else None
                )
                exemplars.append(
                    Exemplars(unpack(raw[b"features"], raw[b"features_meta"]), attention)
                )
            sightings.append([decode_sighting(identity, m) for m in members])
        return exemplars, sightings

    # -- decisions -----------------------------------------------------------------------
    def _distances(self, tracklet: Tracklet, candidates: list[Exemplars]) -> list[float]:
        """Combined distance of ``tracklet`` to each candidate (best exemplar pair)."""
        pairs, feature_d = [], []
        for ex in candidates:
            sims = tracklet.features @ ex.features.T
            i, j = np.unravel_index(int(np.argmax(sims)), sims.shape)
            pairs.append((int(i), int(j)))
            feature_d.append(float(np.clip((1.0 - sims[i, j]) / 2.0, 0.0, 1.0)))
        w = self.config.attention_weight
        usable = [
            n
            for n, ex in enumerate(candidates)
            if ex.attention is not None
            and tracklet.attention is not None
            and ex.attention.shape[1:] == tracklet.attention.shape[1:]
        ]
        if w == 0.0 or self.scorer is None or not usable:
            return feature_d
        attention_d = self.scorer.distance(
            np.stack([tracklet.features[pairs[n][0]] for n in usable]),
            np.stack([tracklet.attention[pairs[n][0]] for n in usable]),
            np.stack([candidates[n].features[pairs[n][1]] for n in usable]),
            np.stack([candidates[n].attention[pairs[n][1]] for n in usable]),
        )
        combined = list(feature_d)
        for n, d in zip(
            usable, combine(np.array([feature_d[n] for n in usable]), attention_d, w), strict=True
        ):
            combined[n] = float(d)
        return combined

    def _merge(self, old: Exemplars | None, tracklet: Tracklet) -> Exemplars:
        """The identity's exemplars after adding the tracklet's: the most recent M."""
        m = self.config.exemplars_per_identity
        feats = tracklet.features
        att = tracklet.attention
        if len(feats) > m:  # evenly spaced over the track
            keep = np.linspace(0, len(feats) - 1, m).round().astype(int)
            feats, att = feats[keep], None if att is None else att[keep]
        if old is not None:
            same_att = (
                old.attention is not None
                and att is not None
                and old.attention.shape[1:] == att.shape[1:]
            )
            feats = np.concatenate([old.features, feats])[-m:]
            att = np.concatenate([old.attention.astype(np.float32), att])[-m:] if same_att else None
        return Exemplars(feats, att)

    def new_identity_id(self, tracklet: Tracklet) -> str:
        """Deterministic: the same first tracklet always founds the same identity id."""
        seed = f"{self.keys.namespace}|{tracklet.ref}|{tracklet.start!r}"
        return "p" + hashlib.sha1(seed.encode()).hexdigest()[:12]

    def _commit_plan(
        self,
        tracklet: Tracklet,
        identity: str,
        action: str,
        exemplars: Exemplars,
        distance: float | None,
        expected: int,
    ) -> list[str]:
        centroid = exemplars.features.mean(axis=0)
        centroid /= max(float(np.linalg.norm(centroid)), 1e-12)
        features, features_meta = pack(exemplars.features, "float32")
        attention, attention_meta = (
            pack(exemplars.attention, "float16") if exemplars.attention is not None else (b"", "")
        )
        centroid_blob, centroid_meta = pack(centroid, "float32")
        keys = self.keys
        result = self._commit(
            keys=[
                keys.version,
                keys.identities,
                keys.identity(identity),
                keys.exemplars(identity),
                keys.sightings(identity),
                keys.tracklet(tracklet.camera_id, tracklet.track_id),
                keys.events,
                keys.tracklets,
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
                features,
                features_meta,
                attention,
                attention_meta,
                centroid_blob,
                centroid_meta,
                "" if distance is None else repr(distance),
                repr(time.time()),
                int(self.config.retention_s),
                self.config.events_maxlen,
                *pack(tracklet_vectors([tracklet])[0], "float32"),
                f"{tracklet.camera_id}:{tracklet.track_id}",
                *(pack(tracklet.path, "float32") if tracklet.path is not None else (b"", "")),
            ],
        )
        self.round_trips += 1
        return [_text(v) for v in result]

    def _admissible(
        self,
        tracklet: Tracklet,
        exemplars: list[Exemplars | None],
        sightings: list[list[Sighting]],
    ) -> list[tuple[int, float]]:
        """Candidates ``(position, distance)`` within ``link_threshold`` that the gates allow."""
        live = [n for n, ex in enumerate(exemplars) if ex is not None]
        distances = self._distances(tracklet, [exemplars[n] for n in live])
        admissible = []
        for n, d in zip(live, distances, strict=True):
            if d > self.config.link_threshold:
                continue
            reason = rejection(tracklet, sightings[n], self.config)
            if reason is None:
                admissible.append((n, d))
            else:
                log.debug("%s not linked to candidate %d (d=%.3f): %s", tracklet.ref, n, d, reason)
        return admissible

    def _plan_update(self, tracklet: Tracklet, record: dict[bytes, bytes]) -> Decision | tuple:
        identity = record[b"identity"].decode()
        if tracklet.end <= float(record[b"end"]):
            return Decision(identity, "duplicate")
        (old,), _ = self._fetch([identity])
        return (identity, "update", self._merge(old, tracklet), None, 1)

    def _execute(self, tracklet: Tracklet, plan: tuple, expected: int) -> Decision | None:
        identity, action, merged, distance, considered = plan
        got, outcome = self._commit_plan(tracklet, identity, action, merged, distance, expected)
        if outcome in ("retry", "conflict"):
            return None
        if outcome == "duplicate":
            return Decision(got, "duplicate")
        return Decision(got, outcome, distance, considered)

    def _decide_once(self, tracklet: Tracklet) -> Decision | None:
        (record,) = self._sync([tracklet])
        if record:
            plan = self._plan_update(tracklet, record)
            if isinstance(plan, Decision):
                return plan
        else:
            names = self.index.search(tracklet.features, self.config.top_k)
            exemplars, sightings = self._fetch(names)
            admissible = self._admissible(tracklet, exemplars, sightings)
            if not admissible:
                plan = (
                    self.new_identity_id(tracklet),
                    "new_identity",
                    self._merge(None, tracklet),
                    None,
                    len(names),
                )
            else:
                n, d = min(admissible, key=lambda item: item[1])
                plan = (names[n], "link", self._merge(exemplars[n], tracklet), d, len(names))
        return self._execute(tracklet, plan, self._version)

    def _decide_jointly(self, group: Sequence[Tracklet]) -> list[Decision | None]:
        """One assignment for tracklets that finished together (Hungarian): each links to at
        most one admissible identity, no identity takes two of them, founding a new identity
        costs ``link_threshold``. Commits go in one by one, each expecting the version its
        predecessor left; whatever a rival's commit interrupts is left None (decided alone)."""
        records = self._sync(group)
        fresh = [n for n, record in enumerate(records) if not record]
        results: list[Decision | None] = [None] * len(group)
        if len(fresh) < 2:
            return results
        names = list(
            dict.fromkeys(
                name
                for n in fresh
                for name in self.index.search(group[n].features, self.config.top_k)
            )
        )
        exemplars, sightings = self._fetch(names)
        blocked = 1e6  # "not allowed" (linear_sum_assignment wants finite costs)
        cost = np.full((len(fresh), len(names) + len(fresh)), blocked)
        for row, n in enumerate(fresh):
            for col, d in self._admissible(group[n], exemplars, sightings):
                cost[row, col] = d
            cost[row, len(names) + row] = self.config.link_threshold
        rows, cols = linear_sum_assignment(cost)
        expected = self._version
        for row, col in zip(rows, cols, strict=True):
            tracklet = group[fresh[row]]
            if col >= len(names):
                plan = (
                    self.new_identity_id(tracklet),
                    "new_identity",
                    self._merge(None, tracklet),
                    None,
                    len(names),
                )
            else:
                plan = (
                    names[col],
                    "link",
                    self._merge(exemplars[col], tracklet),
                    float(cost[row, col]),
                    len(names),
                )
            decision = self._execute(tracklet, plan, expected)
            if decision is None:
                break
            results[fresh[row]] = decision
            expected += 1
        return results

    def decide_many(self, tracklets: Sequence[Tracklet]) -> list[Decision]:
        """Decide tracklets that end within ``joint_window_s`` of each other and are certainly
        different people (seen at once in one camera or in cameras that do not overlap, so
        one identity cannot take two of them) jointly (:meth:`_decide_jointly`); the rest,
        updates and whatever a rival interrupts one by one."""
        order = sorted(range(len(tracklets)), key=lambda n: tracklets[n].end)
        decisions: dict[int, Decision] = {}
        group: list[int] = []
        window = self.config.joint_window_s

        def flush() -> None:
            members = [tracklets[n] for n in group]
            apart = {(int(a), int(b)) for a, b in cannot_link_pairs(members, self.config)}
            together: list[int] = []
            for k in range(len(group)):
                if all((m, k) in apart for m in together):
                    together.append(k)
            if len(together) > 1 and window > 0:
                joint = self.call_with_retry(self._decide_jointly, [members[k] for k in together])
                decisions.update({group[k]: d for k, d in zip(together, joint, strict=True) if d})
            for n in group:
                if n not in decisions:
                    decisions[n] = self.decide(tracklets[n])
            group.clear()

        for n in order:
            if group and tracklets[n].end - tracklets[group[0]].end > window:
                flush()
            group.append(n)
        flush()
        return [decisions[n] for n in range(len(tracklets))]

    def decide(self, tracklet: Tracklet) -> Decision:
        """Link ``tracklet`` to an identity (or found one) and record it atomically."""
        for attempt in range(self.config.max_retries):
            decision = self.call_with_retry(self._decide_once, tracklet)
            if decision is not None:
                return decision
            time.sleep(random.uniform(0, 0.002 * min(attempt, 10)))  # de-synchronise rivals
        raise MatcherBusy(
            f"tracklet {tracklet.ref!r}: {self.config.max_retries} commits lost to "
            "concurrent matchers; raise matcher.max_retries or add Redis capacity"
        )

    def submit(self, tracklet: Tracklet) -> str:
        """The identity id ``tracklet`` now belongs to."""
        return self.decide(tracklet).identity

    # -- queries -------------------------------------------------------------------------
    def similar(self, features: np.ndarray, k: int = 10) -> list[tuple[str, float]]:
        """Identities most similar to ``features`` ``[K, D]`` (L2-normalised), with the best
        exemplar cosine similarity, most similar first (for search by image)."""
        self.call_with_retry(self._sync_index)
        names = self.index.search(features, k)
        exemplars, _ = self.call_with_retry(self._fetch, names)
        scored = [
            (name, float((features @ ex.features.T).max()))
            for name, ex in zip(names, exemplars, strict=True)
            if ex is not None
        ]
        return sorted(scored, key=lambda item: -item[1])

    def relink(self, since: float | None = None) -> RelinkReport:
        """Re-associate the tracklets that ended at or after ``since`` (footage time; all when
        None) and apply merges and splits atomically (:mod:`pipeline.matcher.relink`)."""
        return self.call_with_retry(Reassociator(self).run, since)

    def topology(self) -> dict[tuple[str, str], list[float]]:
        """Transit times (s) of the last re-association's confident links, per ordered camera
        pair (empty before the first re-association)."""
        raw = self.call_with_retry(self.redis.hgetall, self.keys.topology)
        return {tuple(_text(k).split("\t", 1)): json.loads(v) for k, v in raw.items()}

    def resolve(self, identity: str) -> str:
        """The identity ``identity`` now lives on as (itself unless it was merged)."""
        for _ in range(64):  # merge chains are short; the bound only guards against a cycle
            into = _text(
                self.call_with_retry(self.redis.hget, self.keys.identity(identity), "merged_into")
            )
            if into is None:
                return identity
            identity = into
        return identity

    def identity_of(self, camera_id: str, track_id: int) -> str | None:
        return _text(
            self.call_with_retry(
                self.redis.hget, self.keys.tracklet(camera_id, track_id), "identity"
            )
        )

    def trajectory(self, identity: str) -> list[Sighting]:
        """Sightings of ``identity`` ordered by start time (empty if unknown or expired)."""
        members = self.call_with_retry(self.redis.zrange, self.keys.sightings(identity), 0, -1)
        return [decode_sighting(identity, m) for m in members]

    def identity_info(self, identity: str) -> dict[str, str]:
        """The identity's record (created, last_seen, last_camera, tracklets); {} if unknown."""
        raw = self.call_with_retry(self.redis.hgetall, self.keys.identity(identity))
        return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"centroid")}

    def clear(self) -> int:
        """Delete every key of this namespace (SCAN, never KEYS); returns how many."""
        keys = list(self.redis.scan_iter(self.keys.pattern(), count=1000))
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        self.index = IdentityIndex(self.config.index_dim)
        self._cursor, self._version = "0-0", 0
        return len(keys)

    def identities(self, limit: int = 100) -> list[tuple[str, float]]:
        """The ``limit`` most recently updated identities with the update time (unix s)."""
        rows = self.call_with_retry(self.redis.zrevrange, self.keys.identities, 0, limit - 1, True)
        return [(_text(name), float(score)) for name, score in rows]
