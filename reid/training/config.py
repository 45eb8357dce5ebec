"""Settings of a ``reid-train`` run; defaults are the paper's unless noted."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from reid.config import LossConfig, ModelConfig, Settings
from reid.data.datasets import DATASETS

if TYPE_CHECKING:  # a Literal built from DATASETS' keys at run time: a str to mypy
    DatasetName = str
else:
    DatasetName = Literal[tuple(DATASETS)]


class DataConfig(Settings):
    dataset: DatasetName = "market1501"
    root: str = Field("data/market1501", description="dataset folder (never downloaded)")
    num_instances: int = Field(4, ge=2, description="images per identity in a batch")
    flip: bool = True
    random_erasing: float = Field(0.0, ge=0.0, le=1.0, description="probability; ours, off")
    workers: int = Field(2, ge=0)


class OptimConfig(Settings):
    lr: float = Field(0.03, gt=0.0)
    backbone_lr_mult: float = Field(
        1.0, gt=0.0, description="backbone lr = lr * this (0.1 is common with pretrained)"
    )
    momentum: float = Field(0.9, ge=0.0, lt=1.0)
    weight_decay: float = Field(5e-4, ge=0.0)
    epochs: int = Field(40, ge=1)
    milestones: tuple[int, ...] = (30,)
    gamma: float = Field(0.1, gt=0.0, le=1.0)
    batch_size: int = Field(16, ge=4)


class EvalConfig(Settings):
    every: int = Field(5, ge=1, description="evaluate every N epochs and at the end")
    rankings: tuple[Literal["feature", "casn"], ...] = ("feature",)
    select_by: Literal["feature", "casn"] = "feature"
    attention_weight: float = Field(0.3, ge=0.0, le=1.0)
    top_k: int = Field(20, ge=1)
    batch_size: int = Field(64, ge=1)


class TrainConfig(Settings):
    model: ModelConfig = ModelConfig()
    loss: LossConfig = LossConfig()
    data: DataConfig = DataConfig()
    optim: OptimConfig = OptimConfig()
    eval: EvalConfig = EvalConfig()
    output: str = "runs/train"
    seed: int = 0
    device: str = Field("auto", description="auto, cpu, cuda or cuda:N")
    amp: bool = Field(True, description="mixed precision on CUDA (ignored on CPU)")

    @model_validator(mode="after")
    def _consistent(self) -> TrainConfig:
        if self.optim.batch_size % self.data.num_instances:
            raise ValueError(
                f"optim.batch_size ({self.optim.batch_size}) must be a multiple of "
                f"data.num_instances ({self.data.num_instances})"
            )
        if self.eval.select_by not in self.eval.rankings:
            raise ValueError(f"eval.select_by {self.eval.select_by!r} is not in eval.rankings")
        return self
