"""Data parallelism under ``torchrun``: one process per device, gradients averaged.

We average gradients with ``all_reduce`` after ``backward`` instead of wrapping the model in
DistributedDataParallel: the identification-attention loss differentiates through a
Grad-CAM computed with ``autograd.grad(create_graph=True)`` and runs a second forward pass
per step, which DDP's reducer does not support. The result is the same synchronous SGD.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(use_cuda: bool) -> DistContext:
    """Join the process group torchrun describes (``WORLD_SIZE`` > 1); else a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")
    return DistContext(dist.get_rank(), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def broadcast_state(model: nn.Module, ctx: DistContext) -> None:
    """Copy rank 0's parameters and buffers (BatchNorm statistics) to every rank."""
    if ctx.enabled:
        for tensor in [*model.parameters(), *model.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(model: nn.Module, ctx: DistContext) -> None:
    if not ctx.enabled:
        return
    params = [p for p in model.parameters() if p.requires_grad]
    grads: list[torch.Tensor] = []
    for p in params:  # a term skipped on one rank must not shift the others' offsets
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        grads.append(p.grad)
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
