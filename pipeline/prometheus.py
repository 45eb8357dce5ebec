"""Prometheus metrics of a running pipeline (the live table's figures plus latencies)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from pipeline.matcher.stream import MatcherWorker
from pipeline.run_state import RunState


class RunStateCollector(Collector):
    """Reads :class:`RunState` at scrape time, so the hot loop does no metric bookkeeping."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        s = self.state
        per_camera = {
            "reid_camera_frames_total": ("frames processed", "frames", CounterMetricFamily),
            "reid_camera_dropped_frames_total": (
                "live frames dropped",
                "dropped",
                CounterMetricFamily,
            ),
            "reid_camera_corrupt_frames_total": (
                "corrupt frames skipped",
                "corrupt",
                CounterMetricFamily,
            ),
            "reid_camera_reconnects_total": (
                "source reconnects",
                "reconnects",
                CounterMetricFamily,
            ),
            "reid_camera_fps": ("processed frames per second", "fps", GaugeMetricFamily),
            "reid_camera_detections": ("people in the last frame", "detections", GaugeMetricFamily),
            "reid_camera_active_tracks": ("active tracks", "active_tracks", GaugeMetricFamily),
        }
        for name, (doc, attr, kind) in per_camera.items():
            family = kind(name.removesuffix("_total"), doc, labels=["camera"])
            for cid, cam in s.cameras.items():
                family.add_metric([cid], float(getattr(cam, attr)))
            yield family
        queue_depth = GaugeMetricFamily(
            "reid_camera_queue_depth", "frames waiting", labels=["camera"]
        )
        for cid, depth in s.queue_depths().items():
            queue_depth.add_metric([cid], depth)
        yield queue_depth
        stage = CounterMetricFamily("reid_stage_seconds", "time spent per stage", labels=["stage"])
        calls = CounterMetricFamily("reid_stage_calls", "calls per stage", labels=["stage"])
        for name, seconds in s.stage_s.items():
            stage.add_metric([name], seconds)
            calls.add_metric([name], s.stage_calls[name])
        yield stage
        yield calls
        yield GaugeMetricFamily(
            "reid_identities", "identities seen this run", value=len(s.identities)
        )
        decisions = CounterMetricFamily("reid_decisions", "matcher decisions", labels=["action"])
        for action, count in s.decisions.items():
            decisions.add_metric([action], count)
        yield decisions


class WorkerCollector(Collector):
    """A matcher consumer's progress (tracklets processed, gallery size in this process)."""

    def __init__(self, worker: MatcherWorker) -> None:
        self.worker = worker

    def collect(self):  # noqa: ANN201 - prometheus_client's protocol
        yield CounterMetricFamily(
            "reid_matcher_tracklets", "tracklets processed", value=self.worker.processed
        )
        yield GaugeMetricFamily(
            "reid_matcher_index_identities",
            "identities in the index",
            value=len(self.worker.matcher.index),
        )


def serve_worker_metrics(worker: MatcherWorker, port: int, host: str = "127.0.0.1") -> None:
    registry = CollectorRegistry()
    registry.register(WorkerCollector(worker))
    start_http_server(port, addr=host, registry=registry)


def metrics_registry(state: RunState) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(RunStateCollector(state))
    return registry


def serve_metrics(state: RunState, port: int, host: str = "127.0.0.1") -> None:
    """Serve ``/metrics`` on ``host:port`` (a daemon thread)."""
    start_http_server(port, addr=host, registry=metrics_registry(state))
