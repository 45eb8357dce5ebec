"""The pipeline: cameras -> detector -> per-camera trackers -> tracklets -> shared embedder
-> matcher (Redis) -> outputs. One process, reader threads per camera, and a main loop that
batches frames for the detector and crops for the embedder across all cameras.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from detectors import build_detector
from pipeline.config import PipelineConfig
from pipeline.matcher import Matcher, RedisUnavailable, Tracklet, connect
from pipeline.matcher.connection import RETRY_ERRORS
from pipeline.matcher.stream import TrackletPublisher
from pipeline.outputs import RunOutputs
from pipeline.run_state import CameraStats, RunState
from pipeline.sources import CameraReader, Frame
from pipeline.tracking import CameraTracker
from pipeline.tracklets import TrackletBuilder, TrackletSummary
from reid.config import ConfigError
from reid.runtime import Embedder, Embeddings, load_embedder
from reid.runtime.consistency import ConsistencyScorer
from reid.runtime.fallback import fallback_embedder
from reid.runtime.metadata import scorer_path
from reid.runtime.pair_scoring import AttentionScorer

log = logging.getLogger(__name__)
SESSION_SPAN = 10**9  # track ids of the n-th run in a namespace start at (n - 1) * this


def build_embedder(config: PipelineConfig) -> tuple[Embedder, AttentionScorer | None]:
    """The configured model (or the offline ImageNet fallback) and its scorer, if exported."""
    if config.reid.model is None:
        log.warning(
            "no reid.model given: ImageNet MobileNetV2 features, feature-only matching "
            "(train one with reid-train for real accuracy)"
        )
        return fallback_embedder(), None
    path = Path(config.reid.model)
    embedder = load_embedder(path, config.reid.backend)
    scorer_file = scorer_path(path)
    scorer = ConsistencyScorer.load(scorer_file).to_numpy() if scorer_file.is_file() else None
    if scorer is None:
        log.warning("no %s beside the model: matching is feature-only", scorer_file.name)
    return embedder, scorer


class Pipeline:
    """One run over the cameras of a :class:`PipelineConfig`."""

    def __init__(
        self,
        config: PipelineConfig,
        max_frames: int | None = None,
        matcher: Matcher | None = None,
        publish_only: bool = False,
    ) -> None:
        """``publish_only``: scale-out camera worker; tracklets go to the Redis inbox stream
        for ``reid-pipeline matcher`` processes instead of being matched here."""
        if publish_only and config.redis.url is None:
            raise ConfigError(
                "a publish-only worker hands its tracklets to `reid-pipeline matcher` processes "
                "through a shared Redis: give its URL (--redis or redis.url); an embedded Redis "
                "would be private to this process"
            )
        self.config = config
        # cameras first: a missing file is reported before models load or Redis is asked
        self.readers = {
            c.id: CameraReader(
                c.id,
                c.source,
                c.fps,
                c.start_time,
                c.time_offset,
                c.crop,
                live=c.live,
                max_reconnects=c.max_reconnects,
                max_frames=max_frames,
            )
            for c in config.cameras
        }
        det = config.detector
        options: dict[str, Any] = {}
        if det.kind == "yolo":
            options = {
                "conf": det.conf,
                "iou": det.iou,
                "imgsz": det.imgsz,
                "person_classes": det.person_classes,
            }
        elif det.kind == "hog":
            options = {"conf": det.conf}
        self.detectors = {
            c.id: build_detector(
                det.kind, c.detections if det.kind == "precomputed" else det.weights, **options
            )
            for c in (config.cameras if det.kind == "precomputed" else config.cameras[:1])
        }
        self.embedder, scorer = build_embedder(config)
        self.publisher: TrackletPublisher | None = None
        if publish_only:
            self.publisher = TrackletPublisher(connect(config.redis.url), config.redis.namespace)
            self.matcher = None
        else:
            self.matcher = matcher or Matcher(
                config.redis.url, config.redis.namespace, config.matcher, scorer
            )
        trk = config.tracker
        thresholds = trk.model_dump(exclude={"kind", "lost_after_s"})
        self.session = self._new_session()
        self.trackers = {
            cid: CameraTracker(
                trk.kind,
                r.output_fps,
                trk.lost_after_s,
                id_base=(self.session - 1) * SESSION_SPAN,
                **thresholds,
            )
            for cid, r in self.readers.items()
        }
        tl = config.tracklets
        self.builders = {cid: TrackletBuilder(cid, **tl.model_dump()) for cid in self.readers}
        self.outputs = RunOutputs(
            config.outputs.dir, config.outputs, list(self.readers), config.matcher.overlapping
        )
        self.state = RunState(
            {cid: CameraStats(source=r.stats) for cid, r in self.readers.items()},
            queue_depths=lambda: {c: r.frames.qsize() for c, r in self.readers.items()},
        )
        self._pending: list[TrackletSummary] = []
        self._footage = (float("inf"), float("-inf"))  # first start, last end seen
        self._relinked_at: float | None = None
        # (camera, track) -> crop id -> embedding, for open tracks' kept crops
        self._embedded: dict[tuple[str, int], dict[int, Embeddings]] = {}

    def _new_session(self) -> int:
        """This run's number in the namespace (1, 2, ...): its track ids start at
        ``(n - 1) * SESSION_SPAN``, so a rerun or a restarted worker never takes over the
        records (and identities) of an earlier run's tracks with the same tracker ids."""
        owner = self.matcher if self.matcher is not None else self.publisher
        keys = owner.keys
        try:
            pipe = owner.redis.pipeline(transaction=True)
            pipe.incr(keys.sessions)
            pipe.expire(keys.sessions, int(self.config.matcher.retention_s))
            session, _ = pipe.execute()
        except RETRY_ERRORS as exc:
            raise RedisUnavailable(f"cannot start a run: Redis is unreachable ({exc})") from exc
        return int(session)

    def _detect(self, frames: list[Frame]) -> list:
        if self.config.detector.kind == "precomputed":
            return [self.detectors[f.camera_id].detect([f.image], [f.index])[0] for f in frames]
        (detector,) = self.detectors.values()
        return detector.detect([f.image for f in frames], [f.index for f in frames])

    def _next_frames(self, open_ids: list[str]) -> list[Frame]:
        """Up to ``detector.batch`` frames, round-robin over the cameras still open."""
        frames: list[Frame] = []
        for cid in list(open_ids):
            if len(frames) >= self.config.detector.batch:
                break
            try:
                frame = self.readers[cid].frames.get(timeout=0.05)
            except queue.Empty:
                continue
            if frame is None:
                open_ids.remove(cid)
                self.state.cameras[cid].finished = True
            else:
                frames.append(frame)
        return frames

    def _detect_timed(self, frames: list[Frame]) -> list:
        start = time.perf_counter()
        detections = self._detect(frames)
        self.state.time("detect", time.perf_counter() - start)
        return detections

    def _process(self, frames: list[Frame], detections: list) -> None:
        for frame, dets in zip(frames, detections, strict=True):
            start = time.perf_counter()
            tracks = self.trackers[frame.camera_id].update(dets, frame.image)
            self._pending += self.builders[frame.camera_id].update(frame, tracks)
            self.state.time("track", time.perf_counter() - start)
            start = time.perf_counter()
            self.outputs.frame(frame, tracks, self.readers[frame.camera_id].output_fps)
            self.state.time("output", time.perf_counter() - start)
            stats = self.state.cameras[frame.camera_id]
            stats.frames += 1
            stats.detections = len(dets)
            stats.active_tracks = self.builders[frame.camera_id].active(frame.timestamp)

    def _embed(self, summaries: list[TrackletSummary]) -> list[Embeddings]:
        """Each summary's embeddings; crops already embedded for an earlier summary of the
        same track are not embedded again (all new crops go in one batch). The cache holds
        only the crops a track still keeps, and nothing of a finished track."""
        fresh = {
            (s.camera_id, s.track_id, cid): crop
            for s in summaries
            for cid, crop in zip(s.crop_ids, s.crops, strict=True)
            if cid not in self._embedded.get((s.camera_id, s.track_id), {})
        }
        if fresh:
            start = time.perf_counter()
            emb = self.embedder.embed(list(fresh.values()))
            self.state.time("embed", time.perf_counter() - start)
            for n, (camera, track, cid) in enumerate(fresh):
                self._embedded.setdefault((camera, track), {})[cid] = emb[n : n + 1]
        parts = []
        for s in summaries:
            cached = self._embedded[(s.camera_id, s.track_id)]
            rows = [cached[cid] for cid in s.crop_ids]
            projections = (
                None
                if rows[0].projections is None
                else np.concatenate([r.projections for r in rows])
            )
            parts.append(Embeddings(np.concatenate([r.features for r in rows]), projections))
        latest = {(s.camera_id, s.track_id): s for s in summaries}  # in order: the last wins
        for key, s in latest.items():
            if s.final:
                del self._embedded[key]
            else:  # crops the track no longer keeps never come back
                cached = self._embedded[key]
                for cid in set(cached) - set(s.crop_ids):
                    del cached[cid]
        return parts

    def _submit_pending(self, force: bool = False) -> None:
        crops = sum(len(s.crops) for s in self._pending)
        if not self._pending or (crops < self.config.reid.max_batch and not force):
            return
        summaries, self._pending = self._pending, []
        tracklets = []
        for summary, part in zip(summaries, self._embed(summaries), strict=True):
            tracklet = Tracklet(
                summary.camera_id,
                summary.track_id,
                summary.start,
                summary.end,
                part.features,
                part.projections,
                self.outputs.track_crops(summary),
                summary.path,
            )
            self.outputs.tracklet(tracklet, summary.final)
            tracklets.append(tracklet)
        start = time.perf_counter()
        if self.publisher is not None:
            for tracklet in tracklets:
                self.publisher.publish(tracklet)
            self.state.time("match", time.perf_counter() - start)
            self.state.decisions["published"] += len(tracklets)
            return
        decisions = self.matcher.decide_many(tracklets)  # those ending together: jointly
        self.state.time("match", time.perf_counter() - start)
        for summary, tracklet, decision in zip(summaries, tracklets, decisions, strict=True):
            self.state.decisions[decision.action] += 1
            self.state.identities.add(decision.identity)
            self.state.identity_cameras[decision.identity].add(summary.camera_id)
            self.outputs.decision(summary, decision, tracklet.crops)
            first, last = self._footage
            self._footage = (min(first, summary.start), max(last, summary.end))
        self._maybe_relink()

    def _final_identities(self) -> dict[tuple[str, int], str | None] | None:
        """The last re-association, then every track's identity as it ended (the summary
        counts those). With Redis gone, the online decisions stand (None): the run's
        outputs are written from them rather than lost."""
        try:
            self._maybe_relink(final=True)
            final = {key: self.matcher.identity_of(*key) for key in self.outputs.identity_of}
        except RedisUnavailable as exc:
            log.error("final re-association skipped, outputs keep the online identities: %s", exc)
            return None
        self.state.identities = {i for i in final.values() if i is not None}
        self.state.identity_cameras = defaultdict(set)
        for (camera, _), identity in final.items():
            if identity is not None:
                self.state.identity_cameras[identity].add(camera)
        return final

    def _maybe_relink(self, final: bool = False) -> None:
        """Re-associate recent tracklets every ``relink_every_s`` of footage, and over the
        whole run at its end, so early mistakes are repaired (merges and splits in Redis)."""
        first, last = self._footage
        every = self.config.matcher.relink_every_s
        if self.matcher is None or last < first:
            return
        if not final and (every == 0 or (self._relinked_at or first) + every > last):
            return
        since = first if final else last - self.config.matcher.relink_window_s
        start = time.perf_counter()
        report = self.matcher.relink(since=max(since, first))
        self.state.time("relink", time.perf_counter() - start)
        self._relinked_at = last
        self.state.decisions["relink_moves"] += report.moves
        self.outputs.relink(report)

    def _refresh_fps(self) -> None:
        elapsed = time.perf_counter() - self.state.started
        for stats in self.state.cameras.values():
            stats.fps = stats.frames / elapsed if elapsed else 0.0

    def run(
        self,
        stop: threading.Event | None = None,
        on_progress: Callable[[RunState], None] | None = None,
    ) -> dict[str, Any]:
        """Process until every camera ends or ``stop`` is set; open tracklets are flushed."""
        stop = stop or threading.Event()
        if self.matcher is not None:
            # once stopping (SIGTERM: a container has seconds), Redis gets seconds, not a
            # minute, per call; what is not matched stays in tracklets.jsonl
            self.matcher.stopping = stop
        self.state.started = time.perf_counter()
        for reader in self.readers.values():
            reader.start()
        open_ids = list(self.readers)
        last_report = 0.0
        redis_gone = False
        # the detector works on the next batch (in its thread; the GPU and OpenCV release
        # the GIL) while this one tracks, embeds and matches the batch before it
        ahead: tuple[list[Frame], Future[list]] | None = None
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="detect") as detector:
                while open_ids and not stop.is_set():
                    start = time.perf_counter()
                    frames = self._next_frames(open_ids)
                    self.state.time("read", time.perf_counter() - start)
                    batch = None
                    if frames:
                        batch = (frames, detector.submit(self._detect_timed, frames))
                    if ahead is not None:
                        self._process(ahead[0], ahead[1].result())
                    ahead = batch
                    try:
                        self._submit_pending()
                    except RedisUnavailable:
                        if not stop.is_set():
                            raise
                        redis_gone = True  # stopping anyway: do not wait for Redis again
                        break
                    if on_progress and time.perf_counter() - last_report > 0.5:
                        self._refresh_fps()
                        on_progress(self.state)
                        last_report = time.perf_counter()
                if ahead is not None:  # frames read are never dropped
                    self._process(ahead[0], ahead[1].result())
        finally:
            for reader in self.readers.values():
                reader.stop()
            for builder in self.builders.values():
                self._pending += builder.flush()
            try:
                if not redis_gone:
                    self._submit_pending(force=True)
            except RedisUnavailable:
                redis_gone = True
            if redis_gone:
                log.error(
                    "Redis is unreachable: the last tracklets are recorded in %s but not "
                    "matched, and the outputs keep the online identities",
                    self.outputs.folder / "tracklets.jsonl",
                )
            final = None if redis_gone or self.matcher is None else self._final_identities()
            if self.publisher is not None and not self.publisher.flush():
                log.error(
                    "%d tracklets could not be published (Redis down)", len(self.publisher.pending)
                )
            self._refresh_fps()
            summary = self.state.summary()
            summary["outputs"] = str(self.outputs.folder)
            self.outputs.close(
                summary, None if final is None else lambda camera, track: final.get((camera, track))
            )
        return summary
