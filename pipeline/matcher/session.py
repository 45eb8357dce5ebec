"""The matching policy, one for every deployment: what the in-process pipeline
(:class:`pipeline.sinks.MatchHere`), the scale-out matcher
(:class:`pipeline.matcher.stream.MatcherWorker`) and ``rematch`` all run.

1. Tracklets handed over together are decided jointly where they end within
   ``joint_window_s`` of each other (:meth:`Matcher.decide_many`).
2. Every ``relink_every_s`` of footage, the tracklets that ended in the last
   ``relink_window_s`` are re-associated, per footage clock (epoch).
3. When the footage ends, one last re-association over all of it.

With several matchers on one namespace exactly one runs re-association at a time: the
holder of a lease in Redis (:class:`RelinkLease`), which passes to another matcher when its
holder dies. So a scale-out deployment leaves the identities one process would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from pipeline.matcher.matcher import Matcher
from pipeline.matcher.relink import RelinkReport
from pipeline.matcher.store import Store
from pipeline.matcher.types import Decision, Tracklet


class RelinkLease:
    """Who of several matchers re-associates: the one that holds ``{ns}:v1:relink_lease``.

    Args:
        store: the namespace's state.
        owner: this matcher's name (its consumer name).
        ttl_ms: how long the lease outlives its holder's last renewal.
    """

    def __init__(self, store: Store, owner: str, ttl_ms: int = 10_000) -> None:
        self.store, self.owner, self.ttl_ms = store, owner, max(int(ttl_ms), 1)

    def _ask(self, ttl_ms: int) -> bool:
        keys = self.store.keys
        return bool(self.store.call(self.store.lease, [keys.relink_lease], [self.owner, ttl_ms]))

    def hold(self) -> bool:
        """Take or renew the lease; whether this matcher holds it now."""
        return self._ask(self.ttl_ms)

    def release(self) -> None:
        """Give the lease up (a matcher that exits cleanly)."""
        self._ask(0)


@dataclass
class Footage:
    """What one footage clock has shown the namespace's matchers: first start, last end
    (kept in Redis, :meth:`Store.extend_footage`), and the last end at this session's latest
    re-association."""

    first: float
    last: float
    relinked_at: float | None = None


class MatchingSession:
    """Decides tracklets and re-associates them on the policy's cadence.

    Args:
        matcher: the online matcher of the namespace.
        lease: for a matcher that shares the namespace with others (scale-out): only the
            lease holder re-associates. None: this session is the only matcher.
    """

    def __init__(self, matcher: Matcher, lease: RelinkLease | None = None) -> None:
        self.matcher, self.config, self.lease = matcher, matcher.config, lease
        self.footage: dict[str, Footage] = {}

    def submit(self, tracklets: Sequence[Tracklet]) -> tuple[list[Decision], list[RelinkReport]]:
        """Decide ``tracklets`` (ended or updated together); the re-associations now due."""
        decisions = self.matcher.decide_many(tracklets)
        for epoch in {t.epoch for t in tracklets}:
            mine = [t for t in tracklets if t.epoch == epoch]
            first, last = self.matcher.store.extend_footage(
                epoch,
                min(t.start for t in mine),
                max(t.end for t in mine),
                self.config.retention_s,
            )
            seen = self.footage.setdefault(epoch, Footage(first, last))
            seen.first, seen.last = first, last
        return decisions, self._relink(final=False)

    def finish(self) -> list[RelinkReport]:
        """The footage ended: re-associate all of it (per clock)."""
        reports = self._relink(final=True)
        if self.lease is not None:
            self.lease.release()
        return reports

    def _relink(self, final: bool) -> list[RelinkReport]:
        every = self.config.relink_every_s
        due = [
            (epoch, seen)
            for epoch, seen in self.footage.items()
            if final or (every > 0 and (seen.relinked_at or seen.first) + every <= seen.last)
        ]
        if not due or (self.lease is not None and not self.lease.hold()):
            return []
        reports = []
        for epoch, seen in due:
            since = (
                seen.first if final else max(seen.first, seen.last - self.config.relink_window_s)
            )
            reports.append(self.matcher.relink(since=since, epoch=epoch))
            seen.relinked_at = seen.last
        return reports
