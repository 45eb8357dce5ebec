"""A small real gallery for query and review tests: people of one colour each, seen by two
cameras, matched by a real (if simple) embedder and crops written to disk."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from pipeline.matcher import Matcher, Tracklet
from reid.runtime import Embeddings

COLOURS = {"red": (20, 20, 230), "blue": (230, 20, 20)}


class ColourEmbedder:
    """A real, if simple, embedder: the normalised mean colour of the crop (3-d)."""

    name = "colour"
    input_size = (64, 32)

    def embed(self, crops):  # noqa: ANN001, ANN201
        means = np.stack([c.reshape(-1, 3).mean(axis=0) for c in crops]).astype(np.float32)
        return Embeddings(means / np.linalg.norm(means, axis=1, keepdims=True), None)


def write_crop(root: Path, name: str, colour: tuple[int, int, int]) -> str:
    path = root / "crops" / f"{name}.jpg"
    path.parent.mkdir(exist_ok=True)
    cv2.imwrite(str(path), np.full((64, 32, 3), colour, np.uint8))
    return str(path)


def populate(
    redis_url: str, namespace: str, root: Path, colours: dict = COLOURS
) -> tuple[Matcher, dict[str, str]]:
    """Person ``n`` walks past cam1 (track n) at 10 n s, then cam2 (track n) 20 s later;
    returns the matcher and each colour's identity."""
    matcher = Matcher(redis_url, namespace)
    embedder = ColourEmbedder()
    ids = {}
    for n, (name, colour) in enumerate(colours.items()):
        crop = write_crop(root, f"{name}_a", colour)
        feats = embedder.embed([cv2.imread(crop)]).features
        ids[name] = matcher.submit(
            Tracklet("cam1", n, 10.0 * n, 10.0 * n + 5, feats, crops=(crop,))
        )
        crop_b = write_crop(root, f"{name}_b", colour)
        matcher.submit(Tracklet("cam2", n, 10.0 * n + 20, 10.0 * n + 25, feats, crops=(crop_b,)))
    return matcher, ids
