"""ONNX Runtime backend: CUDA provider when present, else CPU with all graph optimisations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid.runtime.base import EmbedderError, Embeddings
from reid.runtime.metadata import check_outputs, read_metadata
from reid.runtime.numpy_io import crop_batch, embeddings_from


def ort_providers(prefer_cuda: bool = True) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if prefer_cuda and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtEmbedder:
    """Embeds with an exported ``.onnx`` (fp32 or INT8) through ONNX Runtime."""

    def __init__(
        self, path: str | Path, prefer_cuda: bool = True, threads: int | None = None
    ) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise EmbedderError(
                f"ONNX model {path} does not exist; create it with reid-export onnx"
            )
        self.meta = read_metadata(path)
        self.input_size = self.meta.input_size
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        try:
            self.session = ort.InferenceSession(
                str(path), options, providers=ort_providers(prefer_cuda)
            )
        except Exception as exc:  # ORT raises its own untyped errors for corrupt files
            raise EmbedderError(f"ONNX model {path} cannot be loaded: {exc}") from exc
        self.providers = self.session.get_providers()
        self.name = "ort-cuda" if "CUDAExecutionProvider" in self.providers else "ort-cpu"
        check_outputs(path, [o.name for o in self.session.get_outputs()], self.meta)

    def run(self, batch: np.ndarray) -> Embeddings:
        """``[N, 3, H, W]`` normalised float32 -> embeddings."""
        return embeddings_from(self.session.run(None, {self.meta.input_name: batch}))

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings:
        return self.run(crop_batch(crops, self.input_size))
