"""End-to-end pipeline throughput vs the detector alone on the same frames (ratio).

The pipeline adds tracking, crop selection, embedding, matching in Redis and all outputs;
the target is >= 0.9 of detector-only frames/s. Input: the demo's two virtual cameras of
vtest.avi, first ``--frames`` frames per camera.

    .venv/bin/python -m benchmarks.pipeline [--frames 150]
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pipeline.config import load_pipeline_config
from pipeline.demo_data import fetch_vtest
from pipeline.runner import Pipeline
from pipeline.sources import CameraReader

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150)
    parser.add_argument("--cameras", default=str(ROOT / "configs/cams/vtest_demo.yaml"))
    args = parser.parse_args()
    if fetch_vtest(ROOT / "data") is None:
        raise SystemExit("vtest.avi unavailable (needs apt-get)")
    out = tempfile.mkdtemp(prefix="bench-pipeline-")
    config = load_pipeline_config(
        args.cameras, [f"outputs.dir={out}", "redis.namespace=bench-pipeline"]
    )
    pipeline = Pipeline(config, max_frames=args.frames)
    pipeline.matcher.clear()
    # detector alone, same frames, same batching
    readers = [
        CameraReader(c.id, c.source, c.fps, crop=c.crop, max_frames=args.frames).start()
        for c in config.cameras
    ]
    frames = []
    for reader in readers:
        while (frame := reader.frames.get()) is not None:
            frames.append(frame)
    batch = config.detector.batch
    pipeline._detect(frames[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, len(frames), batch):
        pipeline._detect(frames[i : i + batch])
    detector_fps = len(frames) / (time.perf_counter() - start)
    summary = pipeline.run(threading.Event())
    pipeline_fps = summary["frames"] / summary["wall_s"]
    table = Table(title=f"pipeline vs detector only ({len(frames)} frames, 2 virtual cameras)")
    for col in ("detector only frames/s", "pipeline frames/s", "ratio", "identities"):
        table.add_column(col, justify="right")
    table.add_row(
        f"{detector_fps:.2f}",
        f"{pipeline_fps:.2f}",
        f"{pipeline_fps / detector_fps:.2f}",
        str(summary["identities"]),
    )
    Console().print(table)
    stages = Table(title="pipeline time per stage (s)")
    for stage in summary["stage_s"]:
        stages.add_column(stage, justify="right")
    stages.add_row(*(f"{v:.1f}" for v in summary["stage_s"].values()))
    Console().print(stages)
    pipeline.matcher.clear()


if __name__ == "__main__":
    main()
