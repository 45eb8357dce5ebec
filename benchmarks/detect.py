"""Person detector throughput on vtest.avi: YOLO .pt vs .onnx vs OpenVINO vs HOG, interleaved.

    .venv/bin/python -m benchmarks.detect [--frames 60] [--imgsz 640] [--batch 4] \
        [--size 1920x1080] [--rounds 3] [--int8 FOLDER]

Each row: frames/s (median of the rounds), its per-round ratio to the ``.pt``, the boxes it
found and its recall against the ``.pt`` boxes (share of them it found at IoU 0.5, one to
one). The OpenVINO fp32 row is the cached export a CPU runs by default (made here if missing).
On a CUDA machine with TensorRT installed, a .engine exported by ultralytics from the
default weights is added (``--engine PATH`` to reuse one). ``--only "yolo .pt"`` runs a subset.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
from collections.abc import Callable
from pathlib import Path

import cv2
import torch
from rich.console import Console
from rich.table import Table

from benchmarks.interleave import batched_rate, interleave, ratio
from detectors import build_detector, default_weights
from detectors.agreement import box_recall
from detectors.openvino_export import cached_openvino, openvino_installed
from detectors.yolo_weights import pt_model
from pipeline.process import configure_process
from reid_demo.vtest import fetch_vtest

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    configure_process()  # as the CLIs do
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--engine", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=None, help="comma-separated candidates to run")
    parser.add_argument("--size", default=None, help="resize frames to WxH first, e.g. 1920x1080")
    parser.add_argument(
        "--int8",
        type=Path,
        default=None,
        help="an INT8 *_openvino_model/ (reid-export detector --int8) to add as a row",
    )
    args = parser.parse_args()
    video = fetch_vtest(ROOT / "data")
    if video is None:
        raise SystemExit("vtest.avi unavailable (needs apt-get); see reid_demo/vtest.py")
    cap = cv2.VideoCapture(str(video))
    frames = [cap.read()[1] for _ in range(args.frames)]
    if args.size:
        width, height = (int(v) for v in args.size.split("x"))
        frames = [cv2.resize(f, (width, height)) for f in frames]
    yolo: dict[str, Callable[[], Path]] = {  # weights, found when the candidate is built
        "yolo .pt": default_weights,
        "yolo .onnx": lambda: default_weights(onnx=True),  # the shipped fp16 export
    }
    if openvino_installed():  # the CPU default
        yolo["yolo openvino"] = lambda: cached_openvino(default_weights())
    candidates = {
        name: (lambda w=weights: build_detector("yolo", weights=str(w()), imgsz=args.imgsz))
        for name, weights in yolo.items()
    }
    if openvino_installed():
        candidates["yolo openvino f32"] = lambda: build_detector(
            "yolo",
            weights=str(cached_openvino(default_weights())),
            imgsz=args.imgsz,
            openvino_precision="f32",
        )
    if args.int8 is not None:
        candidates["yolo openvino int8"] = lambda: build_detector(
            "yolo", weights=str(args.int8), imgsz=args.imgsz
        )
    candidates["hog"] = lambda: build_detector("hog")
    engine = args.engine
    if torch.cuda.is_available() and (engine or importlib.util.find_spec("tensorrt")):
        if engine is None:
            try:  # from the restricted-loaded .pt
                engine = Path(
                    pt_model(default_weights()).export(format="engine", half=True, imgsz=args.imgsz)
                )
            except Exception as exc:  # a failed export: report and go on with the others
                Console(stderr=True).print(f"TensorRT engine skipped: {exc}")
        if engine is not None:
            candidates["yolo .engine"] = lambda: build_detector(
                "yolo", weights=str(engine), imgsz=args.imgsz
            )
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
    h, w = frames[0].shape[:2]
    table = Table(
        title=f"person detection on vtest.avi ({args.frames} frames of {w}x{h}, {args.imgsz} px, "
        f"batch {args.batch}, {device}), median of {args.rounds} interleaved rounds"
    )
    wanted = set(args.only.split(",")) if args.only else set(candidates)
    detectors = {name: make() for name, make in candidates.items() if name in wanted}
    if not detectors:
        raise SystemExit(f"--only names none of the candidates: {', '.join(candidates)}")
    baseline = "yolo .pt" if "yolo .pt" in detectors else next(iter(detectors))
    for col in ("detector", "frames/s", f"x {baseline} (spread)", "boxes", f"recall of {baseline}"):
        table.add_column(col, justify="right")
    found = {
        name: [
            d
            for i in range(0, len(frames), args.batch)
            for d in det.detect(frames[i : i + args.batch])
        ]
        for name, det in detectors.items()
    }
    rates = interleave(
        {
            name: (lambda d=det: batched_rate(d.detect, frames, args.batch))
            for name, det in detectors.items()
        },
        args.rounds,
    )
    for name, row in rates.items():
        runtime = getattr(detectors[name], "runtime", "")
        table.add_row(
            f"{name} (computes {detectors[name].inference_precision})"
            if runtime == "OpenVINO"
            else name,
            f"{statistics.median(row):.2f}",
            str(ratio(row, rates[baseline])),
            str(sum(len(d) for d in found[name])),
            f"{box_recall(found[baseline], found[name]):.1%}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
