"""One namespace of the matcher's state in one Redis: the client, the keys, the retry policy,
the Lua scripts and the namespace's stored settings. Every part of the matcher (the gallery,
the online matcher, re-association, corrections, the read model) takes a :class:`Store`.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from typing import Any

import redis

from pipeline.matcher.config import MatcherConfig
from pipeline.matcher.connection import RETRY_ERRORS, RedisUnavailable, connect
from pipeline.matcher.keys import Keys
from reid.config import ConfigError

log = logging.getLogger(__name__)


def _script(name: str) -> str:
    return resources.files("pipeline.matcher").joinpath(f"lua/{name}.lua").read_text()


class RedisFull(RedisUnavailable):
    """Redis refuses writes: ``maxmemory`` reached under ``noeviction`` (as shipped, so
    identities are never evicted silently)."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long Redis calls ride out an outage: each command has a deadline (the client's
    socket timeouts, :func:`~pipeline.matcher.connection.connect`); this outer loop rides
    out restarts for up to ``budget_s`` of wall-clock time, or ``stopping_budget_s`` once
    ``stopping`` is set (a SIGTERM leaves seconds, not a minute). A full Redis is not
    retried: it stays full until someone acts."""

    budget_s: float = 60.0
    stopping_budget_s: float = 2.0
    stopping: threading.Event = field(default_factory=threading.Event)

    def call(self, fn: Any, *args: Any) -> Any:
        delay, started = 0.1, time.monotonic()
        while True:
            try:
                return fn(*args)
            except redis.OutOfMemoryError as exc:
                raise RedisFull(
                    f"Redis is full and refuses writes ({exc}): raise its maxmemory or "
                    "shorten matcher.retention_s"
                ) from exc
            except RETRY_ERRORS as exc:
                budget = self.stopping_budget_s if self.stopping.is_set() else self.budget_s
                waited = time.monotonic() - started
                if waited + delay > budget:
                    raise RedisUnavailable(
                        f"Redis unavailable after {waited:.0f}s of retries: {exc}"
                    ) from exc
                log.warning("Redis unavailable (%s); retrying in %.1fs", exc, delay)
                time.sleep(delay)
                delay = min(delay * 2, 8.0)


class Store:
    """The matcher's Redis state of one namespace.

    Args:
        client: a connected redis-py client (:func:`pipeline.matcher.connection.connect`).
        namespace: key namespace (several deployments can share one Redis).
        retry: how long calls wait out an outage; default :class:`RetryPolicy`.
    """

    def __init__(
        self, client: redis.Redis, namespace: str = "reid", retry: RetryPolicy | None = None
    ) -> None:
        self.redis = client
        self.keys = Keys(namespace)
        self.retry = retry or RetryPolicy()
        self.commit = client.register_script(_script("commit"))
        self.reassign = client.register_script(_script("reassign"))
        self.undo = client.register_script(_script("undo"))
        self.lease = client.register_script(_script("lease"))

    @classmethod
    def open(
        cls,
        redis_url: str | None = None,
        namespace: str = "reid",
        client: redis.Redis | None = None,
        retry: RetryPolicy | None = None,
    ) -> Store:
        """A store on ``client``, else on a new connection to ``redis_url`` (None: the
        embedded server)."""
        return cls(
            client if client is not None else connect(redis_url, namespace=namespace),
            namespace,
            retry,
        )

    @property
    def namespace(self) -> str:
        return self.keys.namespace

    def call(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` under the retry policy."""
        return self.retry.call(fn, *args)

    def clear(self) -> int:
        """Admin: delete every key of this namespace (SCAN, never KEYS); returns how many.
        Matchers on it notice the gallery version going back and reload."""
        keys = list(self.redis.scan_iter(self.keys.pattern(), count=1000))
        for start in range(0, len(keys), 1000):
            self.redis.delete(*keys[start : start + 1000])
        return len(keys)

    # -- the namespace's settings ------------------------------------------------------------
    def settings(self) -> MatcherConfig | None:
        """The matcher settings the namespace's runs store (None before the first run)."""
        raw = self.call(self.redis.get, self.keys.settings)
        return None if raw is None else MatcherConfig.model_validate(json.loads(raw))

    def store_settings(self, config: MatcherConfig, who: str) -> None:
        """Record ``config`` as the namespace's matcher settings, saying which stored values
        it replaces (a worker whose cams.yaml disagrees with the site's should be noticed)."""
        stored = self.settings()
        if stored is not None and stored != config:
            ours, theirs = config.model_dump(), stored.model_dump()
            changed = ", ".join(
                f"{name}: stored {theirs[name]!r}, {who} {ours[name]!r}"
                for name in ours
                if ours[name] != theirs[name]
            )
            log.warning(
                "namespace %r: %s's matcher settings differ from the stored ones (%s); "
                "its settings are stored now",
                self.namespace,
                who,
                changed,
            )
        self.call(
            partial(self.redis.set, ex=int(config.retention_s)),
            self.keys.settings,
            config.model_dump_json(),
        )

    def configured(self, fallback: MatcherConfig | None = None) -> MatcherConfig:
        """The stored settings, else ``fallback``, else the defaults (for readers and
        corrections, which must write with the site's retention and exemplar count)."""
        return self.settings() or fallback or MatcherConfig()

    # -- the namespace's model -------------------------------------------------------------
    def record_model(self, dim: int, model: str, retention_s: float) -> None:
        """Fix the namespace's feature size with the model that gives it, before any
        tracklet is decided; a run with another model's features is refused, naming both."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hsetnx(self.keys.model, "dim", dim)
        pipe.hsetnx(self.keys.model, "model", model)
        pipe.hmget(self.keys.model, "dim", "model")
        pipe.expire(self.keys.model, int(retention_s))
        *_, (stored_dim, stored_model), _ = self.call(pipe.execute)
        if int(stored_dim) != dim:
            raise ConfigError(
                f"namespace {self.namespace!r} holds {int(stored_dim)}-d features of model "
                f"{stored_model.decode()!r}; this run's model {model!r} gives {dim}-d ones: "
                "use another redis.namespace (or clear this one with reid-query clear)"
            )

    # -- the footage each clock has shown ----------------------------------------------------
    def extend_footage(
        self, epoch: str, first: float, last: float, retention_s: float
    ) -> tuple[float, float]:
        """Widen footage clock ``epoch``'s recorded span by ``[first, last]`` and return the
        span every matcher of the namespace has seen on it (scale-out matchers each decide a
        share of the tracklets; a final re-association must cover all of them)."""
        key = self.keys.footage(epoch)
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(key, {"first": first}, lt=True)  # LT and GT still add a missing member
        pipe.zadd(key, {"last": last}, gt=True)
        pipe.zmscore(key, ["first", "last"])
        pipe.expire(key, int(retention_s))
        *_, (low, high), _ = self.call(pipe.execute)
        return float(low), float(high)

    # -- the session clock --------------------------------------------------------------------
    def new_session(self, retention_s: float) -> int:
        """A run's number in the namespace. It never goes back, even when Redis is restored
        from an older snapshot: ``max(last + 1, unix seconds)``."""
        return int(
            self.call(
                self.redis.eval,
                "local n = math.max(tonumber(redis.call('GET', KEYS[1]) or '0') + 1, "
                "tonumber(ARGV[1])) redis.call('SET', KEYS[1], n, 'EX', ARGV[2]) return n",
                1,
                self.keys.sessions,
                int(time.time()),
                int(retention_s),
            )
        )
