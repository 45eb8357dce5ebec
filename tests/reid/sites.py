"""Generated run folders, as reid-pipeline leaves them, for the adaptation tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from reid.data.synthetic import draw_person, random_appearance, random_camera
from reid.training.adapt import AdaptConfig


def write_run(
    folder: Path, people: int, seed: int, crops_per_tracklet: int = 4, unseen: int = 0
) -> list[int]:
    """A run folder as reid-pipeline leaves it: people walk cam0 -> cam1 (several in view at
    once), each tracklet with its crops. Returns the true person of each tracklet line.

    ``unseen``: as many other people, never in the run, drawn by the same two cameras
    (two crops per camera) under ``folder/unseen/<person>_<camera>_<n>.jpg``."""
    rng = np.random.default_rng(seed)
    looks = [random_appearance(rng) for _ in range(people)]
    cameras = [random_camera(rng) for _ in range(2)]
    lines, truth = [], []
    for p, look in enumerate(looks):
        for cam in range(2):
            start = 3.0 * p + 20.0 * cam
            crops = []
            for n in range(crops_per_tracklet):
                path = folder / "tracks" / f"cam{cam}_{p}" / f"{n}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                cv2.imwrite(str(path), draw_person(look, cameras[cam], rng))
                crops.append(str(path))
            lines.append(
                {
                    "camera": f"cam{cam}",
                    "track": p,
                    "start": start,
                    "end": start + 8.0,
                    "final": True,
                    "crops": crops,
                    "embedding": f"tracks/cam{cam}_{p}/summary0.npz",
                }
            )
            truth.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "tracklets.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (folder / "cameras.json").write_text(
        json.dumps({"cameras": ["cam0", "cam1"], "overlapping": []})
    )
    for q in range(unseen):
        look = random_appearance(rng)
        for cam, n in ((cam, n) for cam in range(2) for n in range(2)):
            path = folder / "unseen" / f"{q}_cam{cam}_{n}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), draw_person(look, cameras[cam], rng))
    return truth


def write_identities(folder: Path, truth: list[int], cam1_shift: int = 0) -> None:
    """identities.json, as a run writes it when it ends: the true person of each tracklet,
    or, with ``cam1_shift``, a matcher that linked every person's cam0 tracklet with the cam1
    tracklet of the person ``cam1_shift`` later (every cross-camera link wrong)."""
    lines = [json.loads(line) for line in (folder / "tracklets.jsonl").read_text().splitlines()]
    people = max(truth) + 1

    def named(camera: str, person: int) -> str:
        return f"person{(person - cam1_shift) % people if camera == 'cam1' else person}"

    (folder / "identities.json").write_text(
        json.dumps(
            [
                {"camera": x["camera"], "track": x["track"], "identity": named(x["camera"], p)}
                for x, p in zip(lines, truth, strict=True)
            ]
        )
    )


def small_adapt_config(folder: Path, rounds: int, **settings: float) -> Path:
    """A CPU-sized adaptation YAML; ``settings``: top-level ones such as ``holdout``."""
    config = folder / "adapt.yaml"
    base = AdaptConfig().model_dump(mode="json")
    base["train"]["model"].update(
        backbone="mobilenet_v2", pretrained=None, input_size=[64, 32], hidden_dim=32
    )
    base["train"]["data"].update(workers=0)
    base["train"]["optim"].update(batch_size=8)
    base["train"]["device"] = "cpu"
    base.update(rounds=rounds, epochs_per_round=1, **settings)
    config.write_text(json.dumps(base))
    return config
