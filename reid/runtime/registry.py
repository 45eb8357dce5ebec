"""Pick a backend by exact file suffix, or the fastest one available (``auto``).

On a CPU, ``auto`` runs an ``.onnx`` on ONNX Runtime or OpenVINO, whichever ran that model
faster on this machine, measured once (:mod:`reid.runtime.cpu_choice`). An explicit ``ort``
keeps ONNX Runtime, ``openvino`` OpenVINO.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path

from reid.runtime.base import Embedder, EmbedderError
from reid.runtime.metadata import model_stem, scorer_path

BACKENDS: dict[str, tuple[str, ...]] = {
    "trt": (".engine",),
    "ort": (".onnx",),
    "openvino": (".onnx", ".xml"),
    "torch": (".pt",),
}


def _torch(path: Path) -> Embedder:
    from reid.runtime.torch_backend import TorchEmbedder

    scorer = scorer_path(path)
    device = "cuda" if torch_cuda_usable() else "cpu"
    return TorchEmbedder.from_checkpoint(path, scorer if scorer.is_file() else None, device)


def _ort(path: Path) -> Embedder:
    from reid.runtime.onnx_backend import OrtEmbedder

    return OrtEmbedder(path)


def _trt(path: Path) -> Embedder:
    from reid.runtime.tensorrt_backend import TensorRTEmbedder

    return TensorRTEmbedder(path)


def _openvino(path: Path) -> Embedder:
    from reid.runtime.openvino_backend import OpenVinoEmbedder

    return OpenVinoEmbedder(path)


def load_onnx(path: Path) -> Embedder:
    """An ``.onnx`` under ``auto``: ONNX Runtime where it has CUDA, else ONNX Runtime or
    OpenVINO, whichever runs it faster on this CPU."""
    if ort_cuda_usable():
        return _ort(path)
    from reid.runtime.cpu_choice import fastest_on_cpu

    return fastest_on_cpu(path)


LOADERS: dict[str, Callable[[Path], Embedder]] = {
    "trt": _trt,
    "ort": _ort,
    "openvino": _openvino,
    "torch": _torch,
    "onnx-auto": load_onnx,  # auto's choice for an .onnx, never named by a user
}


def tensorrt_usable() -> bool:
    return importlib.util.find_spec("tensorrt") is not None and torch_cuda_usable()


def ort_cuda_usable() -> bool:
    import onnxruntime

    return "CUDAExecutionProvider" in onnxruntime.get_available_providers()


def torch_cuda_usable() -> bool:
    import torch

    return torch.cuda.is_available()


def auto_candidates(path: Path) -> list[tuple[str, Path]]:
    """Artifacts of the same model, fastest backend first: on a GPU ``<stem>.engine``
    (TensorRT), ``<stem>.onnx`` (ORT's CUDA provider) or the checkpoint ``<stem>.pt`` (torch
    fp16), whichever the machine can run; then on the CPU the ``.onnx`` (ONNX Runtime or
    OpenVINO: :func:`load_onnx`), then the ``.pt``. The file given stands for its own format
    (``casn.int8.onnx`` runs that file, not a sibling ``casn.onnx``); an OpenVINO IR
    (``.xml``) has no siblings in other formats: OpenVINO runs it."""
    if path.suffix == ".xml":
        return [("openvino", path)] if path.is_file() else [(None, path)]  # type: ignore[list-item]
    stem = model_stem(path)
    order = [("trt", ".engine")] if tensorrt_usable() else []
    if ort_cuda_usable():
        order.append(("ort", ".onnx"))
    if torch_cuda_usable():
        order.append(("torch", ".pt"))
    order += [("onnx-auto", ".onnx"), ("torch", ".pt")]
    found = [
        (name, path if path.suffix == suffix else stem.with_name(stem.name + suffix))
        for name, suffix in dict.fromkeys(order)
    ]
    return [(name, p) for name, p in found if p.is_file()] or [(None, path)]  # type: ignore[list-item]


def load_embedder(path: str | Path, backend: str = "auto") -> Embedder:
    """An :class:`Embedder` for ``path`` (.engine, .onnx, an OpenVINO .xml or a reid-train
    .pt checkpoint).

    ``backend`` is ``auto``, ``trt``, ``ort``, ``openvino`` or ``torch``; an explicit backend
    must match the file suffix.
    """
    path = Path(path)
    if backend == "auto":
        name, chosen = auto_candidates(path)[0]
        if name is None:
            raise EmbedderError(
                f"no model at {path}: expected a .engine, .onnx, .xml or .pt file with that stem "
                "(reid-train writes .pt checkpoints, reid-export the others)"
            )
        return LOADERS[name](chosen)
    if backend not in BACKENDS:
        raise EmbedderError(f"unknown backend {backend!r}; valid: auto, {', '.join(BACKENDS)}")
    if path.suffix not in BACKENDS[backend]:
        loads = " or ".join(BACKENDS[backend])
        raise EmbedderError(f"backend {backend!r} loads {loads} files, got {path}")
    if not path.is_file():
        raise EmbedderError(f"model file {path} does not exist")
    return LOADERS[backend](path)
