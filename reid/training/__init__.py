"""Training CASN: settings, the loop, checkpoints and data parallelism."""

from reid.training.checkpoint import CheckpointError, load_checkpoint, trained_model
from reid.training.config import TrainConfig
from reid.training.engine import Trainer, TrainingInterrupted, TrainSummary

__all__ = [
    "CheckpointError",
    "TrainConfig",
    "TrainSummary",
    "Trainer",
    "TrainingInterrupted",
    "load_checkpoint",
    "trained_model",
]
