"""What a run has done so far: per-camera and per-stage figures, read by the live table,
the summary and the Prometheus exporter."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from pipeline.sources import SourceStats

STAGES = ("read", "detect", "track", "embed", "match", "relink", "output")


@dataclass
class CameraStats:
    """One camera's figures; the reader's counters are read through, never copied."""

    source: SourceStats = field(default_factory=SourceStats)
    frames: int = 0
    detections: int = 0
    active_tracks: int = 0
    fps: float = 0.0
    finished: bool = False

    @property
    def dropped(self) -> int:
        return self.source.dropped

    @property
    def corrupt(self) -> int:
        return self.source.corrupt

    @property
    def reconnects(self) -> int:
        return self.source.reconnects

    @property
    def error(self) -> str | None:
        return self.source.error

    def as_dict(self) -> dict[str, Any]:
        names = (
            "frames",
            "detections",
            "active_tracks",
            "fps",
            "dropped",
            "corrupt",
            "reconnects",
            "finished",
            "error",
        )
        return {name: getattr(self, name) for name in names}


@dataclass
class RunState:
    """Stages are timed with ``with state.stage(name):`` from any thread. Detection runs a
    batch ahead in its own thread, so its seconds overlap the main loop's stages: how long
    each pair of stages ran at once (in different threads) is ``stage_overlap_s``, and the
    stage seconds add up to more than the wall time by about that much. ``relink`` seconds
    come from the matcher (:meth:`time`); periodic re-associations run inside ``match``."""

    cameras: dict[str, CameraStats]
    stage_s: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    stage_calls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STAGES, 0))
    stage_threads: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    # (stage, stage) in name order -> seconds both ran at once, in different threads
    stage_overlap_s: dict[tuple[str, str], float] = field(
        default_factory=lambda: defaultdict(float)
    )
    decisions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    identities: set[str] = field(default_factory=set)
    identity_cameras: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    started: float = field(default_factory=time.perf_counter)
    queue_depths: Callable[[], dict[str, int]] = field(default=dict)
    # thread id -> the stages open there, with their start times
    _open: dict[int, list[tuple[str, float]]] = field(
        default_factory=lambda: defaultdict(list), init=False, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def time(self, stage: str, seconds: float) -> None:
        """Add ``seconds`` measured elsewhere to ``stage`` (one call)."""
        with self._lock:
            self._add(stage, seconds)

    def _add(self, stage: str, seconds: float) -> None:
        self.stage_s[stage] += seconds
        self.stage_calls[stage] += 1
        self.stage_threads[stage].add(threading.current_thread().name)

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time the block as stage ``name``, and its overlap with stages open in other
        threads (each overlap is counted once, when the first of the two ends)."""
        me = threading.get_ident()
        with self._lock:
            start = time.perf_counter()
            self._open[me].append((name, start))
        try:
            yield
        finally:
            with self._lock:
                end = time.perf_counter()
                self._open[me].pop()
                for thread, opened in self._open.items():
                    if thread == me:
                        continue
                    for other, since in opened:
                        pair = (name, other) if name <= other else (other, name)
                        self.stage_overlap_s[pair] += end - max(start, since)
                self._add(name, end - start)

    def summary(self) -> dict[str, Any]:
        wall = time.perf_counter() - self.started
        frames = sum(c.frames for c in self.cameras.values())
        with self._lock:
            stages = self._stage_summary()
        return {
            "identities": len(self.identities),
            "cross_camera_identities": sum(len(c) > 1 for c in self.identity_cameras.values()),
            "decisions": dict(self.decisions),
            "frames": frames,
            "wall_s": round(wall, 2),
            "fps": round(frames / wall, 2) if wall else 0.0,
            **stages,
            "cameras": {k: v.as_dict() for k, v in self.cameras.items()},
        }

    def _stage_summary(self) -> dict[str, Any]:
        """Seconds and calls per stage, the threads each ran in, and which stages overlapped
        (``"detect+track": s``, longest first)."""
        overlaps = sorted(self.stage_overlap_s.items(), key=lambda item: -item[1])
        return {
            "stage_s": {k: round(v, 3) for k, v in self.stage_s.items()},
            "stage_calls": dict(self.stage_calls),
            "stage_threads": {k: sorted(v) for k, v in self.stage_threads.items()},
            "stage_overlap_s": {f"{a}+{b}": round(s, 3) for (a, b), s in overlaps},
        }
