"""Datasets, synthetic data, identity-balanced sampling and image loading."""

from reid.data.datasets import (
    DATASETS,
    DatasetError,
    ReidDataset,
    Sample,
    load_dataset,
)
from reid.data.sampler import IdentityBatchSampler
from reid.data.synthetic import generate_synthetic

__all__ = [
    "DATASETS",
    "DatasetError",
    "IdentityBatchSampler",
    "ReidDataset",
    "Sample",
    "generate_synthetic",
    "load_dataset",
]
