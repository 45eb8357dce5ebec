"""ONNX -> TensorRT engine (fp16 default, INT8 with an entropy calibrator over crops)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from reid.export.onnx_export import MIN_COSINE, ExportError
from reid.export.samples import cosine_rows, load_crops
from reid.preprocess import crops_to_array
from reid.runtime.metadata import read_metadata, write_metadata
from reid.runtime.onnx_backend import OrtEmbedder
from reid.runtime.tensorrt_backend import TensorRTEmbedder, gpu_identity, import_tensorrt

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineBuild:
    engine: Path
    precision: str
    min_cosine: float


def _calibrator(trt, batches: list[np.ndarray], cache: Path):  # noqa: ANN001, ANN202
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration crops from GPU memory; caches the scales beside the engine."""

        def __init__(self) -> None:
            super().__init__()
            self.batches = [torch.from_numpy(b).cuda() for b in batches]
            self.index = 0

        def get_batch_size(self) -> int:
            return len(batches[0])

        def get_batch(self, names):  # noqa: ANN001, ANN202
            if self.index == len(self.batches):
                return None
            self.index += 1
            return [int(self.batches[self.index - 1].data_ptr())]

        def read_calibration_cache(self):  # noqa: ANN202
            return cache.read_bytes() if cache.is_file() else None

        def write_calibration_cache(self, data) -> None:  # noqa: ANN001
            cache.write_bytes(bytes(data))

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | Path,
    output: str | Path,
    precision: str = "fp16",
    calibration: str | Path | None = None,
    max_batch: int = 64,
    opt_batch: int = 16,
    workspace_gib: float = 4.0,
) -> EngineBuild:
    """Build, then check parity against ONNX Runtime on sample crops; an engine whose
    features fall below cosine 0.999 (fp16) is refused, INT8 parity is reported."""
    trt = import_tensorrt()
    onnx_path, output = Path(onnx_path), Path(output)
    if precision not in ("fp32", "fp16", "int8"):
        raise ExportError(f"precision must be fp32, fp16 or int8, got {precision!r}")
    meta = read_metadata(onnx_path)
    h, w = meta.input_size
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    profile = builder.create_optimization_profile()
    profile.set_shape(meta.input_name, (1, 3, h, w), (opt_batch, 3, h, w), (max_batch, 3, h, w))
    config.add_optimization_profile(profile)
    crops = load_crops(calibration, 128 if precision == "int8" else 32)
    data = crops_to_array(crops, (h, w))
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        batches = [data[i : i + 8] for i in range(0, len(data) - len(data) % 8, 8)]
        config.int8_calibrator = _calibrator(trt, batches, output.with_suffix(".calib"))
        config.set_calibration_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine from {onnx_path}")
    gpu, capability = gpu_identity()
    import torch

    tmp = output.with_name(output.name + ".tmp")
    tmp.write_bytes(bytes(serialized))
    engine_meta = meta.model_copy(
        update={
            "format": "tensorrt",
            "precision": precision,
            "tensorrt_version": trt.__version__,
            "cuda_version": torch.version.cuda,
            "gpu_name": gpu,
            "gpu_compute_capability": capability,
            "max_batch": max_batch,
        }
    )
    write_metadata(tmp, engine_meta)
    reference = OrtEmbedder(onnx_path, prefer_cuda=False).run(data)
    got = TensorRTEmbedder(tmp).run_tensor(torch.from_numpy(data).cuda())[0].cpu().numpy()
    cosine = float(cosine_rows(got, reference.features).min())
    log.info(
        "TensorRT %s parity on %d crops: min feature cosine %.5f", precision, len(data), cosine
    )
    if precision != "int8" and cosine < MIN_COSINE:
        tmp.unlink()
        tmp.with_name(tmp.name + ".json").unlink()
        raise ExportError(
            f"{precision} engine failed parity (min cosine {cosine:.5f} < "
            f"{MIN_COSINE}); nothing written"
        )
    os.replace(tmp, output)
    tmp.with_name(tmp.name + ".json").unlink()
    write_metadata(output, engine_meta.model_copy(update={"parity_min_cosine": cosine}))
    return EngineBuild(output, precision, cosine)
