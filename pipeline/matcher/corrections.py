"""Operators' corrections of the matcher's identities (the review page, ``reid-query``).

- *merge* A into B: every tracklet of A moves to B, A is retired with ``merged_into`` (its id
  still resolves to B);
- *split*: chosen sightings of A move to a new identity (``split_from`` A);
- *confirm*: the operator vouches that (some of) A's sightings are one person;
- *not the same person*: A and B are certainly different people.

Merges and splits are applied atomically with re-association's rewrite
(:mod:`pipeline.matcher.rewrite`), under the same optimistic concurrency: of two
concurrent corrections of the same identities one wins, the other finds the state it
expected gone and gets a :class:`CorrectionConflict`. Each correction is recorded with who
and when (``{ns}:v1:corrections`` and ``{ns}:v1:correction:<event>``, see
:mod:`pipeline.matcher.keys`) and can be undone exactly (``lua/undo.lua``) while nothing it
touched changed since. Every correction also keeps which tracklets it spoke about
(``groups``), which is what the labels export reads: merge/confirm groups are one person,
split/not-same groups are different people.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from redis.typing import EncodableT, FieldT

from pipeline.matcher.codec import decode_sighting, identity_id
from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.reader import IdentityReader, as_text
from pipeline.matcher.rewrite import Rewrite, Rewriter, Snapshot, read_recorded
from pipeline.matcher.types import Sighting

# RESP2 (the protocol connect speaks): XRANGE/XREVRANGE entries as (id, fields)
StreamEntries = list[tuple[bytes, dict[bytes, bytes]]]
KINDS = ("merge", "split", "confirm", "not_same")


class CorrectionError(ValueError):
    """A correction cannot be applied as asked (bad input)."""


class UnknownTarget(CorrectionError):
    """The identity, sighting or correction named does not exist (or expired)."""


class CorrectionConflict(CorrectionError):
    """The state the correction expected is gone: another correction, or the matcher, came
    first. Nothing was written."""


@dataclass(frozen=True)
class Actor:
    """Who corrects: the name and role of the token the request carried."""

    name: str
    role: str


@dataclass(frozen=True)
class Correction:
    event: str
    kind: str
    identity: str
    other: str
    who: str
    role: str
    time: float
    state: str  # applied | undone
    groups: tuple[tuple[dict, ...], ...] = ()
    undone_by: str = ""

    def as_dict(self) -> dict:
        return {
            "event": self.event,
            "kind": self.kind,
            "identity": self.identity,
            "other": self.other,
            "who": self.who,
            "role": self.role,
            "time": self.time,
            "state": self.state,
            "undone_by": self.undone_by,
            "groups": [list(g) for g in self.groups],
        }


def _tracklet(s: Sighting) -> dict:
    return {
        "camera": s.camera_id,
        "track": s.track_id,
        "start": s.start,
        "end": s.end,
        "crops": list(s.crops),
    }


class Corrector:
    """Applies, records, lists and undoes corrections in one namespace."""

    def __init__(self, reader: IdentityReader, config: MatcherConfig | None = None) -> None:
        self.reader, self.store = reader, reader.store
        self.redis, self.keys = reader.redis, reader.keys
        self._config = config
        self._undo = self.store.undo

    @property
    def config(self) -> MatcherConfig:
        """The settings given, else the namespace's stored ones (read per correction: the
        site's run may store them after a review server started), so a merge keeps the
        site's retention and exemplar count."""
        return self._config or self.store.configured()

    # -- reading ---------------------------------------------------------------------------
    def _current(self, names: Sequence[str]) -> tuple[int, dict[str, list[Sighting]]]:
        """The gallery version and each identity's sightings, read together; an identity
        merged away is a conflict, one never seen (or expired) unknown."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.get(self.keys.version)
        for name in names:
            pipe.hget(self.keys.identity(name), "merged_into")
            pipe.zrange(self.keys.sightings(name), 0, -1)
        version, *rows = pipe.execute()
        found = {}
        for name, into, members in zip(names, rows[::2], rows[1::2], strict=True):
            if into is not None:
                raise CorrectionConflict(
                    f"identity {name!r} was merged into {as_text(into)!r}; correct that one"
                )
            if not members:
                raise UnknownTarget(f"unknown identity {name!r} (never seen, or expired)")
            found[name] = [decode_sighting(name, m) for m in members]
        return int(version or 0), found

    def get(self, event: str) -> Correction:
        fields = ("kind", "identity", "other", "who", "role", "time", "state", "groups")
        row = self.redis.hmget(self.keys.correction(event), *fields, "undone_by")
        if row[0] is None:
            raise UnknownTarget(f"unknown correction {event!r} (never made, or expired)")
        kind, identity, other, who, role, when, state, groups, undone_by = map(as_text, row)
        return Correction(
            event,
            kind or "",
            identity or "",
            other or "",
            who or "",
            role or "",
            float(when or 0),
            state or "",
            tuple(tuple(g) for g in json.loads(groups or "[]")),
            undone_by or "",
        )

    def log(self, limit: int = 100, before: str | None = None) -> list[dict[str, str]]:
        """The corrections log, newest first (undos included), ``limit`` entries older than
        the log entry ``before``; each with its correction's current state."""
        entries = cast(
            StreamEntries,
            self.redis.xrevrange(
                self.keys.corrections, f"({before}" if before else "+", "-", limit
            ),
        )
        rows = [
            {"id": as_text(entry)} | {as_text(k): as_text(v) for k, v in fields.items()}
            for entry, fields in entries
        ]
        pipe = self.redis.pipeline(transaction=False)
        for row in rows:
            pipe.hmget(self.keys.correction(row.get("of") or row["event"]), "state", "undone_by")
        for row, (state, undone_by) in zip(rows, pipe.execute() if rows else [], strict=True):
            row["state"] = as_text(state) or ""
            row["undone_by"] = as_text(undone_by) or ""
        return rows

    def applied(self) -> list[Correction]:
        """Every correction still in force, oldest first (for the labels export)."""
        events, cursor = [], "-"
        while batch := cast(
            StreamEntries, self.redis.xrange(self.keys.corrections, cursor, "+", 1000)
        ):
            events += [as_text(f[b"event"]) for _, f in batch if f.get(b"kind") != b"undo"]
            cursor = f"({as_text(batch[-1][0])}"
        found = [
            self.get(event) for event in events if self.redis.exists(self.keys.correction(event))
        ]
        return [c for c in found if c.state == "applied"]

    # -- writing ---------------------------------------------------------------------------
    def _fields(
        self, kind: str, identity: str, other: str, actor: Actor, groups: list
    ) -> dict[str, str]:
        return {
            "kind": kind,
            "identity": identity,
            "other": other,
            "who": actor.name,
            "role": actor.role,
            "time": repr(time.time()),
            "groups": json.dumps(groups),
        }

    def _rewrite(self, names: Sequence[str], plan) -> Correction:  # noqa: ANN001
        """Read ``names``, build the rewrite with ``plan(event, version, found)`` -> (rewrite,
        fields), apply it; again while live matchers win the race."""
        config = self.config
        rewriter = Rewriter(self.store, config)
        for _ in range(config.max_retries):
            event = new_event()
            version, found = self._current(names)
            rewrite, fields = plan(event, version, found)
            status = rewriter.apply(version, rewrite, Snapshot(event, fields))
            if status == "ok":
                return self.get(event)
        raise CorrectionConflict(
            f"the gallery kept changing under {config.max_retries} attempts; try again"
        )

    def merge(self, identity: str, into: str, actor: Actor) -> Correction:
        """Move every tracklet of ``identity`` to ``into`` and retire ``identity``."""
        if identity == into:
            raise CorrectionError(f"cannot merge {identity!r} into itself")

        def plan(event: str, version: int, found: dict) -> tuple[Rewrite, dict]:
            source, target = found[identity], found[into]
            members = read_recorded(self.store, source + target)
            rewrite = Rewrite(
                moves=[(r.ref, identity, into) for r in members[: len(source)]],
                merges={identity: into},
                members={into: members},
            )
            groups = [[_tracklet(s) for s in target + source]]
            return rewrite, self._fields("merge", identity, into, actor, groups)

        return self._rewrite([identity, into], plan)

    def split(self, identity: str, refs: Sequence[str], actor: Actor) -> Correction:
        """Move the sightings ``refs`` (``"<camera>:<track>"``) of ``identity`` to a new
        identity (the correction's ``other``)."""
        if not refs:
            raise CorrectionError("sightings: name at least one sighting to split off")
        wanted = list(dict.fromkeys(refs))

        def plan(event: str, version: int, found: dict) -> tuple[Rewrite, dict]:
            sightings = found[identity]
            by_ref = {f"{s.camera_id}:{s.track_id}": s for s in sightings}
            strangers = [r for r in wanted if r not in by_ref]
            if strangers:
                raise CorrectionError(
                    f"sightings: {strangers[0]!r} is not a sighting of {identity!r} "
                    f"(its sightings: {', '.join(by_ref)})"
                )
            if len(wanted) == len(sightings):
                raise CorrectionError(
                    f"sightings: splitting off all of {identity!r} leaves nothing behind"
                )
            new = identity_id(f"{self.keys.namespace}|correction|{event}")
            members = read_recorded(self.store, sightings)
            moved = [r for r in members if r.ref in wanted]
            stays = [r for r in members if r.ref not in wanted]
            rewrite = Rewrite(
                moves=[(r.ref, identity, new) for r in moved],
                splits={new: identity},
                members={identity: stays, new: moved},
            )
            groups = [
                [_tracklet(by_ref[r.ref]) for r in stays],
                [_tracklet(by_ref[r.ref]) for r in moved],
            ]
            return rewrite, self._fields("split", identity, new, actor, groups)

        return self._rewrite([identity], plan)

    def _record(self, event: str, fields: dict[str, str]) -> Correction:
        """A correction that changes no identity: only its record and log entry."""
        config = self.config
        ttl = int(config.retention_s)
        record: dict[FieldT, EncodableT] = {
            "event": event,
            "keys": 0,
            "ids": "[]",
            "state": "applied",
        }
        record.update(fields)
        entry: dict[FieldT, EncodableT] = {"event": event}
        entry.update(fields)
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(self.keys.correction(event), mapping=record)
        pipe.xadd(
            self.keys.corrections,
            entry,
            maxlen=config.events_maxlen,
            approximate=True,
        )
        pipe.expire(self.keys.correction(event), ttl)
        pipe.expire(self.keys.corrections, ttl)
        pipe.execute()
        return self.get(event)

    def confirm(self, identity: str, actor: Actor, refs: Sequence[str] = ()) -> Correction:
        """The operator vouches that ``identity``'s sightings ``refs`` (all when empty) are
        one person."""
        _, found = self._current([identity])
        chosen = [s for s in found[identity] if not refs or f"{s.camera_id}:{s.track_id}" in refs]
        if refs and len(chosen) != len(set(refs)):
            known = {f"{s.camera_id}:{s.track_id}" for s in found[identity]}
            stranger = next(r for r in refs if r not in known)
            raise CorrectionError(f"sightings: {stranger!r} is not a sighting of {identity!r}")
        groups = [[_tracklet(s) for s in chosen]]
        return self._record(new_event(), self._fields("confirm", identity, "", actor, groups))

    def not_same(self, identity: str, other: str, actor: Actor) -> Correction:
        """``identity`` and ``other`` are certainly different people."""
        if identity == other:
            raise CorrectionError(f"other: {identity!r} cannot differ from itself")
        _, found = self._current([identity, other])
        groups = [[_tracklet(s) for s in found[name]] for name in (identity, other)]
        return self._record(new_event(), self._fields("not_same", identity, other, actor, groups))

    def undo(self, event: str, actor: Actor) -> Correction:
        """Restore exactly the state before correction ``event``."""
        record = self.keys.correction(event)
        count, ids = self.redis.hmget(record, "keys", "ids")
        if count is None:
            raise UnknownTarget(f"unknown correction {event!r} (never made, or expired)")
        assert ids is not None  # written with ``keys`` (reassign.lua, _record)
        # key:1 .. key:<keys> are written with ``keys`` in the same HSET (reassign.lua)
        snapshot = (
            [
                as_text(k)
                for k in cast(
                    "list[bytes]",
                    self.redis.hmget(record, *(f"key:{n}" for n in range(1, int(count) + 1))),
                )
            ]
            if int(count)
            else []
        )
        keys = [
            self.keys.version,
            self.keys.identities,
            self.keys.events,
            self.keys.corrections,
            record,
            *snapshot,
        ]
        hashes = {name: keys.index(self.keys.identity(name)) + 1 for name in json.loads(ids)}
        undo_event = new_event()
        config = self.config
        status, detail = (
            as_text(v)
            for v in self._undo(
                keys=keys,
                args=[
                    repr(time.time()),
                    int(config.retention_s),
                    config.events_maxlen,
                    actor.name,
                    actor.role,
                    undo_event,
                    json.dumps(hashes),
                ],
            )
        )
        if status == "unknown":
            raise UnknownTarget(f"unknown correction {event!r} (never made, or expired)")
        if status == "undone":
            raise CorrectionConflict(f"correction {event!r} was already undone by {detail!r}")
        if status == "changed":
            raise CorrectionConflict(
                f"cannot undo {event!r}: {detail} changed since (the matcher or another "
                "correction touched it); correct the current state instead"
            )
        if status != "ok":
            raise RuntimeError(f"undo of {event!r} failed: {status} {detail}")
        return self.get(event)


def new_event() -> str:
    """A correction's id: unique, URL-safe."""
    return "c" + uuid.uuid4().hex[:16]
