"""Scale-out: camera workers publish tracklets to a Redis Stream; matchers consume it as a
consumer group. A crashed consumer's pending entries are claimed by the others after
``claim_idle_ms``; the commit script makes reprocessing harmless (idempotent per tracklet).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import cast

import redis

from pipeline.matcher.codec import decode_tracklet, encode_tracklet
from pipeline.matcher.connection import RETRY_ERRORS
from pipeline.matcher.keys import Keys
from pipeline.matcher.matcher import Matcher
from pipeline.matcher.relink import RelinkReport
from pipeline.matcher.session import MatchingSession, RelinkLease
from pipeline.matcher.types import Decision, Tracklet, TrackletError

log = logging.getLogger(__name__)
GROUP = "matchers"


def _stream_id(value: bytes | str) -> tuple[int, int]:
    ms, seq = (value.decode() if isinstance(value, bytes) else value).split("-")
    return int(ms), int(seq)


def _next_id(value: bytes | str) -> tuple[int, int]:
    ms, seq = _stream_id(value)
    return ms, seq + 1


class TrackletPublisher:
    """Appends tracklets to the inbox stream; holds up to ``buffer`` while Redis is down.

    Tracklets buffered during an outage are sent, in order, by the next successful
    :meth:`publish` or :meth:`flush`. When the buffer is full the oldest is dropped and
    counted in :attr:`dropped` (and logged), never silently.
    """

    def __init__(
        self,
        client: redis.Redis,
        namespace: str = "reid",
        buffer: int = 10_000,
        maxlen: int = 1_000_000,
    ) -> None:
        self.redis, self.keys, self.maxlen = client, Keys(namespace), maxlen
        self.pending: deque[Tracklet] = deque()
        self.capacity = buffer
        self.dropped = 0

    def publish(self, tracklet: Tracklet) -> bool:
        """Queue ``tracklet`` and send everything queued; False while Redis is unreachable."""
        if len(self.pending) == self.capacity:
            self.pending.popleft()
            self.dropped += 1
            log.error(
                "tracklet buffer full (%d): dropped the oldest, %d so far",
                self.capacity,
                self.dropped,
            )
        self.pending.append(tracklet)
        return self.flush()

    def flush(self) -> bool:
        while self.pending:
            try:
                self.redis.xadd(
                    self.keys.inbox,
                    encode_tracklet(self.pending[0]),
                    maxlen=self.maxlen,
                    approximate=True,
                )
            except RETRY_ERRORS as exc:
                log.warning("Redis unavailable, %d tracklets buffered: %s", len(self.pending), exc)
                return False
            self.pending.popleft()
        return True


class MatcherWorker:
    """One consumer of the inbox group: claim stale entries, read new ones, decide them on
    the one matching policy (:class:`~pipeline.matcher.session.MatchingSession`), ack.

    Of all the matchers of a namespace, the holder of the re-association lease runs the
    periodic re-association; the lease passes on ``claim_idle_ms`` after its holder dies.
    """

    def __init__(
        self, matcher: Matcher, consumer: str, claim_idle_ms: int = 30_000, batch: int = 32
    ) -> None:
        self.matcher, self.consumer = matcher, consumer
        self.keys, self.redis = matcher.keys, matcher.redis
        self.claim_idle_ms, self.batch = claim_idle_ms, batch
        self.session = MatchingSession(
            matcher, RelinkLease(matcher.store, consumer, ttl_ms=claim_idle_ms)
        )
        self.relinks: list[RelinkReport] = []
        self.processed = 0
        self.dead = 0
        try:
            self.redis.xgroup_create(self.keys.inbox, GROUP, id="0", mkstream=True)
        except redis.ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
        # entries read but not acknowledged when this consumer starts may be a dead
        # predecessor's: they are older than anything new, so they are decided first
        pending = self.redis.xpending(self.keys.inbox, GROUP)
        self.barrier: bytes | None = pending["max"] if pending["pending"] else None

    def _predecessors_pending(self) -> bool:
        """Whether entries pending at start-up are still pending (a live consumer acks its
        own in milliseconds; a dead one's are claimed after ``claim_idle_ms``)."""
        if self.barrier is None:
            return False
        if self.redis.xpending_range(self.keys.inbox, GROUP, "-", self.barrier, 1):
            return True
        self.barrier = None
        return False

    def _handle(self, entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[Decision]:
        """Decide the entries' tracklets together; poison entries (malformed, or another
        model's feature size) go to the dead letters; all are acknowledged."""
        good: list[Tracklet] = []
        if entries:
            self.matcher.store.call(self.matcher.gallery.sync, ())  # the namespace's size
        for entry_id, fields in entries:
            if not fields:  # entries trimmed from the stream come back empty: nothing to do
                continue
            try:
                tracklet = decode_tracklet(fields)
                # in a namespace no run has fixed yet, the batch's first tracklet's size
                self.matcher.check(tracklet, good[0].features.shape[1] if good else None)
                good.append(tracklet)
            except TrackletError as exc:
                self._dead_letter(entry_id, fields, exc)
        decisions, reports = self.session.submit(good) if good else ([], [])
        self.relinks += reports
        for entry_id, _ in entries:
            self.redis.xack(self.keys.inbox, GROUP, entry_id)
            self.processed += 1
        return decisions

    def _dead_letter(self, entry_id: bytes, fields: dict[bytes, bytes], error: Exception) -> None:
        """A poison entry goes to ``{ns}:v1:dead`` with its error instead of stopping every
        matcher that reads it; the entries behind it are decided."""
        log.error("inbox entry %s set aside in %s: %s", entry_id.decode(), self.keys.dead, error)
        self.redis.xadd(
            self.keys.dead,
            {  # fields' items, as XADD's wider field type
                **dict(fields.items()),
                b"error": str(error),
                b"entry": entry_id,
                b"consumer": self.consumer,
            },
            maxlen=10_000,
            approximate=True,
        )
        self.dead += 1

    def trim(self) -> int:
        """Drop inbox entries every matcher is done with: older than both the oldest entry
        still pending (read, not yet acknowledged) and the next one to deliver. Returns how
        many went."""
        pending = self.redis.xpending(self.keys.inbox, GROUP)
        groups = self.redis.xinfo_groups(self.keys.inbox)
        delivered = next(
            (g["last-delivered-id"] for g in groups if g["name"] in (GROUP, GROUP.encode())),
            None,
        )
        if delivered is None:
            return 0
        bounds = [_next_id(delivered)]
        if pending["pending"]:
            bounds.append(_stream_id(pending["min"]))
        ms, seq = min(bounds)
        return int(self.redis.xtrim(self.keys.inbox, minid=f"{ms}-{seq}"))

    def step(self, block_ms: int = 1000) -> list[Decision]:
        """Process stale pending entries of dead consumers, then new entries (none until the
        entries pending when this consumer started are decided); then drop the entries
        everyone is done with (:meth:`trim`)."""
        before = self.processed
        _, claimed, *_ = self.redis.xautoclaim(
            self.keys.inbox, GROUP, self.consumer, self.claim_idle_ms, "0-0", count=self.batch
        )
        decisions = self._handle(claimed)
        if self._predecessors_pending():  # new entries wait until those are decided
            time.sleep(min(block_ms, self.claim_idle_ms) / 4000)
            return decisions
        # RESP2 (the protocol connect speaks): [[stream, entries]], or None on a timeout
        reply = cast(
            "list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]] | None",
            self.redis.xreadgroup(
                GROUP, self.consumer, {self.keys.inbox: ">"}, count=self.batch, block=block_ms
            ),
        )
        for _, entries in reply or []:
            decisions += self._handle(entries)
        if self.processed > before:
            self.trim()
        return decisions

    def run(self, stop: threading.Event, block_ms: int = 1000) -> None:
        """Consume until ``stop`` is set; Redis outages are retried with backoff."""
        while not stop.is_set():
            self.matcher.store.call(self.step, block_ms)

    def finish(self) -> list[RelinkReport]:
        """This matcher leaves: a last re-association over the footage it saw (when it holds
        the lease), and the lease given up for the others."""
        reports = self.session.finish()
        self.relinks += reports
        return reports
