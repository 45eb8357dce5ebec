"""ONNX Runtime backend: CUDA provider when present, else CPU with all graph optimisations."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid.preprocess import crops_to_array
from reid.runtime.base import EmbedderError, Embeddings, l2_normalise
from reid.runtime.metadata import read_metadata


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
        outputs = [o.name for o in self.session.get_outputs()]
        if outputs[: len(self.meta.output_names)] != list(self.meta.output_names):
            raise EmbedderError(
                f"ONNX model {path} outputs {outputs} but its metadata says "
                f"{list(self.meta.output_names)}"
            )

    def run(self, batch: np.ndarray) -> Embeddings:
        """``[N, 3, H, W]`` normalised float32 -> embeddings."""
        outputs = self.session.run(None, {self.meta.input_name: batch})
        projections = outputs[1].astype(np.float32) if len(outputs) > 1 else None
        return Embeddings(l2_normalise(outputs[0]), projections)

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings:
        try:
            batch = crops_to_array(crops, self.input_size)
        except ValueError as exc:
            raise EmbedderError(str(exc)) from exc
        return self.run(batch)
