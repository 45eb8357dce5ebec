"""INT8 post-training quantisation, calibrated on crops, kept only when its features agree
with fp32.

The output's suffix picks the toolchain: ``.onnx`` is ONNX Runtime's static INT8 (QDQ, runs
on ONNX Runtime and OpenVINO); ``.xml`` is NNCF's OpenVINO INT8, an IR (``.xml`` + ``.bin``)
that OpenVINO runs. Either is compared with the fp32 model on its own runtime (feature
cosine per calibration crop) and removed again when the lowest is under ``min_cosine``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.export.onnx_export import ExportError
from reid.export.samples import cosine_rows, load_crops
from reid.preprocess import crops_to_array
from reid.runtime.metadata import (
    ArtifactMetadata,
    metadata_path,
    read_metadata,
    write_metadata,
)
from reid.runtime.openvino_backend import compile_config, import_openvino

log = logging.getLogger(__name__)
MIN_INT8_COSINE = 0.99


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    min_cosine: float
    mean_cosine: float


def _ort_int8(source: Path, output: Path, meta: ArtifactMetadata, data: np.ndarray) -> None:
    """QDQ, per-channel weights. Activations unsigned and weights signed (U8S8): the
    combination ONNX Runtime's x86 kernels (AVX2 / AVX-512 VNNI) run fastest; S8S8 is
    emulated there."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([data[i : i + 8] for i in range(0, len(data), 8)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.batches, None)
            return None if chunk is None else {meta.input_name: chunk}

    prepared = output.with_name(output.name + ".prep.onnx")
    quant_pre_process(str(source), str(prepared))
    quantize_static(
        str(prepared),
        str(output),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )
    prepared.unlink()


def _ort_features(path: Path, meta: ArtifactMetadata, data: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([meta.output_names[0]], {meta.input_name: data})[0]


def _nncf_int8(source: Path, output: Path, meta: ArtifactMetadata, data: np.ndarray) -> None:
    """NNCF's default post-training INT8 of the OpenVINO model, one crop per sample."""
    ov = import_openvino()
    try:
        nncf = importlib.import_module("nncf")
    except ImportError as exc:
        raise ExportError("the OpenVINO INT8 path needs NNCF: pip install nncf") from exc
    model = ov.Core().read_model(str(source))
    samples = nncf.Dataset([data[i : i + 1] for i in range(len(data))])
    quantized = nncf.quantize(model, samples, subset_size=len(data))
    ov.save_model(quantized, str(output), compress_to_fp16=False)


def _openvino_features(path: Path, meta: ArtifactMetadata, data: np.ndarray) -> np.ndarray:
    compiled = import_openvino().Core().compile_model(str(path), "CPU", compile_config())
    return compiled({meta.input_name: data})[compiled.output(meta.output_names[0])]


@dataclass(frozen=True)
class Toolchain:
    format: str
    quantize: Callable[[Path, Path, ArtifactMetadata, np.ndarray], None]
    features: Callable[[Path, ArtifactMetadata, np.ndarray], np.ndarray]
    files: tuple[str, ...]  # the model files it writes: the output with these suffixes


TOOLCHAINS = {
    ".onnx": Toolchain("onnx", _ort_int8, _ort_features, (".onnx",)),
    ".xml": Toolchain("openvino", _nncf_int8, _openvino_features, (".xml", ".bin")),
}


def quantize_onnx(
    onnx_path: str | Path,
    output: str | Path,
    calibration: str | Path | None = None,
    num_calibration: int = 64,
    min_cosine: float = MIN_INT8_COSINE,
) -> QuantizeResult:
    """Write an INT8 copy of ``onnx_path`` to ``output`` (``.onnx``: ONNX Runtime; ``.xml``:
    OpenVINO / NNCF) with its metadata, calibrated on ``calibration``'s crops (default:
    synthetic people), when its features keep cosine >= ``min_cosine`` to fp32 on each."""
    onnx_path, output = Path(onnx_path), Path(output)
    chain = TOOLCHAINS.get(output.suffix)
    if chain is None:
        raise ExportError(
            f"{output}: the INT8 output must end in .onnx (ONNX Runtime) or .xml (OpenVINO)"
        )
    meta = read_metadata(onnx_path)
    data = crops_to_array(load_crops(calibration, num_calibration), meta.input_size)
    output.parent.mkdir(parents=True, exist_ok=True)
    chain.quantize(onnx_path, output, meta, data)
    cos = cosine_rows(*(chain.features(p, meta, data) for p in (onnx_path, output)))
    log.info(
        "INT8 (%s) vs fp32 feature cosine on %d crops: min %.4f, mean %.4f",
        chain.format,
        len(cos),
        cos.min(),
        cos.mean(),
    )
    if cos.min() < min_cosine:
        for path in (*(output.with_suffix(s) for s in chain.files), metadata_path(output)):
            path.unlink(missing_ok=True)
        raise ExportError(
            f"INT8 {output} lost too much: min feature cosine to fp32 {cos.min():.4f} "
            f"(needs >= {min_cosine}); nothing written. Calibrate on your own crops "
            "(--calibration) or keep fp32"
        )
    update = {"format": chain.format, "precision": "int8", "parity_min_cosine": float(cos.min())}
    write_metadata(output, meta.model_copy(update=update))
    return QuantizeResult(output, float(cos.min()), float(cos.mean()))
