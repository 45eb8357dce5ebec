"""Person detector throughput on vtest.avi: YOLO .pt vs .onnx vs OpenCV HOG, one run.

    .venv/bin/python -m benchmarks.detect [--frames 60] [--imgsz 640] [--batch 4]

On a CUDA machine with TensorRT, a .engine exported by ultralytics from the default
weights is added (``--engine PATH`` to reuse one).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import torch
from rich.console import Console
from rich.table import Table

from detectors import build_detector, default_weights
from pipeline.demo_data import fetch_vtest

ROOT = Path(__file__).resolve().parents[1]


def fps(detector, frames, batch: int) -> tuple[float, int]:  # noqa: ANN001
    detector.detect(frames[:batch])  # warm-up
    found, start = 0, time.perf_counter()
    for i in range(0, len(frames), batch):
        found += sum(len(d) for d in detector.detect(frames[i : i + batch]))
    return len(frames) / (time.perf_counter() - start), found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--engine", type=Path, default=None)
    args = parser.parse_args()
    video = fetch_vtest(ROOT / "data")
    if video is None:
        raise SystemExit("vtest.avi unavailable (needs apt-get); see pipeline/demo_data.py")
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(args.frames)]
    candidates = {
        "yolo .pt": lambda: build_detector("yolo", imgsz=args.imgsz),
        "yolo .onnx": lambda: build_detector("yolo", default_weights(onnx=True), imgsz=args.imgsz),
        "hog": lambda: build_detector("hog"),
    }
    if torch.cuda.is_available():
        engine = args.engine
        if engine is None:
            try:
                from ultralytics import YOLO

                engine = Path(
                    YOLO(str(default_weights())).export(
                        format="engine", half=True, imgsz=args.imgsz
                    )
                )
            except Exception as exc:  # no TensorRT: report and go on with the others
                Console(stderr=True).print(f"TensorRT engine skipped: {exc}")
        if engine is not None:
            candidates["yolo .engine"] = lambda: build_detector("yolo", engine, imgsz=args.imgsz)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    table = Table(
        title=f"person detection on vtest.avi ({args.frames} frames, "
        f"{args.imgsz} px, batch {args.batch}, {device})"
    )
    for col in ("detector", "frames/s", "x yolo .pt", "boxes found"):
        table.add_column(col, justify="right")
    rates = {}
    for name, make in candidates.items():
        rates[name] = fps(make(), frames, args.batch)
    base = rates["yolo .pt"][0]
    for name, (rate, found) in rates.items():
        table.add_row(name, f"{rate:.2f}", f"{rate / base:.2f}x", str(found))
    Console().print(table)


if __name__ == "__main__":
    main()
