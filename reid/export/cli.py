"""``reid-export``: checkpoint -> ONNX -> TensorRT engine / INT8 (ONNX Runtime or OpenVINO);
YOLO -> OpenVINO.

Each command calls one function of :mod:`reid.export` and prints the parity it measured.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from reid.export.onnx_export import ExportError, export_onnx
from reid.export.samples import SampleError
from reid.models.checkpoint import CheckpointError
from reid.runtime.base import EmbedderError

app = typer.Typer(
    help="Export CASN checkpoints for inference (ONNX, TensorRT, INT8 for ONNX Runtime or "
    "OpenVINO) and the YOLO detector to OpenVINO.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(stderr=True)
USER_ERRORS = (ExportError, SampleError, CheckpointError, EmbedderError, ValueError)
Samples = Annotated[
    Path | None,
    typer.Option(
        help="folder of person crops for basis fitting / parity / calibration "
        "(default: synthetic people)"
    ),
]


def _run(fn, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
    logging.basicConfig(
        level=logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False)],
    )
    try:
        return fn(*args, **kwargs)
    except USER_ERRORS as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


@app.command()
def fallback() -> None:
    """Export the offline ImageNet MobileNetV2 fallback to ONNX once, under REID_HOME/models
    (the pipeline's embedder when no model is given; make install runs this)."""
    from reid.export.fallback import export_fallback

    console.print(f"fallback embedder: {_run(export_fallback)}")


@app.command()
def detector(
    weights: Annotated[
        Path | None, typer.Option(help="a YOLO .pt (default: the shipped person model)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="output *_openvino_model folder (default: the cache)")
    ] = None,
    int8: Annotated[bool, typer.Option(help="INT8 (NNCF), calibrated on --calib")] = False,
    calib: Annotated[
        Path | None, typer.Option(help="with --int8: a video of the site to calibrate on")
    ] = None,
    frames: Annotated[int, typer.Option(min=40, help="frames drawn from --calib")] = 300,
    imgsz: Annotated[int, typer.Option(min=32, help="the pipeline's detector.imgsz")] = 640,
    conf: Annotated[float, typer.Option(min=0.0, max=1.0, help="detector.conf")] = 0.35,
    min_recall: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="share of the .pt boxes INT8 must find")
    ] = 0.98,
) -> None:
    """Export a YOLO detector to OpenVINO fp32 (the .pt restricted-loaded); by default the
    shipped one, once, under REID_HOME/models, where CPUs find it (make install runs this).
    With --int8 --calib VIDEO: INT8, written only if it finds --min-recall of the .pt's
    boxes on frames of VIDEO it was not calibrated on; point detector.weights at it."""
    from detectors import default_weights
    from detectors.openvino_export import cached_openvino, export_openvino

    pt = weights or default_weights()
    if int8:
        from detectors.openvino_int8 import export_int8, int8_path

        if calib is None:
            raise typer.BadParameter("--int8 needs --calib VIDEO (frames of the site)")
        made = _run(export_int8, pt, calib, out or int8_path(pt), frames, imgsz, conf, min_recall)
        console.print(
            f"INT8 OpenVINO detector: {made.folder} (found {made.recall:.1%} of the .pt's "
            f"{made.boxes} boxes on {made.frames} held-back frames); use it with "
            f"--set detector.weights={made.folder}"
        )
        return
    folder = _run(export_openvino, pt, out) if out else _run(cached_openvino, pt)
    console.print(f"OpenVINO detector: {folder}")


@app.command()
def onnx(
    checkpoint: Annotated[Path, typer.Option(help="reid-train checkpoint (.pt)")],
    out: Annotated[Path, typer.Option(help="output .onnx")],
    samples: Samples = None,
    basis_rank: Annotated[int, typer.Option(help="channels kept for attention inputs")] = 32,
) -> None:
    """Checkpoint -> ONNX (+ metadata JSON + consistency scorer), parity-checked."""
    result = _run(export_onnx, checkpoint, out, samples, basis_rank)
    console.print(
        f"wrote {result.onnx} (min feature cosine vs PyTorch "
        f"{result.metadata.parity_min_cosine:.6f}), {result.onnx}.json, {result.scorer}"
    )


@app.command()
def engine(
    onnx_path: Annotated[Path, typer.Option("--onnx", help="exported .onnx")],
    out: Annotated[Path, typer.Option(help="output .engine")],
    precision: Annotated[str, typer.Option(help="fp16, int8 or fp32")] = "fp16",
    calibration: Samples = None,
    max_batch: int = 64,
) -> None:
    """ONNX -> TensorRT engine for this GPU (needs the 'trt' extra and CUDA)."""
    from reid.export.tensorrt_build import build_engine

    result = _run(build_engine, onnx_path, out, precision, calibration, max_batch)
    console.print(
        f"wrote {result.engine} ({result.precision}, min feature cosine vs ONNX "
        f"{result.min_cosine:.5f})"
    )


@app.command()
def quantize(
    onnx_path: Annotated[Path, typer.Option("--onnx", help="exported fp32 .onnx")],
    out: Annotated[
        Path,
        typer.Option(help="INT8 output: .onnx (ONNX Runtime) or .xml (OpenVINO IR, via NNCF)"),
    ],
    calibration: Samples = None,
    min_cosine: Annotated[
        float, typer.Option(help="lowest feature cosine to fp32 accepted, per crop")
    ] = 0.99,
) -> None:
    """Static INT8 for the CPU, calibrated on crops; kept when its features stay within
    MIN_COSINE of fp32 (printed)."""
    from reid.export.quantize import quantize_onnx

    result = _run(quantize_onnx, onnx_path, out, calibration, min_cosine=min_cosine)
    console.print(
        f"wrote {result.path}: INT8 vs fp32 feature cosine min "
        f"{result.min_cosine:.4f}, mean {result.mean_cosine:.4f}"
    )


@app.command()
def check(engine_path: Annotated[Path, typer.Option("--engine", help="a .engine file")]) -> None:
    """Exit 0 when ENGINE was built for this machine's TensorRT and GPU (else 1, saying why)."""
    from reid.runtime.metadata import read_metadata
    from reid.runtime.tensorrt_backend import check_engine_target, import_tensorrt

    def verify() -> None:
        if not engine_path.is_file():
            raise EmbedderError(f"engine {engine_path} does not exist")
        check_engine_target(engine_path, read_metadata(engine_path), import_tensorrt().__version__)

    try:
        verify()
    except EmbedderError as exc:
        console.print(f"[yellow]{exc}[/yellow]")
        raise typer.Exit(1) from None
    console.print(f"{engine_path} fits this machine")
