"""OpenVINO backend: an exported ``.onnx`` (read directly) or an OpenVINO IR ``.xml`` (the
NNCF INT8 of ``reid-export quantize``) compiled for the CPU, computing in fp32.

OpenVINO's CPU plugin computes in bf16 by default on CPUs with AMX / AVX512-BF16; on the
project's Xeon that gave feature cosine 0.9934 against ONNX Runtime for the ImageNet fallback.
Here the inference precision is pinned to f32 (cosine 0.9999999). Quantised layers (an NNCF
IR, or ONNX Runtime's QDQ ``.int8.onnx``) still run in INT8. Which of ONNX Runtime and
OpenVINO ``auto`` picks on a CPU: :mod:`reid.runtime.cpu_choice`.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid.runtime.base import EmbedderError, Embeddings
from reid.runtime.metadata import check_outputs, read_metadata
from reid.runtime.numpy_io import crop_batch, embeddings_from

INSTALL_HINT = "pip install openvino"
SUFFIXES = (".onnx", ".xml")


def openvino_installed() -> bool:
    return importlib.util.find_spec("openvino") is not None


def import_openvino():  # noqa: ANN201 - the module
    try:
        import openvino as ov  # type: ignore[import-untyped]
    except ImportError as exc:
        raise EmbedderError(f"the OpenVINO backend needs openvino: {INSTALL_HINT}") from exc
    return ov


def compile_config(threads: int | None = None) -> dict[str, str]:
    """fp32 arithmetic, one request at a time using every core (``threads`` to cap it)."""
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


class OpenVinoEmbedder:
    """Embeds with ``path`` (``.onnx`` or ``.xml`` with its ``.bin``, metadata beside it)."""

    name = "openvino-cpu"

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        ov = import_openvino()
        path = Path(path)
        if path.suffix not in SUFFIXES or not path.is_file():
            raise EmbedderError(
                f"OpenVINO model {path} does not exist or is no .onnx / .xml; create it with "
                "reid-export onnx (or reid-export quantize --out MODEL.int8.xml)"
            )
        self.meta = read_metadata(path)
        self.input_size = self.meta.input_size
        try:
            self.compiled = ov.Core().compile_model(str(path), "CPU", compile_config(threads))
        except RuntimeError as exc:  # OpenVINO's errors for corrupt or incomplete files
            raise EmbedderError(f"OpenVINO model {path} cannot be loaded: {exc}") from exc
        names = [port.get_any_name() for port in self.compiled.outputs]
        check_outputs(path, names, self.meta)
        self._outputs = [self.compiled.output(n) for n in self.meta.output_names]
        self._request = self.compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one caller at a time

    def run(self, batch: np.ndarray) -> Embeddings:
        """``[N, 3, H, W]`` normalised float32 -> embeddings."""
        with self._lock:
            result = self._request.infer({self.meta.input_name: batch})
            return embeddings_from([result[port] for port in self._outputs])

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings:
        return self.run(crop_batch(crops, self.input_size))
