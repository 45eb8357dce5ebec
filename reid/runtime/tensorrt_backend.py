"""TensorRT backend: a serialised engine run with torch-allocated CUDA buffers.

An engine only runs on the TensorRT version and GPU it was built for; the metadata beside it
says which, and loading checks both before deserialising.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from reid.preprocess import crops_to_array
from reid.runtime.base import EmbedderError, Embeddings, l2_normalise
from reid.runtime.metadata import ArtifactMetadata, read_metadata


class TensorRTUnavailable(EmbedderError):
    """TensorRT or CUDA is missing."""


def import_tensorrt():  # noqa: ANN201 - the module
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise TensorRTUnavailable(
            "the TensorRT backend needs the 'trt' extra: pip install 'reid-pipeline[trt]'"
        ) from exc
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("the TensorRT backend needs a CUDA GPU; none is visible")
    return trt


def gpu_identity() -> tuple[str, str]:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return torch.cuda.get_device_name(), f"{major}.{minor}"


def check_engine_target(path: Path, meta: ArtifactMetadata, trt_version: str) -> None:
    """A clear error when ``path`` was built for another TensorRT or GPU than this one."""
    gpu, capability = gpu_identity()
    if meta.tensorrt_version != trt_version:
        raise EmbedderError(
            f"engine {path} was built with TensorRT {meta.tensorrt_version}, this machine has "
            f"TensorRT {trt_version}; rebuild it here with reid-export engine"
        )
    if (meta.gpu_name, meta.gpu_compute_capability) != (gpu, capability):
        raise EmbedderError(
            f"engine {path} was built for {meta.gpu_name} (sm {meta.gpu_compute_capability}), "
            f"this GPU is {gpu} (sm {capability}); rebuild it here with reid-export engine"
        )


class TensorRTEmbedder:
    """Runs a ``.engine`` built by ``reid-export engine`` (dynamic batch 1..max_batch)."""

    name = "tensorrt"

    def __init__(self, path: str | Path, device: int = 0) -> None:
        trt = import_tensorrt()
        import torch

        path = Path(path)
        if not path.is_file():
            raise EmbedderError(f"engine {path} does not exist; build it with reid-export engine")
        self.meta = read_metadata(path)
        self.device = torch.device("cuda", device)
        check_engine_target(path, self.meta, trt.__version__)
        self.input_size = self.meta.input_size
        self.max_batch = self.meta.max_batch or 64
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        # TensorRT works on the current CUDA device: make it ours for this block only (the
        # process-wide default stays the caller's)
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
            if self.engine is None:
                raise EmbedderError(f"engine {path} could not be deserialised (corrupt file?)")
            self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(self.device)
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        missing = {self.meta.input_name, *self.meta.output_names} - set(names)
        if missing:
            raise EmbedderError(f"engine {path} lacks tensors {sorted(missing)}")
        self._mean = torch.tensor(self.meta.mean, device=self.device).view(1, 3, 1, 1)
        self._std = torch.tensor(self.meta.std, device=self.device).view(1, 3, 1, 1)

    def run_tensor(self, images):  # noqa: ANN001, ANN201 - torch tensors on the GPU
        """``[N, 3, H, W]`` float32 CUDA tensor -> (features, projections) CUDA tensors."""
        import torch

        outputs = []
        with torch.cuda.device(self.device):
            for start in range(0, len(images), self.max_batch):
                chunk = images[start : start + self.max_batch].contiguous()
                self.context.set_input_shape(self.meta.input_name, tuple(chunk.shape))
                self.context.set_tensor_address(self.meta.input_name, chunk.data_ptr())
                buffers = []
                for name in self.meta.output_names:
                    shape = tuple(self.context.get_tensor_shape(name))
                    buffer = torch.empty(shape, dtype=torch.float32, device=self.device)
                    self.context.set_tensor_address(name, buffer.data_ptr())
                    buffers.append(buffer)
                if not self.context.execute_async_v3(self.stream.cuda_stream):
                    raise EmbedderError("TensorRT execution failed")
                outputs.append(buffers)
        self.stream.synchronize()
        return tuple(torch.cat(parts) for parts in zip(*outputs, strict=True))

    def embed(self, crops: Sequence[np.ndarray]) -> Embeddings:
        import torch

        try:
            batch = torch.from_numpy(crops_to_array(crops, self.input_size)).to(self.device)
        except ValueError as exc:
            raise EmbedderError(str(exc)) from exc
        with torch.cuda.stream(self.stream):
            features, *rest = self.run_tensor(batch)
        projections = rest[0].cpu().numpy() if rest else None
        return Embeddings(l2_normalise(features.cpu().numpy()), projections)
