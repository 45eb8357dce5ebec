"""Replay a model's forward pass as CUDA graphs, one per batch-size bucket.

Eager PyTorch launches every kernel from Python: ResNet50 at batch 1 spends its time in the
launches, not on the GPU (300 img/s eager on an H100 at batch 1 and 16 alike). A captured
graph launches them all at once. Batches are padded to the next power of two up to
``max_batch`` (what TensorRT's optimisation profiles do), larger ones are split, so a run
captures at most log2(max_batch) + 1 graphs, lazily, sharing one memory pool.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import torch

Outputs = tuple[torch.Tensor, ...]


class GraphedForward:
    """``forward(images) -> tensors`` (each with the batch first) through CUDA graphs."""

    def __init__(self, forward: Callable[[torch.Tensor], Outputs], max_batch: int = 64) -> None:
        if max_batch & (max_batch - 1):
            raise ValueError(f"max_batch must be a power of two, got {max_batch}")
        self.forward = forward
        self.max_batch = max_batch
        self.pool = torch.cuda.graph_pool_handle()
        # bucket -> (graph, static input, static outputs)
        self.graphs: dict[int, tuple[torch.cuda.CUDAGraph, torch.Tensor, Outputs]] = {}
        self.lock = threading.Lock()  # a graph's input and outputs are shared buffers

    @staticmethod
    def bucket(n: int) -> int:
        return 1 << (n - 1).bit_length()

    def _capture(self, like: torch.Tensor, bucket: int) -> None:
        static = torch.zeros((bucket, *like.shape[1:]), dtype=like.dtype, device=like.device)
        static = static.contiguous(memory_format=_memory_format(like))
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):  # warm-up: cuDNN picks its kernels outside the capture
            for _ in range(2):
                self.forward(static)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            outputs = self.forward(static)
        self.graphs[bucket] = (graph, static, outputs)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> Outputs:
        with self.lock:
            parts = [self._run(chunk) for chunk in images.split(self.max_batch)]
        return tuple(torch.cat(column) for column in zip(*parts, strict=True))

    def _run(self, images: torch.Tensor) -> Outputs:
        n = len(images)
        bucket = self.bucket(n)
        if bucket not in self.graphs:
            self._capture(images, bucket)
        graph, static, outputs = self.graphs[bucket]
        static[:n].copy_(images)
        static[n:].zero_()
        graph.replay()
        return tuple(out[:n].clone() for out in outputs)


def _memory_format(t: torch.Tensor) -> torch.memory_format:
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return torch.channels_last
    return torch.contiguous_format
