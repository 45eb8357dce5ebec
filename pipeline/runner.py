"""The pipeline: cameras -> detector -> per-camera trackers -> tracklets -> shared embedder
-> matcher (Redis) -> outputs. One process, reader threads per camera, and a main loop that
batches frames for the detector and crops for the embedder across all cameras.
"""

from __future__ import annotations

import errno
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

from detectors import Detections, Detector
from pipeline.config import PipelineConfig, ReidConfig
from pipeline.matcher import Decision, RedisUnavailable, Tracklet
from pipeline.matcher.codec import identity_id
from pipeline.matcher.store import RedisFull, RetryPolicy, Store
from pipeline.output_folder import OutputFolderError
from pipeline.outputs import RunOutputs
from pipeline.run_state import CameraStats, RunState
from pipeline.sinks import MatchHere, TrackletSink
from pipeline.sources import CameraReader, Frame, source_kind
from pipeline.tracking import CameraTracker
from pipeline.tracklets import TrackletBuilder, TrackletSummary
from reid.runtime import Embedder, Embeddings, load_embedder
from reid.runtime.consistency import ConsistencyScorer
from reid.runtime.fallback import fallback_embedder
from reid.runtime.metadata import scorer_path
from reid.runtime.pair_scoring import AttentionScorer

log = logging.getLogger(__name__)
# track ids of the run numbered n start at (n - 1) * this. n is at least the unix time in
# seconds (Store.new_session), so two runs' ids could only meet if one made a million tracks
# per second between their starts; and ids stay below 2**53 (exact in JSON and the page)
SESSION_SPAN = 10**6
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def build_detectors(config: PipelineConfig) -> dict[str, Detector]:
    """Camera id -> its detector: one shared by every camera, or, for kinds that replay a
    camera's own detections file, one per camera."""
    settings = config.detector
    if settings.per_camera:
        return {c.id: settings.build(c.detections) for c in config.cameras}
    shared = settings.build()
    return {c.id: shared for c in config.cameras}


def build_embedder(config: ReidConfig) -> tuple[Embedder, AttentionScorer | None]:
    """The configured model (or the offline ImageNet fallback) and its scorer, if exported."""
    if config.model is None:
        log.warning(
            "no reid.model given: ImageNet MobileNetV2 features, feature-only matching "
            "(train one with reid-train for real accuracy)"
        )
        return fallback_embedder(backend=config.backend), None
    return load_embedder(Path(config.model), config.backend), load_scorer(config)


def load_scorer(config: ReidConfig) -> AttentionScorer | None:
    """The attention-consistency scorer exported beside ``config.model``, if any (the
    matcher needs only this, not the model)."""
    if config.model is None:
        return None
    scorer_file = scorer_path(Path(config.model))
    if not scorer_file.is_file():
        log.warning("no %s beside the model: matching is feature-only", scorer_file.name)
        return None
    return ConsistencyScorer.load(scorer_file).to_numpy()


class Pipeline:
    """One run over the cameras of a :class:`PipelineConfig`: built stages composed.

    Args:
        config: the run's settings.
        max_frames: stop each camera after this many frames.
        sink: where tracklets go; default :class:`~pipeline.sinks.MatchHere` (matched in
            this process, against ``config.redis``).

    :attr:`stop` ends the run when set (a signal handler's target); once it is set, Redis
    calls give up after seconds instead of riding out an outage for a minute.
    """

    def __init__(
        self,
        config: PipelineConfig,
        max_frames: int | None = None,
        sink: TrackletSink | None = None,
    ) -> None:
        self.config = config
        # cameras first, opened together (a silent stream costs its timeout once, not once
        # per camera): a missing file is reported before models load or Redis is asked
        with ThreadPoolExecutor(max(1, len(config.cameras)), thread_name_prefix="open") as pool:
            opened = pool.map(lambda c: CameraReader.from_config(c, max_frames), config.cameras)
            self.readers = {c.id: reader for c, reader in zip(config.cameras, opened, strict=True)}
        self.detectors = build_detectors(config)
        self.embedder, scorer = build_embedder(config.reid)
        self.stop = threading.Event()
        retry = RetryPolicy(config.redis.retry_budget_s, stopping=self.stop)
        self.sink = sink or MatchHere.from_config(config.redis, config.matcher, scorer, retry)
        store = Store(self.sink.redis, self.sink.keys.namespace, retry)
        self.session = store.new_session(config.matcher.retention_s)
        store.record_model(self._feature_dim(), self.embedder.name, config.matcher.retention_s)
        self.epoch = config.matcher.footage_epoch or (
            "wall"
            if all(source_kind(c.source) in ("stream", "webcam") for c in config.cameras)
            else f"run-{self.session}"
        )
        id_base = (self.session - 1) * SESSION_SPAN
        self.trackers = {
            cid: CameraTracker(config.tracker, r.output_fps, id_base)
            for cid, r in self.readers.items()
        }
        tl = config.tracklets
        self.builders = {cid: TrackletBuilder(cid, **tl.model_dump()) for cid in self.readers}
        self.outputs = RunOutputs(
            config.outputs.dir,
            config.outputs,
            list(self.readers),
            config.matcher.overlapping,
            [c.source for c in config.cameras],
        )
        self.state = RunState(
            {cid: CameraStats(source=r.stats) for cid, r in self.readers.items()},
            queue_depths=lambda: {c: r.frames.qsize() for c, r in self.readers.items()},
        )
        self._pending: list[TrackletSummary] = []
        self._batches = 0  # batches handed to the sink (the run record numbers them)
        # (camera, track) -> crop id -> embedding, for open tracks' kept crops
        self._embedded: dict[tuple[str, int], dict[int, Embeddings]] = {}

    def _feature_dim(self) -> int:
        """The model's feature size (one blank crop through it, which also warms it up)."""
        return int(self.embedder.embed([np.zeros((128, 64, 3), np.uint8)]).features.shape[1])

    def _detect(self, frames: list[Frame]) -> list[Detections]:
        """Each frame's detections; frames of cameras sharing a detector go in one call."""
        found: list[Detections | None] = [None] * len(frames)
        by_detector: dict[int, list[int]] = defaultdict(list)
        for n, frame in enumerate(frames):
            by_detector[id(self.detectors[frame.camera_id])].append(n)
        for batch in by_detector.values():
            detector = self.detectors[frames[batch[0]].camera_id]
            results = detector.detect(
                [frames[n].image for n in batch], [frames[n].index for n in batch]
            )
            for n, detections in zip(batch, results, strict=True):
                found[n] = detections
        return [d for d in found if d is not None]

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
        with self.state.stage("detect"):
            return self._detect(frames)

    def _process(self, frames: list[Frame], detections: list) -> None:
        for frame, dets in zip(frames, detections, strict=True):
            with self.state.stage("track"):
                tracks = self.trackers[frame.camera_id].update(dets, frame.image)
                self._pending += self.builders[frame.camera_id].update(frame, tracks)
            with self.state.stage("output"):
                self.outputs.frame(frame, tracks, self.readers[frame.camera_id].output_fps)
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
            with self.state.stage("embed"):
                emb = self.embedder.embed(list(fresh.values()))
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

    def _submit_pending(self, force: bool = False, matched: bool = True) -> None:
        """Embed and record the pending summaries once enough crops wait (or ``force``),
        then hand them to the sink (``matched``) or keep them unmatched (Redis is gone)."""
        crops = sum(len(s.crops) for s in self._pending)
        if not self._pending or (crops < self.config.reid.max_batch and not force):
            return
        summaries, self._pending = self._pending, []
        self._batches += 1
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
                self.epoch,
            )
            self.outputs.tracklet(tracklet, summary.final, self._batches)
            tracklets.append(tracklet)
        if not matched:
            self._unmatched(summaries, tracklets)
            return
        try:
            self.sink.submit(summaries, tracklets)
        except RedisUnavailable:
            self._unmatched(summaries, tracklets)
            raise

    def _unmatched(self, summaries: list[TrackletSummary], tracklets: list[Tracklet]) -> None:
        """Tracklets Redis could not take still reach the outputs: each keeps its track's
        identity so far, or one of its own (re-association in memory links them at the
        end, :meth:`pipeline.sinks.MatchHere.finish`)."""
        for summary, tracklet in zip(summaries, tracklets, strict=True):
            key = (summary.camera_id, summary.track_id)
            identity = self.outputs.live_identity.get(key) or identity_id(
                f"{self.config.redis.namespace}|unmatched|{tracklet.ref}|{tracklet.start!r}"
            )
            self.outputs.decision(summary, Decision(identity, "unmatched"), tracklet.crops)

    def _refresh_fps(self) -> None:
        elapsed = time.perf_counter() - self.state.started
        for stats in self.state.cameras.values():
            stats.fps = stats.frames / elapsed if elapsed else 0.0

    def run(
        self,
        stop: threading.Event | None = None,
        on_progress: Callable[[RunState], None] | None = None,
    ) -> dict[str, Any]:
        """Process until every camera ends or :attr:`stop` (or ``stop``) is set; open
        tracklets are flushed."""
        done = threading.Event()
        if stop is not None and stop is not self.stop:
            threading.Thread(target=_forward, args=(stop, self.stop, done), daemon=True).start()
        stop = self.stop
        self.sink.start(stop, self.state, self.outputs)
        self.state.started = time.perf_counter()
        for reader in self.readers.values():
            reader.start()
        open_ids = list(self.readers)
        last_report = 0.0
        redis_gone, lost = False, None  # lost: the Redis error that ended the run early
        full: OSError | None = None  # the disk filled up
        # the detector works on the next batch (in its thread; the GPU and OpenCV release
        # the GIL) while this one tracks, embeds and matches the batch before it
        ahead: tuple[list[Frame], Future[list]] | None = None
        try:
            with ThreadPoolExecutor(1, thread_name_prefix="detect") as detector:
                while open_ids and not stop.is_set():
                    with self.state.stage("read"):
                        frames = self._next_frames(open_ids)
                    batch = None
                    if frames:
                        batch = (frames, detector.submit(self._detect_timed, frames))
                    if ahead is not None:
                        self._process(ahead[0], ahead[1].result())
                    ahead = batch
                    try:
                        self._submit_pending()
                    except RedisUnavailable as exc:  # full, or gone past the retry budget
                        redis_gone, lost = True, None if stop.is_set() else exc
                        break
                    if on_progress and time.perf_counter() - last_report > 0.5:
                        self._refresh_fps()
                        on_progress(self.state)
                        last_report = time.perf_counter()
                if ahead is not None:  # frames read are never dropped
                    self._process(ahead[0], ahead[1].result())
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            full = exc  # every line written so far is whole: the outputs end from them
        finally:
            for reader in self.readers.values():
                reader.stop()
            for builder in self.builders.values():
                self._pending += builder.flush()
            try:
                if full is None:
                    self._submit_pending(force=True, matched=not redis_gone)
            except RedisUnavailable as exc:
                redis_gone, lost = True, None if stop.is_set() else exc
            if redis_gone:
                log.error(
                    "Redis is %s: every tracklet is recorded in %s, and the outputs are "
                    "re-associated in memory from the run's own records",
                    "full" if isinstance(lost, RedisFull) else "unreachable",
                    self.outputs.folder / "tracklets.jsonl",
                )
            recorded = self.outputs.recorded()  # read once: the sink and the outputs need it
            final = self.sink.finish(redis_gone, recorded)
            self._refresh_fps()
            summary = self.state.summary()
            summary["outputs"] = str(self.outputs.folder)
            summary["epoch"] = self.epoch  # `reid-pipeline relink --run` re-associates it
            try:
                self.outputs.close(summary, recorded, final)
            except OSError as exc:
                if exc.errno not in DISK_FULL:
                    raise
                full = full or exc
            done.set()
        if full is not None:
            raise OutputFolderError(
                f"the disk holding {self.outputs.folder} is full ({full.strerror}): free space "
                "and run again (what was written is complete; `reid-pipeline relink --run` "
                "reads it)"
            ) from full
        if lost is not None:  # the outputs are written; the run still failed
            raise RedisUnavailable(f"{lost} (outputs written to {self.outputs.folder})") from lost
        return summary


def _forward(source: threading.Event, target: threading.Event, done: threading.Event) -> None:
    """Set ``target`` when ``source`` is set, until ``done``."""
    while not done.is_set():
        if source.wait(0.1):
            target.set()
            return
