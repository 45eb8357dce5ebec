"""The ``reid-train`` loop: identity-balanced batches, the CASN loss, SGD with step decay,
checkpoints every epoch, best-model tracking on validation mAP, TensorBoard and rich progress.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from torch.utils.data import DataLoader

from reid.config import ConfigError
from reid.data.datasets import ReidDataset
from reid.data.loading import ImageDataset, build_transform
from reid.data.sampler import IdentityBatchSampler
from reid.evaluation import EvalResult, evaluate
from reid.losses import CASNLoss, LossTerms, sample_pairs
from reid.models import CASN
from reid.training.checkpoint import (
    CheckpointError,
    checkpoint_config,
    load_checkpoint,
    save_checkpoint,
)
from reid.training.config import TrainConfig
from reid.training.distributed import (
    DistContext,
    average_gradients,
    barrier,
    broadcast_state,
)

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

log = logging.getLogger(__name__)


class TrainingInterrupted(Exception):
    """Ctrl-C during training; ``checkpoint`` resumes where it stopped."""

    def __init__(self, checkpoint: Path) -> None:
        super().__init__(f"training interrupted; resume with --resume {checkpoint}")
        self.checkpoint = checkpoint


@dataclass
class TrainSummary:
    epochs: int
    best_map: float
    best_checkpoint: Path | None
    last_checkpoint: Path
    history: list[dict[str, Any]] = field(default_factory=list)


def resolve_device(name: str, ctx: DistContext) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and ctx.enabled:
        name = f"cuda:{ctx.local_rank}"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


class Trainer:
    """Trains a CASN on ``dataset.train`` and validates on its query/gallery split."""

    def __init__(
        self,
        config: TrainConfig,
        dataset: ReidDataset,
        ctx: DistContext | None = None,
        console: Console | None = None,
    ) -> None:
        self.config, self.dataset = config, dataset
        self.ctx = ctx or DistContext()
        self.console = console or Console(stderr=True)
        self.device = resolve_device(config.device, self.ctx)
        self.amp = config.amp and self.device.type == "cuda"
        torch.manual_seed(config.seed)
        self.model = CASN.from_config(config.model, dataset.num_train_pids).to(self.device)
        broadcast_state(self.model, self.ctx)
        self.criterion = CASNLoss(config.loss)
        opt = config.optim
        backbone = list(self.model.backbone.parameters())
        backbone_ids = {id(p) for p in backbone}
        heads = [p for p in self.model.parameters() if id(p) not in backbone_ids]
        self.optimizer = torch.optim.SGD(
            [
                {"params": backbone, "lr": opt.lr * opt.backbone_lr_mult},
                {"params": heads, "lr": opt.lr},
            ],
            lr=opt.lr,
            momentum=opt.momentum,
            weight_decay=opt.weight_decay,
        )
        self.scheduler = torch.optim.lr_scheduler.MultiStepLR(
            self.optimizer, list(opt.milestones), opt.gamma
        )
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.sampler = IdentityBatchSampler(
            [s.pid for s in dataset.train],
            opt.batch_size,
            config.data.num_instances,
            config.seed,
            self.ctx.rank,
            self.ctx.world_size,
        )
        transform = build_transform(
            self.model.input_size, True, config.data.flip, config.data.random_erasing
        )
        self.loader = DataLoader(
            ImageDataset(dataset.train, transform),
            batch_sampler=self.sampler,
            num_workers=config.data.workers,
            pin_memory=self.device.type == "cuda",
            persistent_workers=config.data.workers > 0,
        )
        self.pair_generator = torch.Generator().manual_seed(config.seed + self.ctx.rank)
        self.output = Path(config.output)
        self.start_epoch = 0
        self.best_map = -1.0
        self.history: list[dict[str, Any]] = []
        self.writer: SummaryWriter | None = None  # main rank, during fit

    # -- checkpoints -------------------------------------------------------------------
    def state(self, epochs_done: int) -> dict[str, Any]:
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "epoch": epochs_done,
            "num_classes": self.dataset.num_train_pids,
            "best_map": self.best_map,
            "config": self.config.model_dump(mode="json"),
            "history": self.history,
            "rng": torch.get_rng_state(),
            "pair_rng": self.pair_generator.get_state(),
        }

    def resume(self, path: str | Path) -> None:
        """Continue from a checkpoint written by this trainer (same model and classes)."""
        state = load_checkpoint(path)
        saved = checkpoint_config(state, path)
        if saved.model != self.config.model or state["num_classes"] != self.dataset.num_train_pids:
            raise CheckpointError(
                f"checkpoint {path} was trained with a different model or dataset "
                f"({saved.model.backbone}/{saved.model.variant}, {state['num_classes']} ids) "
                f"than this run ({self.config.model.backbone}/{self.config.model.variant}, "
                f"{self.dataset.num_train_pids} ids)"
            )
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state.get("scaler", {}) or self.scaler.state_dict())
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"checkpoint {path} cannot be resumed: {exc}") from exc
        if "rng" in state:  # flips, dropout and pair draws continue as if never stopped
            torch.set_rng_state(state["rng"])
            self.pair_generator.set_state(state["pair_rng"])
        self.start_epoch = int(state["epoch"])
        self.best_map = float(state.get("best_map", -1.0))
        self.history = list(state.get("history", []))
        log.info("resumed from %s after epoch %d", path, self.start_epoch)

    def _save(self, name: str, epochs_done: int) -> Path:
        path = self.output / name
        if self.ctx.is_main:
            save_checkpoint(path, self.state(epochs_done))
        return path

    # -- training ----------------------------------------------------------------------
    def _step(self, images: torch.Tensor, pids: torch.Tensor) -> LossTerms:
        images = images.to(self.device, non_blocking=True)
        pids = pids.to(self.device, non_blocking=True)
        pairs = sample_pairs(pids, self.pair_generator)
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp):
            terms = self.criterion(self.model, images, pids, pairs)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms.total).backward()
        average_gradients(self.model, self.ctx)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        return LossTerms(*(t.detach() for t in terms))

    def _train_epoch(self, epoch: int, progress: Progress) -> dict[str, float]:
        self.model.train()
        self.sampler.set_epoch(epoch)
        task = progress.add_task(
            f"epoch {epoch + 1}/{self.config.optim.epochs}", total=len(self.loader), stats=""
        )
        sums = torch.zeros(4)
        seen, start = 0, time.perf_counter()
        for step, (images, pids, _) in enumerate(self.loader):
            terms = self._step(images, pids)
            sums += torch.stack([t.float().cpu() for t in terms])
            seen += len(images)
            mean = sums / (step + 1)
            rate = seen * self.ctx.world_size / (time.perf_counter() - start)
            progress.update(
                task,
                advance=1,
                stats=(
                    f"loss {mean[0]:.3f} ide {mean[1]:.3f} ia {mean[2]:.3f} sa {mean[3]:.3f} "
                    f"{rate:.0f} img/s"
                ),
            )
            if self.writer is not None:
                global_step = epoch * len(self.loader) + step
                for name, value in zip(LossTerms._fields, terms, strict=True):
                    self.writer.add_scalar(f"loss/{name}", float(value), global_step)
        progress.remove_task(task)
        self.scheduler.step()
        mean = sums / max(1, len(self.loader))
        return {
            **dict(zip(LossTerms._fields, mean.tolist(), strict=True)),
            "images_per_s": seen * self.ctx.world_size / (time.perf_counter() - start),
        }

    def validate(self) -> list[EvalResult]:
        cfg = self.config.eval
        return evaluate(
            self.model,
            self.dataset,
            self.device,
            cfg.rankings,
            cfg.attention_weight,
            cfg.top_k,
            cfg.batch_size,
            self.config.data.workers,
        )

    def fit(self) -> TrainSummary:
        cfg = self.config
        if self.ctx.is_main:
            self.output.mkdir(parents=True, exist_ok=True)
            (self.output / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.output / "tensorboard"))
        best_path: Path | None = (self.output / "best.pt") if self.best_map >= 0 else None
        epoch = self.start_epoch
        progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[stats]}"),
            console=self.console,
            disable=not self.ctx.is_main,
            transient=True,
        )
        try:
            with progress:
                for epoch in range(self.start_epoch, cfg.optim.epochs):
                    record: dict[str, Any] = {
                        "epoch": epoch + 1,
                        **self._train_epoch(epoch, progress),
                    }
                    last = epoch + 1 == cfg.optim.epochs
                    due = (epoch + 1) % cfg.eval.every == 0 or last
                    if self.ctx.is_main and due and self.dataset.query:
                        results = self.validate()
                        record["eval"] = [r.as_dict() for r in results]
                        chosen = next(r for r in results if r.ranking == cfg.eval.select_by)
                        if chosen.mAP > self.best_map:
                            self.best_map = chosen.mAP
                            best_path = self._save("best.pt", epoch + 1)
                        assert self.writer is not None  # fit opened it on the main rank
                        for r in results:
                            self.writer.add_scalar(f"eval/{r.ranking}_mAP", r.mAP, epoch + 1)
                            self.writer.add_scalar(f"eval/{r.ranking}_rank1", r.rank1, epoch + 1)
                    self.history.append(record)
                    self._save("last.pt", epoch + 1)
                    self._report(record)
                    barrier(self.ctx)
        except KeyboardInterrupt:
            path = self._save("last.pt", epoch)
            raise TrainingInterrupted(path) from None
        finally:
            if self.writer is not None:
                self.writer.close()
        return TrainSummary(
            cfg.optim.epochs, self.best_map, best_path, self.output / "last.pt", self.history
        )

    def _report(self, record: dict[str, Any]) -> None:
        if not self.ctx.is_main:
            return
        with (self.output / "metrics.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
        line = (
            f"epoch {record['epoch']}: loss {record['total']:.3f} (ide {record['ide']:.3f} "
            f"ia {record['ia']:.3f} sa {record['sa']:.3f}), {record['images_per_s']:.0f} img/s"
        )
        for r in record.get("eval", []):
            line += f" | {r['ranking']}: mAP {r['mAP']:.1%} rank-1 {r['rank1']:.1%}"
        self.console.print(line)
