"""The read side of the matcher's Redis state: identities, trajectories, tracklet records,
merges, the learned topology. Queries (``reid-query``, the API) use it directly, so they
never load the candidate index a :class:`~pipeline.matcher.Matcher` builds.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any, overload

import redis

from pipeline.matcher.codec import decode_sighting
from pipeline.matcher.connection import RETRY_ERRORS, RedisUnavailable, connect
from pipeline.matcher.keys import Keys
from pipeline.matcher.types import Sighting

log = logging.getLogger(__name__)


@overload
def as_text(value: bytes | str) -> str: ...
@overload
def as_text(value: bytes | str | None) -> str | None: ...
def as_text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


class IdentityReader:
    """Reads one namespace of the matcher's state.

    Args:
        redis_url: ``redis://`` / ``rediss://`` / ``unix://`` URL; None starts the embedded
            server (:func:`pipeline.matcher.connection.connect`).
        namespace: key namespace.
        client: an existing redis-py client (takes precedence over ``redis_url``).
    """

    def __init__(
        self,
        redis_url: str | None = None,
        namespace: str = "reid",
        client: redis.Redis | None = None,
    ) -> None:
        self.redis = client if client is not None else connect(redis_url)
        self.keys = Keys(namespace)

    retry_budget_s: float = 60.0  # how long calls ride out an outage
    stopping_budget_s: float = 2.0  # ... once ``stopping`` is set (SIGTERM leaves seconds)
    stopping: threading.Event | None = None

    def call_with_retry(self, fn: Any, *args: Any) -> Any:
        """Run ``fn`` with retries while Redis is unreachable (redis-py retries each command
        briefly; this outer loop rides out restarts of up to ``retry_budget_s``, or
        ``stopping_budget_s`` once the owner is stopping)."""
        delay, waited = 0.1, 0.0
        while True:
            try:
                return fn(*args)
            except RETRY_ERRORS as exc:
                stopping = self.stopping is not None and self.stopping.is_set()
                budget = self.stopping_budget_s if stopping else self.retry_budget_s
                if waited + delay > budget:
                    raise RedisUnavailable(
                        f"Redis unavailable after {waited:.0f}s of retries: {exc}"
                    ) from exc
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                waited += delay
                delay = min(delay * 2, 8.0)

    def topology(self) -> dict[tuple[str, str], list[float]]:
        """Transit times (s) of the last re-association's confident links, per ordered camera
        pair (empty before the first re-association)."""
        raw = self.call_with_retry(self.redis.hgetall, self.keys.topology)
        return {tuple(as_text(k).split("\t", 1)): json.loads(v) for k, v in raw.items()}

    def dead_letters(self, limit: int = 100) -> list[dict[str, str]]:
        """The newest inbox entries no matcher could decide (``{ns}:v1:dead``), with the
        error and who set them aside; the feature blobs are left out."""
        entries = self.call_with_retry(self.redis.xrevrange, self.keys.dead, "+", "-", limit)
        shown = ("camera", "track", "start", "end", "error", "entry", "consumer")
        return [
            {"id": as_text(entry_id)}
            | {name: as_text(fields[name.encode()]) for name in shown if name.encode() in fields}
            for entry_id, fields in entries
        ]

    def resolve(self, identity: str) -> str:
        """The identity ``identity`` now lives on as (itself unless it was merged)."""
        for _ in range(64):  # merge chains are short; the bound only guards against a cycle
            into = as_text(
                self.call_with_retry(self.redis.hget, self.keys.identity(identity), "merged_into")
            )
            if into is None:
                return identity
            identity = into
        return identity

    def identity_of(self, camera_id: str, track_id: int) -> str | None:
        return as_text(
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
        return len(keys)

    def identities(self, limit: int = 100) -> list[tuple[str, float]]:
        """The ``limit`` most recently updated identities with the update time (unix s)."""
        rows = self.call_with_retry(self.redis.zrevrange, self.keys.identities, 0, limit - 1, True)
        return [(as_text(name), float(score)) for name, score in rows]
