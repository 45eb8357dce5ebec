"""Images from disk to normalised tensors, with the paper's augmentation."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import torch
from torch.utils.data import Dataset
from torchvision.transforms import v2

from reid.data.datasets import DatasetError, Sample
from reid.preprocess import IMAGENET_MEAN, IMAGENET_STD


def build_transform(
    size: tuple[int, int], train: bool, flip: bool = True, random_erasing: float = 0.0
) -> v2.Compose:
    """Resize to ``size`` (height, width); in training add horizontal flip (paper) and
    optional random erasing (Zhong et al., 2020; not in the paper)."""
    steps: list[v2.Transform] = [v2.Resize(size, antialias=True)]
    if train and flip:
        steps.append(v2.RandomHorizontalFlip())
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(IMAGENET_MEAN, IMAGENET_STD)]
    if train and random_erasing > 0:
        steps.append(v2.RandomErasing(p=random_erasing, value=0))
    return v2.Compose(steps)


def read_image(path: str) -> torch.Tensor:
    """An RGB uint8 tensor ``[3, H, W]``; an unreadable file is a :class:`DatasetError`."""
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise DatasetError(f"{path}: cannot be read as an image (missing or corrupt)")
    return torch.from_numpy(cv2.cvtColor(image, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)


class ImageDataset(Dataset[tuple[torch.Tensor, int, int]]):
    """``(image [3, H, W] float, pid, camid)`` for each sample."""

    def __init__(self, samples: Sequence[Sample], transform: v2.Compose) -> None:
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        sample = self.samples[index]
        return self.transform(read_image(str(sample.path))), sample.pid, sample.camid
