"""Embedder throughput: ONNX Runtime and OpenVINO (fp32, INT8) and TensorRT vs PyTorch eager.

CASN ResNet50 IDE at 288x144 (random weights: speed does not depend on them; INT8 fidelity
is reported on them too, so re-check it on your trained model with reid-export quantize),
or ``--backbone fallback``: the ImageNet MobileNetV2 fallback at 256x128 (REID_HOME's export).
Prints images/s per backend and batch and the ratios to torch eager fp32 and to ONNX
Runtime fp32, timed in interleaved rounds (median ratio and its spread). On a CPU: OpenVINO
fp32 (the ``auto`` choice there), ORT's INT8 on ORT and on OpenVINO, and NNCF's OpenVINO
INT8 where nncf is installed. On a GPU: torch fp16 eager and as CUDA graphs (our backend's
default there), ONNX Runtime's CUDA provider when installed, TensorRT fp16 / INT8 when
installed, and trtexec as the limit.

    .venv/bin/python -m benchmarks.embedder                   # CPU: torch vs ORT vs OpenVINO
    .venv/bin/python -m benchmarks.embedder --backbone fallback
    .venv/bin/python -m benchmarks.embedder --batches 1,16,64 # on a GPU adds TensorRT
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
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
from reid.export.fallback import export_fallback
from reid.export.onnx_export import export_onnx
from reid.export.quantize import QuantizeResult, quantize_onnx
from reid.export.samples import load_crops
from reid.models import CASN
from reid.preprocess import crops_to_array
from reid.runtime.fallback import FALLBACK
from reid.runtime.metadata import read_metadata
from reid.runtime.onnx_backend import OrtEmbedder
from reid.runtime.openvino_backend import OpenVinoEmbedder, openvino_installed
from reid.runtime.tensorrt_backend import TensorRTEmbedder, TensorRTUnavailable
from reid.runtime.torch_backend import TorchEmbedder
from reid.training.checkpoint import save_untrained

Maker = Callable[[int], Callable[[], object]]  # batch size -> one call's work


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


def build_model(backbone: str, work: Path) -> tuple[CASN, Path, str]:
    """The eager model, its ONNX export and a title; ``fallback``: REID_HOME's fallback."""
    if backbone == "fallback":
        model = CASN.from_config(FALLBACK, num_classes=1).eval()
        return model, export_fallback(), "ImageNet MobileNetV2 fallback"
    config = ModelConfig(backbone=backbone, variant="ide")
    model = CASN.from_config(config, num_classes=751).eval()
    ckpt = save_untrained(work / "casn.pt", model, config, num_classes=751)
    return model, export_onnx(ckpt, work / "casn.onnx").onnx, f"CASN {backbone} IDE"


def cpu_int8(onnx: Path, work: Path) -> dict[str, QuantizeResult]:
    """ORT's INT8 and, with nncf, NNCF's OpenVINO INT8, whatever their cosine (printed)."""
    outputs = {"ort": work / "casn.int8.onnx"}
    if openvino_installed() and importlib.util.find_spec("nncf"):
        outputs["nncf"] = work / "casn.int8.xml"
    return {name: quantize_onnx(onnx, out, min_cosine=0.0) for name, out in outputs.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--seconds", type=float, default=1.0, help="per candidate and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backbone", default="resnet50", help="or fallback")
    args = parser.parse_args()
    batches = [int(b) for b in args.batches.split(",")]
    work = Path(tempfile.mkdtemp(prefix="bench-embedder-"))
    model, onnx, title = build_model(args.backbone, work)
    size = read_metadata(onnx).input_size
    cuda = torch.cuda.is_available()
    int8 = {} if cuda else cpu_int8(onnx, work)
    device = "cuda" if cuda else "cpu"
    inputs = {b: crops_to_array((load_crops(None, b) * b)[:b], size) for b in batches}
    backends: dict[str, Maker] = {}

    def numpy_backend(embedder: OrtEmbedder | OpenVinoEmbedder) -> Maker:
        return lambda b: lambda: embedder.run(inputs[b])

    def torch_backend(half: bool, graphs: bool = False) -> Maker:
        embedder = TorchEmbedder(copy.deepcopy(model), device=device, half=half, graphs=graphs)
        tensors = {b: torch.from_numpy(x).to(device) for b, x in inputs.items()}
        return lambda b: lambda: embedder.embed_tensor(tensors[b])

    backends["torch eager fp32"] = torch_backend(half=False)
    if cuda:
        backends["torch eager fp16"] = torch_backend(half=True)
        backends["torch fp16 CUDA graphs"] = torch_backend(half=True, graphs=True)
    ort_fp32 = OrtEmbedder(onnx)
    baseline = f"{ort_fp32.name} fp32"
    backends[baseline] = numpy_backend(ort_fp32)
    if openvino_installed():
        backends["openvino fp32"] = numpy_backend(OpenVinoEmbedder(onnx))
    if "ort" in int8:
        backends["ort-cpu int8"] = numpy_backend(OrtEmbedder(int8["ort"].path, prefer_cuda=False))
        if openvino_installed():
            backends["openvino, ORT's int8"] = numpy_backend(OpenVinoEmbedder(int8["ort"].path))
    if "nncf" in int8:
        backends["openvino nncf int8"] = numpy_backend(OpenVinoEmbedder(int8["nncf"].path))
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
                trtexec_images_per_s(engine, b, size) or float("nan")
            ] * args.rounds
    table = Table(
        title=f"{title} {size[0]}x{size[1]} embedder, images/s, median of {args.rounds} "
        "interleaved rounds "
        f"({'GPU ' + torch.cuda.get_device_name() if cuda else 'CPU'}, "
        f"torch threads {torch.get_num_threads()})"
    )
    against = {"eager": "torch eager fp32", "ORT": baseline}
    columns = [f"x {short} b{b}" for short in against for b in batches]
    for col in ("backend", *[f"batch {b}" for b in batches], *columns):
        table.add_column(col, justify="right")
    for name in dict.fromkeys(name for name, _ in results):
        table.add_row(
            name,
            *[f"{statistics.median(results[(name, b)]):.1f}" for b in batches],
            *[
                str(ratio(results[(name, b)], results[(base, b)]))
                for base in against.values()
                for b in batches
            ],
        )
    Console(width=240).print(table)  # logs keep every column
    for name, result in int8.items():
        print(
            f"INT8 ({name}) vs fp32 feature cosine on the calibration crops: min "
            f"{result.min_cosine:.4f}, mean {result.mean_cosine:.4f} (reid-export quantize "
            "keeps it at >= 0.99)"
        )
    shutil.rmtree(work)


if __name__ == "__main__":
    main()
