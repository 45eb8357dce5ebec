"""ONNX Runtime static INT8 quantisation, calibrated on crops, with the fidelity reported."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.export.samples import cosine_rows, load_crops
from reid.preprocess import crops_to_array
from reid.runtime.metadata import read_metadata, write_metadata

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuantizeResult:
    path: Path
    min_cosine: float
    mean_cosine: float


def quantize_onnx(
    onnx_path: str | Path,
    output: str | Path,
    calibration: str | Path | None = None,
    num_calibration: int = 64,
    batch: int = 8,
) -> QuantizeResult:
    """Write an INT8 (QDQ, per-channel weights) copy of ``onnx_path`` and compare it with the
    fp32 model on the calibration crops (feature cosine).

    Activations are unsigned and weights signed (U8S8): the combination ONNX Runtime's x86
    kernels (AVX2 / AVX-512 VNNI) run fastest; S8S8 is emulated there.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    onnx_path, output = Path(onnx_path), Path(output)
    meta = read_metadata(onnx_path)
    crops = load_crops(calibration, num_calibration)
    data = crops_to_array(crops, meta.input_size)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([data[i : i + batch] for i in range(0, len(data), batch)])

        def get_next(self) -> dict[str, np.ndarray] | None:
            chunk = next(self.batches, None)
            return None if chunk is None else {meta.input_name: chunk}

    prepared = output.with_name(output.name + ".prep.onnx")
    quant_pre_process(str(onnx_path), str(prepared))
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
    runs = [
        ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(
            [meta.output_names[0]], {meta.input_name: data}
        )[0]
        for p in (onnx_path, output)
    ]
    cos = cosine_rows(runs[0], runs[1])
    write_metadata(
        output,
        meta.model_copy(
            update={"format": "onnx", "precision": "int8", "parity_min_cosine": float(cos.min())}
        ),
    )
    log.info(
        "INT8 vs fp32 feature cosine on %d crops: min %.4f, mean %.4f",
        len(cos),
        cos.min(),
        cos.mean(),
    )
    return QuantizeResult(output, float(cos.min()), float(cos.mean()))
