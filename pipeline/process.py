"""Process-wide settings, made once by every entry point (the CLIs, the demo, benchmarks)
before any work, and never by a library constructor."""

from __future__ import annotations

from detectors.yolo import offline_ultralytics
from pipeline.matcher.index import single_threaded_search


def configure_process() -> None:
    """faiss searches single-threaded (one small query at a time) and ultralytics offline
    (no update checks, telemetry or downloads; read when it is first imported)."""
    single_threaded_search()
    offline_ultralytics()
