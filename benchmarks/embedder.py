"""Embedder throughput: ONNX Runtime (fp32, INT8) and TensorRT vs PyTorch eager, one run.

CASN ResNet50 IDE at 288x144 (random weights: speed does not depend on them; INT8 fidelity
is reported on them too, so re-check it on your trained model with reid-export quantize).
Prints images/s per backend and batch and the ratio to torch eager fp32, timed in
interleaved rounds (median ratio and its spread). On a GPU: torch fp16 eager and as CUDA graphs (our
backend's default there), ONNX Runtime's CUDA
provider when installed, TensorRT fp16 / INT8 when installed, and trtexec as the limit.

    .venv/bin/python -m benchmarks.embedder                  # CPU: torch vs ORT fp32 / INT8
    .venv/bin/python -m benchmarks.embedder --batches 1,16,64 # on a GPU adds TensorRT
"""

from __future__ import annotations

import argparse
import copy
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from benchmarks.interleave import interleave, rate, ratio
from reid.config import ModelConfig
from reid.export.onnx_export import export_onnx
from reid.export.quantize import quantize_onnx
from reid.export.samples import load_crops
from reid.models import CASN
from reid.preprocess import crops_to_array
from reid.runtime.onnx_backend import OrtEmbedder
from reid.runtime.tensorrt_backend import TensorRTEmbedder, TensorRTUnavailable
from reid.runtime.torch_backend import TorchEmbedder
from reid.training.checkpoint import save_untrained


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
    parser.add_argument("--seconds", type=float, default=1.0, help="per candidate and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backbone", default="resnet50")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-embedder-"))
    config = ModelConfig(backbone=args.backbone, variant="ide")
    model = CASN.from_config(config, num_classes=751).eval()
    ckpt = save_untrained(work / "casn.pt", model, config, num_classes=751)
    onnx = export_onnx(ckpt, work / "casn.onnx").onnx
    int8 = quantize_onnx(onnx, work / "casn.int8.onnx")
    cuda = torch.cuda.is_available()
    device = "cuda" if cuda else "cpu"
    inputs = {b: crops_to_array((load_crops(None, b) * b)[:b], (288, 144)) for b in batches}
    # each backend: a function of the batch size returning one call's work
    backends: dict[str, Callable[[int], Callable[[], object]]] = {}

    def torch_backend(half: bool, graphs: bool = False) -> Callable[[int], Callable[[], object]]:
        embedder = TorchEmbedder(copy.deepcopy(model), device=device, half=half, graphs=graphs)
        tensors = {b: torch.from_numpy(x).to(device) for b, x in inputs.items()}
        return lambda b: lambda: embedder.embed_tensor(tensors[b])

    backends["torch eager fp32"] = torch_backend(half=False)
    if cuda:
        backends["torch eager fp16"] = torch_backend(half=True)
        backends["torch fp16 CUDA graphs"] = torch_backend(half=True, graphs=True)
    ort_fp32 = OrtEmbedder(onnx)
    backends[f"{ort_fp32.name} fp32"] = lambda b: lambda: ort_fp32.run(inputs[b])
    if not cuda:
        ort_int8 = OrtEmbedder(int8.path, prefer_cuda=False)
        backends["ort-cpu int8"] = lambda b: lambda: ort_int8.run(inputs[b])
    engines: dict[str, Path] = {}
    if cuda:
        try:
            from reid.export.tensorrt_build import build_engine

            for precision in ("fp16", "int8"):
                built = build_engine(
                    onnx, work / f"casn.{precision}.engine", precision, max_batch=max(64, *batches)
                )
                engines[precision] = built.engine
                trt_embedder = TensorRTEmbedder(built.engine)
                tensors = {b: torch.from_numpy(x).to(device) for b, x in inputs.items()}

                def run_trt(b: int, e: TensorRTEmbedder = trt_embedder, t=tensors):  # noqa: ANN001, ANN202
                    return lambda: e.run_tensor(t[b])

                backends[f"tensorrt {precision}"] = run_trt
        except TensorRTUnavailable as exc:
            Console(stderr=True).print(f"TensorRT skipped: {exc}")
    candidates = {
        (name, b): (lambda make=make, b=b: rate(make(b), b, args.seconds))
        for b in batches
        for name, make in backends.items()
    }
    results = interleave(candidates, args.rounds)
    for precision, engine in engines.items():  # the limit: TensorRT's own timing tool
        for b in batches:
            results[(f"trtexec {precision}", b)] = [
                trtexec_images_per_s(engine, b, (288, 144)) or float("nan")
            ] * args.rounds
    table = Table(
        title=f"CASN {args.backbone} IDE 288x144 embedder, images/s, median of {args.rounds} "
        f"interleaved rounds ({'GPU ' + torch.cuda.get_device_name() if cuda else 'CPU'}, "
        f"torch threads {torch.get_num_threads()})"
    )
    for col in ("backend", *[f"batch {b}" for b in batches], *[f"x eager b{b}" for b in batches]):
        table.add_column(col, justify="right")
    names = dict.fromkeys(name for name, _ in results)
    for name in names:
        table.add_row(
            name,
            *[f"{statistics.median(results[(name, b)]):.1f}" for b in batches],
            *[str(ratio(results[(name, b)], results[("torch eager fp32", b)])) for b in batches],
        )
    Console(width=200).print(table)  # logs keep every column
    print(
        f"INT8 vs fp32 feature cosine (ONNX Runtime, random weights): min {int8.min_cosine:.4f}, "
        f"mean {int8.mean_cosine:.4f}"
    )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
