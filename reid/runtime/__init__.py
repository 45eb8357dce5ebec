"""Inference: one Embedder interface over TensorRT, ONNX Runtime and PyTorch eager.

Heavy or optional dependencies (tensorrt, onnxruntime) are imported by the backend that
needs them, when it is loaded.
"""

from reid.runtime.base import Embedder, EmbedderError, Embeddings
from reid.runtime.batching import CropBatcher
from reid.runtime.registry import BACKENDS, load_embedder

__all__ = ["BACKENDS", "CropBatcher", "Embedder", "EmbedderError", "Embeddings", "load_embedder"]
