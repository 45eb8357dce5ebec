"""End-to-end pipeline throughput vs the detector alone on the same frames, interleaved.

The pipeline adds decoding, tracking, crop selection, embedding, matching in Redis and all
outputs. Each round times the detector alone on the round's frames, then runs a fresh
pipeline over them; the median per-round ratio and its spread are printed, with the time
per stage (the largest one is the bottleneck).

    .venv/bin/python -m benchmarks.pipeline [--frames 150]      # the demo's two cameras
    .venv/bin/python -m benchmarks.pipeline --vs-pt             # and with the .pt detector
    .venv/bin/python -m benchmarks.pipeline --streams 16 --size 1920x1080 --frames 100 \\
        --set detector.batch=16 --set reid.model=casn.pt        # how many 1080p streams

``--streams N`` makes N cameras of vtest.avi upscaled to ``--size`` (each decodes its own
copy of the file) and reports how many streams at ``--stream-fps`` the pipeline sustains.
``--processes 1,2,4`` then also runs the scale-out deployment on the same streams: P camera
worker processes (``--publish-only``, the cameras split between them) and one matcher on one
Redis, all at once; their frames/s are added up.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import yaml
from rich.console import Console
from rich.table import Table

from benchmarks.interleave import batched_rate, ratio
from detectors import default_weights
from pipeline.config import PipelineConfig, load_pipeline_config
from pipeline.matcher import Store, connect
from pipeline.process import configure_process
from pipeline.run_state import STAGES
from pipeline.runner import Pipeline
from pipeline.sources import CameraReader, Frame
from reid_demo.vtest import fetch_vtest

ROOT = Path(__file__).resolve().parents[1]


def upscaled_video(source: Path, frames: int, size: tuple[int, int], out: Path) -> Path:
    """The first ``frames`` frames of ``source`` resized to ``size`` (w, h), as MPEG-4."""
    cap = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(
        str(out), cv2.VideoWriter_fourcc(*"mp4v"), cap.get(cv2.CAP_PROP_FPS) or 10, size
    )
    for _ in range(frames):
        ok, image = cap.read()
        if not ok:
            break
        writer.write(cv2.resize(image, size))
    writer.release()
    return out


def streams_cameras(video: Path, streams: int, work: Path) -> Path:
    """A cams.yaml with ``streams`` cameras, each reading ``video`` at full rate."""
    cams = {"cameras": [{"id": f"cam{i}", "source": str(video)} for i in range(streams)]}
    path = work / "cams.yaml"
    path.write_text(yaml.safe_dump(cams))
    return path


def decoded_frames(config: PipelineConfig, frames: int) -> list[Frame]:
    """Every camera's frames, decoded once per distinct (source, crop)."""
    seen: dict[tuple[str, object], list[Frame]] = {}
    out: list[Frame] = []
    for c in config.cameras:
        key = (str(c.source), c.crop)
        if key not in seen:
            reader = CameraReader(c.id, c.source, c.fps, crop=c.crop, max_frames=frames).start()
            seen[key] = []
            while (frame := reader.frames.get()) is not None:
                seen[key].append(frame)
        out += seen[key]
    return out


def scale_out_fps(
    cameras: Path, config: PipelineConfig, processes: int, frames: int, sets: list[str], work: Path
) -> list[float]:
    """Each camera worker's frames/s while P workers and one matcher run at once."""
    redis = connect(None, work / f"redis-{processes}")
    url = f"unix://{redis.socket_file}"
    ids = [c.id for c in config.cameras]
    groups = [ids[i::processes] for i in range(processes)]
    cli = [sys.executable, "-m", "pipeline.cli"]
    common = ["--cameras", str(cameras), "--redis", url, *(a for s in sets for a in ("--set", s))]
    matcher = subprocess.Popen(
        [*cli, "matcher", "--exit-when-idle", "5", *common], stdout=subprocess.DEVNULL
    )
    outs = [work / f"p{processes}-w{i}" for i in range(processes)]
    workers = [
        subprocess.Popen(
            [*cli, *common, "--only", ",".join(group), "--publish-only", "--no-live-table"]
            + ["--max-frames", str(frames), "--out", str(out)],
            stdout=subprocess.DEVNULL,
        )
        for group, out in zip(groups, outs, strict=True)
    ]
    if any(w.wait() != 0 for w in workers):
        raise SystemExit(f"a camera worker failed (outputs under {work})")
    matcher.wait()
    summaries = [json.loads((out / "summary.json").read_text()) for out in outs]
    return [s["frames"] / s["wall_s"] for s in summaries]


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=150, help="frames per camera")
    parser.add_argument("--cameras", default=str(ROOT / "configs/cams/vtest_demo.yaml"))
    parser.add_argument("--streams", type=int, default=0, help="N upscaled vtest cameras")
    parser.add_argument("--size", default="1920x1080", help="stream size (with --streams)")
    parser.add_argument("--stream-fps", type=float, default=15.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--processes", default="", help="with --streams: e.g. 1,2,4 workers")
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument(
        "--vs-pt", action="store_true", help="also the shipped .pt detector, interleaved"
    )
    args = parser.parse_args()
    vtest = fetch_vtest(ROOT / "data")
    if vtest is None:
        raise SystemExit("vtest.avi unavailable (needs apt-get)")
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    cameras = Path(args.cameras)
    if args.streams:
        size = tuple(int(v) for v in args.size.split("x"))
        video = upscaled_video(vtest, args.frames, size, work / "stream.mp4")  # type: ignore[arg-type]
        cameras = streams_cameras(video, args.streams, work)
    overrides = [f"outputs.dir={work / 'out'}", "redis.namespace=bench-pipeline", *args.overrides]
    if args.streams and args.processes:
        config = load_pipeline_config(cameras, overrides)
        for processes in (int(p) for p in args.processes.split(",")):
            rates = scale_out_fps(cameras, config, processes, args.frames, args.overrides, work)
            total = sum(rates)
            print(
                f"{processes} worker processes x {args.streams // processes}+ streams: "
                f"{total:.1f} frames/s in all ({', '.join(f'{r:.1f}' for r in rates)}), "
                f"{total / args.stream_fps:.1f} streams at {args.stream_fps:g} fps"
            )
    config = load_pipeline_config(cameras, overrides)
    variants = {"default": config}
    if args.vs_pt:  # today's CPU default before OpenVINO, same frames, interleaved
        pt = f"detector.weights={default_weights()}"
        variants["yolo .pt"] = load_pipeline_config(cameras, [*overrides, pt])
    frames = decoded_frames(config, args.frames)
    rounds = {name: Rounds() for name in variants}
    for _ in range(args.rounds):
        for name, variant in variants.items():
            rounds[name].measure(variant, frames, args.frames)
    report(rounds, config, frames, args)


@dataclass
class Rounds:
    """One variant's measurements, a round at a time."""

    detector: list[float] = field(default_factory=list)
    pipeline: list[float] = field(default_factory=list)
    stages: list[dict[str, float]] = field(default_factory=list)
    identities: list[int] = field(default_factory=list)
    detector_runtime: str = ""
    embedder: str = ""

    def measure(self, config: PipelineConfig, frames: list[Frame], max_frames: int) -> None:
        """The detector alone on ``frames``, then a fresh pipeline over them."""
        pipeline = Pipeline(config, max_frames=max_frames)
        Store.open(config.redis.url, config.redis.namespace).clear()
        self.detector.append(batched_rate(pipeline._detect, frames, config.detector.batch))
        summary = pipeline.run(threading.Event())
        Store.open(config.redis.url, config.redis.namespace).clear()
        self.pipeline.append(summary["frames"] / summary["wall_s"])
        self.stages.append(summary["stage_s"])
        self.identities.append(summary["identities"])
        detector = next(iter(pipeline.detectors.values()))
        self.detector_runtime = getattr(detector, "runtime", detector.name)
        self.embedder = pipeline.embedder.name


def report(
    rounds: dict[str, Rounds], config: PipelineConfig, frames: list[Frame], args: Any
) -> None:
    h, w = frames[0].image.shape[:2]
    table = Table(
        title=f"pipeline vs detector only: {len(config.cameras)} cameras x {args.frames} frames "
        f"of {w}x{h}, embedder {rounds['default'].embedder}, median of {args.rounds} "
        "interleaved rounds"
    )
    baseline = rounds.get("yolo .pt")
    columns = ["variant", "detector only frames/s", "pipeline frames/s", "pipeline / detector"]
    columns += ["pipeline x yolo .pt (spread)"] if baseline else []
    for col in [*columns, "identities"]:
        table.add_column(col, justify="right")
    for name, r in rounds.items():
        versus = [str(ratio(r.pipeline, baseline.pipeline))] if baseline else []
        table.add_row(
            f"{name} ({r.detector_runtime})",
            f"{statistics.median(r.detector):.1f}",
            f"{statistics.median(r.pipeline):.1f}",
            str(ratio(r.pipeline, r.detector)),
            *versus,
            str(statistics.median(r.identities)),
        )
    Console().print(table)
    stages = Table(title="pipeline time per stage (s, median over rounds)")
    for col in ("variant", *STAGES):
        stages.add_column(col, justify="right")
    for name, r in rounds.items():
        medians = {s: statistics.median(row[s] for row in r.stages) for s in STAGES}
        stages.add_row(name, *(f"{medians[s]:.1f}" for s in STAGES))
        busiest = max(medians, key=medians.__getitem__)
        print(f"{name}: bottleneck stage {busiest} ('read' is waiting for decoded frames)")
    Console().print(stages)
    if args.streams:
        fps = statistics.median(rounds["default"].pipeline)
        print(
            f"streams of {w}x{h} at {args.stream_fps:g} fps one pipeline process sustains: "
            f"{fps / args.stream_fps:.1f} (aggregate {fps:.1f} frames/s)"
        )


if __name__ == "__main__":
    main()
