"""Sample crops for basis fitting, parity checks and INT8 calibration."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from reid.data.synthetic import draw_person, random_appearance, random_camera
from reid.preprocess import IMAGE_SUFFIXES


class SampleError(ValueError):
    """The sample-crop folder is missing or holds no readable images."""


def load_crops(folder: str | Path | None, limit: int = 64, seed: int = 0) -> list[np.ndarray]:
    """Up to ``limit`` BGR crops from ``folder`` (recursively), spread over its files.

    Without a folder, synthetic people are drawn (fine for parity checks; fit the basis and
    INT8 calibration on your own crops for the best fidelity).
    """
    if folder is None:
        rng = np.random.default_rng(seed)
        cameras = [random_camera(rng) for _ in range(4)]
        return [draw_person(random_appearance(rng), cameras[i % 4], rng) for i in range(limit)]
    root = Path(folder)
    if not root.is_dir():
        raise SampleError(f"sample crop folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise SampleError(
            f"sample crop folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})"
        )
    picks = np.linspace(0, len(files) - 1, min(limit, len(files))).round().astype(int)
    crops = [cv2.imread(str(files[i])) for i in sorted(set(picks.tolist()))]
    good = [c for c in crops if c is not None and c.size]
    if not good:
        raise SampleError(f"no readable images in {root}")
    return good


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of ``[N, D]`` arrays."""
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    return (a * b).sum(axis=1)
