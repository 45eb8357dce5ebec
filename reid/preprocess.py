"""Crop preprocessing shared by training, inference runtimes and export.

Crops are ``H x W x 3`` uint8 BGR arrays (OpenCV's layout); the model takes RGB tensors
normalised with the ImageNet statistics its backbones were pretrained with.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

# what counts as an image file (data sets, image-folder cameras, sample crops)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def validate_crops(crops: Sequence[np.ndarray]) -> None:
    """Raise ``ValueError`` naming the first crop that is not a non-empty HxWx3 uint8 array."""
    if len(crops) == 0:
        raise ValueError("no crops given: expected a non-empty list of HxWx3 uint8 BGR arrays")
    for i, crop in enumerate(crops):
        if not isinstance(crop, np.ndarray):
            raise ValueError(f"crop {i} is a {type(crop).__name__}, expected a numpy array")
        if crop.dtype != np.uint8:
            raise ValueError(f"crop {i} has dtype {crop.dtype}, expected uint8")
        if crop.ndim != 3 or crop.shape[2] != 3:
            raise ValueError(f"crop {i} has shape {crop.shape}, expected HxWx3")
        if crop.shape[0] == 0 or crop.shape[1] == 0:
            raise ValueError(f"crop {i} is empty (shape {crop.shape})")


def crops_to_array(crops: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """Resize and normalise BGR crops to a float32 ``[N, 3, H, W]`` RGB array.

    Args:
        crops: ``H x W x 3`` uint8 BGR arrays of any sizes.
        size: model input ``(height, width)``.
    """
    validate_crops(crops)
    height, width = size
    batch = np.stack(
        [cv2.resize(c, (width, height), interpolation=cv2.INTER_LINEAR) for c in crops]
    )
    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    rgb = batch[..., ::-1].astype(np.float32) / 255.0
    rgb = (rgb - mean) / std
    return np.ascontiguousarray(rgb.transpose(0, 3, 1, 2))


def crops_to_tensor(
    crops: Sequence[np.ndarray], size: tuple[int, int], device: torch.device | str = "cpu"
) -> torch.Tensor:
    """:func:`crops_to_array` as a torch tensor on ``device``."""
    return torch.from_numpy(crops_to_array(crops, size)).to(device)
