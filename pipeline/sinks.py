"""Where a run's tracklets go: matched here (:class:`MatchHere`), or published to the Redis
inbox stream for ``reid-pipeline matcher`` processes (:class:`PublishToStream`, the
scale-out camera worker). :class:`~pipeline.runner.Pipeline` takes either."""

from __future__ import annotations

import logging
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Protocol

import redis

from pipeline.config import RedisConfig
from pipeline.matcher import Matcher, MatcherConfig, RedisUnavailable, Tracklet, connect
from pipeline.matcher.codec import track_ref
from pipeline.matcher.keys import Keys
from pipeline.matcher.relink import RelinkReport, relink_offline
from pipeline.matcher.session import MatchingSession
from pipeline.matcher.store import RetryPolicy, Store
from pipeline.matcher.stream import TrackletPublisher
from pipeline.outputs import RunOutputs
from pipeline.run_record import read_tracklets
from pipeline.run_state import RunState
from pipeline.tracklets import TrackletSummary
from reid.config import ConfigError
from reid.runtime.pair_scoring import AttentionScorer

log = logging.getLogger(__name__)
IdentityOf = Callable[[str, int], str | None]


class TrackletSink(Protocol):
    """What a :class:`~pipeline.runner.Pipeline` hands its tracklets to."""

    redis: redis.Redis
    keys: Keys

    def start(self, stop: threading.Event, state: RunState, outputs: RunOutputs) -> None:
        """Called once, before the first :meth:`submit`; ``state`` and ``outputs`` are the
        run's (decisions are counted and recorded there)."""

    def submit(self, summaries: list[TrackletSummary], tracklets: list[Tracklet]) -> None:
        """``tracklets`` (one per summary, embedded) ended or were updated together."""

    def finish(self, redis_gone: bool, tracks: Iterable[tuple[str, int]]) -> IdentityOf | None:
        """The run ends: the final identity of each of its decided ``tracks``, or None
        where the online ones stand (nothing decided here, or Redis unreachable)."""


class MatchHere:
    """Decides identities in this process, on the one matching policy
    (:class:`~pipeline.matcher.session.MatchingSession`): online decisions, re-association
    every ``relink_every_s`` of footage over ``relink_window_s``, a last one over the run."""

    def __init__(self, matcher: Matcher) -> None:
        self.matcher = matcher
        self.session = MatchingSession(matcher)
        self.redis, self.keys = matcher.redis, matcher.keys
        self._run: tuple[RunState, RunOutputs] | None = None
        self._rewinds = 0  # the gallery's version went back this often (restores) so far

    @classmethod
    def from_config(
        cls,
        redis_config: RedisConfig,
        config: MatcherConfig,
        scorer: AttentionScorer | None,
        retry: RetryPolicy | None = None,
    ) -> MatchHere:
        store = Store.open(redis_config.url, redis_config.namespace, retry=retry)
        return cls(Matcher(config=config, scorer=scorer, store=store))

    def start(self, stop: threading.Event, state: RunState, outputs: RunOutputs) -> None:
        self.matcher.store.store_settings(self.matcher.config, "this run")
        self._run = state, outputs

    def _started(self) -> tuple[RunState, RunOutputs]:
        if self._run is None:
            raise RuntimeError("start() the sink before handing it tracklets")
        return self._run

    def submit(self, summaries: list[TrackletSummary], tracklets: list[Tracklet]) -> None:
        state, outputs = self._started()
        with state.stage("match"):  # those ending together are decided jointly
            decisions, reports = self.session.submit(tracklets)
        for summary, tracklet, decision in zip(summaries, tracklets, decisions, strict=True):
            state.decisions[decision.action] += 1
            state.identities.add(decision.identity)
            state.identity_cameras[decision.identity].add(summary.camera_id)
            outputs.decision(summary, decision, tracklet.crops)
        self._record(reports)
        if tracklets and self.matcher.gallery.rewinds > self._rewinds:
            self._rewinds = self.matcher.gallery.rewinds
            self._resubmit(tracklets[0].epoch)

    def _resubmit(self, epoch: str) -> None:
        """Redis went back (restored from an older snapshot): what the run decided since then
        is gone from it, so every track the run recorded is handed over again from its own
        record (tracklets.jsonl); those Redis still holds are duplicates, the rest are
        decided again, and none drops out of the outputs."""
        _, outputs = self._started()
        again = [replace(t, epoch=epoch) for t in read_tracklets(outputs.folder)]
        log.warning(
            "Redis went back to an older state: re-submitting the %d tracks of this run", len(again)
        )
        _, reports = self.session.submit(again)
        self._record(reports)

    def _record(self, reports: list[RelinkReport]) -> None:
        state, outputs = self._started()
        for report in reports:
            state.time("relink", report.seconds)
            state.decisions["relink_moves"] += report.moves
            outputs.relink(report)

    def finish(self, redis_gone: bool, tracks: Iterable[tuple[str, int]]) -> IdentityOf | None:
        """The last re-association, then every track's identity as it ended (the summary
        counts those). With Redis gone, the run's own records are re-associated in memory
        instead (:func:`~pipeline.matcher.relink.relink_offline`)."""
        state, _ = self._started()
        tracks = list(tracks)
        if redis_gone:
            final = self._relinked_in_memory(tracks, "Redis was lost during the run")
        else:
            try:
                self._record(self.session.finish())
                final = {key: self.matcher.identity_of(*key) for key in tracks}
            except RedisUnavailable as exc:
                final = self._relinked_in_memory(tracks, str(exc))
        state.identities = {i for i in final.values() if i is not None}
        state.identity_cameras = defaultdict(set)
        for (camera, _), identity in final.items():
            if identity is not None:
                state.identity_cameras[identity].add(camera)
        return lambda camera, track: final.get((camera, track))

    def _relinked_in_memory(
        self, tracks: list[tuple[str, int]], why: str
    ) -> dict[tuple[str, int], str | None]:
        """Each track's identity after re-associating the run's own records in memory."""
        _, outputs = self._started()
        log.error("final re-association in memory, from %s: %s", outputs.folder, why)
        online = {track_ref(*key): row.identity for key, row in outputs.recorded().items()}
        moved = relink_offline(read_tracklets(outputs.folder), online, self.matcher.config)
        return {key: moved.get(track_ref(*key), online.get(track_ref(*key))) for key in tracks}


class PublishToStream:
    """Scale-out camera worker: tracklets go to the Redis inbox stream, decided by
    ``reid-pipeline matcher`` processes; nothing is matched here."""

    def __init__(self, publisher: TrackletPublisher) -> None:
        self.publisher = publisher
        self.redis, self.keys = publisher.redis, publisher.keys
        self._state: RunState | None = None

    @classmethod
    def from_config(cls, redis_config: RedisConfig) -> PublishToStream:
        if redis_config.url is None:
            raise ConfigError(
                "a publish-only worker hands its tracklets to `reid-pipeline matcher` processes "
                "through a shared Redis: give its URL (--redis or redis.url); an embedded Redis "
                "would be private to this process"
            )
        url, namespace = redis_config.url, redis_config.namespace
        return cls(TrackletPublisher(connect(url, namespace=namespace), namespace))

    def start(self, stop: threading.Event, state: RunState, outputs: RunOutputs) -> None:
        self._state = state

    def submit(self, summaries: list[TrackletSummary], tracklets: list[Tracklet]) -> None:
        if self._state is None:
            raise RuntimeError("start() the sink before handing it tracklets")
        with self._state.stage("match"):
            for tracklet in tracklets:
                self.publisher.publish(tracklet)
        self._state.decisions["published"] += len(tracklets)

    def finish(self, redis_gone: bool, tracks: Iterable[tuple[str, int]]) -> IdentityOf | None:
        if not self.publisher.flush():
            log.error(
                "%d tracklets could not be published (Redis down)", len(self.publisher.pending)
            )
        return None
