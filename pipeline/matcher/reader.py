"""The read side of the matcher's Redis state: identities, trajectories, tracklet records,
merges, the learned topology. Queries (``reid-query``, the API) use it directly, so they
never load the candidate index a :class:`~pipeline.matcher.Matcher` builds.
"""

from __future__ import annotations

import json
import warnings
from typing import Any, overload

import redis

from pipeline.matcher.codec import decode_sighting
from pipeline.matcher.store import Store
from pipeline.matcher.types import Sighting


@overload
def as_text(value: bytes | str) -> str: ...
@overload
def as_text(value: bytes | str | None) -> str | None: ...
def as_text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class IdentityReader:
    """Reads one namespace of the matcher's state (never writes it).

    Args:
        redis_url: ``redis://`` / ``rediss://`` / ``unix://`` URL; None starts the embedded
            server (:func:`pipeline.matcher.connection.connect`).
        namespace: key namespace.
        client: an existing redis-py client (takes precedence over ``redis_url``).
        store: the namespace's :class:`Store` (takes precedence over all of the above).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str = "reid",
        client: redis.Redis | None = None,
        *,
        store: Store | None = None,
    ) -> None:
        self.store = store or Store.open(redis_url, namespace, client)
        self.redis, self.keys = self.store.redis, self.store.keys

    def call_with_retry(self, fn: Any, *args: Any) -> Any:
        """Deprecated: ``reader.store.call``."""
        warnings.warn(
            "IdentityReader.call_with_retry is deprecated: use reader.store.call",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.store.call(fn, *args)

    def clear(self) -> int:
        """Deprecated: clearing is an admin action, ``Store.clear`` (the read model is
        read-only)."""
        warnings.warn(
            "IdentityReader.clear is deprecated: use reader.store.clear()",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.store.clear()

    def topology(self) -> dict[tuple[str, str], list[float]]:
        """Transit times (s) of the last re-association's confident links, per ordered camera
        pair (empty before the first re-association)."""
        raw = self.store.call(self.redis.hgetall, self.keys.topology)
        return {tuple(as_text(k).split("\t", 1)): json.loads(v) for k, v in raw.items()}

    def camera_links(self) -> dict[str, Any]:
        """Exit/entry zones and the links between them that the last re-association learned
        (``matcher.camera_links``; :meth:`CameraLinks.summary`), empty lists before any;
        with ``handovers`` (:meth:`Handover.summary`) once a re-association learned them."""
        raw = self.store.call(self.redis.get, self.keys.camera_links)
        return json.loads(raw) if raw else {"zones": [], "links": []}

    def dead_letters(self, limit: int = 100) -> list[dict[str, str]]:
        """The newest inbox entries no matcher could decide (``{ns}:v1:dead``), with the
        error and who set them aside; the feature blobs are left out."""
        entries = self.store.call(self.redis.xrevrange, self.keys.dead, "+", "-", limit)
        shown = ("camera", "track", "start", "end", "error", "entry", "consumer")
        # a poison entry need not be UTF-8: shown with replacement characters, never a crash
        return [
            {"id": as_text(entry_id)}
            | {
                name: fields[name.encode()].decode(errors="replace")
                for name in shown
                if name.encode() in fields
            }
            for entry_id, fields in entries
        ]

    def resolve(self, identity: str) -> str:
        """The identity ``identity`` now lives on as (itself unless it was merged)."""
        for _ in range(64):  # merge chains are short; the bound only guards against a cycle
            into = as_text(
                self.store.call(self.redis.hget, self.keys.identity(identity), "merged_into")
            )
            if into is None:
                return identity
            identity = into
        return identity

    def identity_of(self, camera_id: str, track_id: int) -> str | None:
        return as_text(
            self.store.call(self.redis.hget, self.keys.tracklet(camera_id, track_id), "identity")
        )

    def trajectory(self, identity: str) -> list[Sighting]:
        """Sightings of ``identity`` ordered by start time (empty if unknown or expired)."""
        members = self.store.call(self.redis.zrange, self.keys.sightings(identity), 0, -1)
        return [decode_sighting(identity, m) for m in members]

    def identity_info(self, identity: str) -> dict[str, str]:
        """The identity's record (created, last_seen, last_camera, tracklets); {} if unknown."""
        raw = self.store.call(self.redis.hgetall, self.keys.identity(identity))
        return {k.decode(): v.decode() for k, v in raw.items() if not k.startswith(b"centroid")}

    def identities(self, limit: int = 100) -> list[tuple[str, float]]:
        """The ``limit`` most recently updated identities with the update time (unix s)."""
        rows = self.store.call(self.redis.zrevrange, self.keys.identities, 0, limit - 1, True)
        return [(as_text(name), float(score)) for name, score in rows]
