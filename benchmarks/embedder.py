"""Embedder throughput: ONNX Runtime (fp32, INT8) and TensorRT vs PyTorch eager, one run.

CASN ResNet50 IDE at 288x144 (random weights: speed does not depend on them; INT8 fidelity
is reported on them too, so re-check it on your trained model with reid-export quantize).
Prints images/s per backend and batch, and the ratio to torch eager fp32.

    .venv/bin/python -m benchmarks.embedder                  # CPU: torch vs ORT fp32 / INT8
    .venv/bin/python -m benchmarks.embedder --batches 1,16,64 # on a GPU adds TensorRT
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from reid.config import ModelConfig
from reid.export.onnx_export import export_onnx
from reid.export.quantize import quantize_onnx
from reid.export.samples import load_crops
from reid.models import CASN
from reid.preprocess import crops_to_array
from reid.runtime.onnx_backend import OrtEmbedder


def images_per_s(fn: Callable[[], object], batch: int, seconds: float) -> float:
    fn()  # warm-up
    runs, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or runs < 3:
        fn()
        runs += 1
    return runs * batch / (time.perf_counter() - start)


def trtexec_images_per_s(engine: Path, batch: int, size: tuple[int, int]) -> float | None:
    exe = shutil.which("trtexec")
    if exe is None:
        return None
    out = subprocess.run(
        [
            exe,
            f"--loadEngine={engine}",
            f"--shapes=images:{batch}x3x{size[0]}x{size[1]}",
            "--duration=5",
        ],
        capture_output=True,
        text=True,
    ).stdout
    for line in out.splitlines():
        if "Throughput:" in line:
            return float(line.split("Throughput:")[1].split()[0]) * batch
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--backbone", default="resnet50")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-embedder-"))
    config = ModelConfig(backbone=args.backbone, variant="ide")
    model = CASN.from_config(config, num_classes=751).eval()
    ckpt = work / "casn.pt"
    torch.save(
        {
            "model": model.state_dict(),
            "num_classes": 751,
            "epoch": 0,
            "config": {"model": config.model_dump(mode="json")},
        },
        ckpt,
    )
    onnx = export_onnx(ckpt, work / "casn.onnx").onnx
    int8 = quantize_onnx(onnx, work / "casn.int8.onnx")
    cuda = torch.cuda.is_available()
    device = torch.device("cuda" if cuda else "cpu")
    model = model.to(device)
    crops = load_crops(None, max(batches))
    backends: dict[str, Callable[[np.ndarray], object]] = {}

    @torch.no_grad()
    def eager(x: np.ndarray) -> object:
        out = model.embed(torch.from_numpy(x).to(device))
        if cuda:
            torch.cuda.synchronize()
        return out

    backends["torch eager fp32"] = eager
    ort_fp32 = OrtEmbedder(onnx)
    backends[f"{ort_fp32.name} fp32"] = ort_fp32.run
    if not cuda:
        backends["ort-cpu int8"] = OrtEmbedder(int8.path, prefer_cuda=False).run
    engines: dict[str, Path] = {}
    if cuda:
        try:
            from reid.export.tensorrt_build import build_engine
            from reid.runtime.tensorrt_backend import TensorRTEmbedder

            for precision in ("fp16", "int8"):
                built = build_engine(
                    onnx,
                    work / f"casn.{precision}.engine",
                    precision,
                    max_batch=max(64, max(batches)),
                )
                engines[precision] = built.engine
                trt_embedder = TensorRTEmbedder(built.engine)

                def run_trt(x: np.ndarray, e: TensorRTEmbedder = trt_embedder) -> object:
                    return e.run_tensor(torch.from_numpy(x).to(device))

                backends[f"tensorrt {precision}"] = run_trt
        except ImportError as exc:
            Console(stderr=True).print(f"TensorRT skipped: {exc}")
    table = Table(
        title=f"CASN {args.backbone} IDE 288x144 embedder, images/s "
        f"({'GPU ' + torch.cuda.get_device_name() if cuda else 'CPU'}, "
        f"torch threads {torch.get_num_threads()})"
    )
    for col in ("backend", *[f"batch {b}" for b in batches], *[f"x eager b{b}" for b in batches]):
        table.add_column(col, justify="right")
    rates: dict[str, list[float]] = {}
    for name, fn in backends.items():
        rates[name] = []
        for b in batches:
            x = crops_to_array((crops * b)[:b], (288, 144))
            rates[name].append(images_per_s(lambda x=x, fn=fn: fn(x), b, args.seconds))
    for precision, engine in engines.items():
        rates[f"trtexec {precision}"] = [
            trtexec_images_per_s(engine, b, (288, 144)) or float("nan") for b in batches
        ]
    base = rates["torch eager fp32"]
    for name, row in rates.items():
        table.add_row(
            name,
            *[f"{r:.1f}" for r in row],
            *[f"{r / b:.2f}x" for r, b in zip(row, base, strict=True)],
        )
    Console().print(table)
    print(
        f"INT8 vs fp32 feature cosine (random weights): min {int8.min_cosine:.4f}, "
        f"mean {int8.mean_cosine:.4f}"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
