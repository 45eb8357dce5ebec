"""A synthetic multi-camera scene with ground truth, deterministic by seed.

People with distinct but confusable appearance (``reid.data.synthetic``) walk through a
sequence of cameras: across each view at their own speed and depth (scale), then on to the
next camera after a plausible transit time. Writes per camera an MP4 video, MOTChallenge
ground truth with global identities and MOTChallenge detections (ground truth with jitter,
misses and no ids), plus a cams.yaml that runs the pipeline on it::

    <out>/<cam>.mp4  <out>/gt/<cam>.txt  <out>/det/<cam>.txt  <out>/cams.yaml
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from reid.data.synthetic import Appearance, draw_body, random_appearance, random_camera


@dataclass(frozen=True)
class Visit:
    person: int
    camera: int
    enter: float
    leave: float
    left_to_right: bool
    baseline: float  # feet position, fraction of frame height (depth)
    height: float  # fraction of frame height


def plan_visits(
    people: int,
    cameras: int,
    duration: float,
    rng: np.random.Generator,
    transit: tuple[float, float],
) -> list[Visit]:
    visits = []
    for p in range(people):
        route = rng.permutation(cameras)[: int(rng.integers(2, cameras + 1))]
        t = float(rng.uniform(0, duration * 0.3))
        for cam in route:
            walk = float(rng.uniform(5.0, 9.0))
            if t + walk > duration:
                break
            baseline = float(rng.uniform(0.75, 0.97))
            visits.append(
                Visit(
                    p,
                    int(cam),
                    t,
                    t + walk,
                    bool(rng.random() < 0.5),
                    baseline,
                    baseline * float(rng.uniform(0.5, 0.7)),
                )
            )
            t += walk + float(rng.uniform(*transit))
    return visits


def _box(v: Visit, t: float, size: tuple[int, int]) -> tuple[int, int, int, int]:
    h, w = size
    ph = int(v.height * h)
    pw = int(ph * 0.42)
    progress = (t - v.enter) / (v.leave - v.enter)
    if not v.left_to_right:
        progress = 1 - progress
    cx = int(-pw / 2 + progress * (w + pw))
    bottom = int(v.baseline * h)
    return cx - pw // 2, bottom - ph, cx + pw // 2, bottom


def generate_scene(
    out: str | Path,
    people: int = 8,
    cameras: int = 3,
    duration: float = 60.0,
    fps: float = 10.0,
    size: tuple[int, int] = (288, 384),
    seed: int = 0,
    transit: tuple[float, float] = (3.0, 10.0),
) -> Path:
    """Write the scene under ``out``; returns the cams.yaml path."""
    out = Path(out)
    for sub in ("gt", "det"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    looks: list[Appearance] = [random_appearance(rng) for _ in range(people)]
    views = [random_camera(rng) for _ in range(cameras)]
    visits = plan_visits(people, cameras, duration, rng, transit)
    h, w = size
    frames = int(duration * fps)
    for cam in range(cameras):
        name = f"cam{cam}"
        backdrop = np.empty((h, w, 3), np.uint8)
        backdrop[:] = views[cam].background
        backdrop[int(h * 0.6) :] = views[cam].floor
        for _ in range(6):
            x, y = int(rng.integers(0, w)), int(rng.integers(0, int(h * 0.6)))
            cv2.rectangle(
                backdrop,
                (x, y),
                (x + int(rng.integers(10, 60)), y + int(rng.integers(10, 60))),
                views[cam].floor,
                -1,
            )
        writer = cv2.VideoWriter(
            str(out / f"{name}.mp4"), cv2.VideoWriter.fourcc(*"mp4v"), fps, (w, h)
        )
        gt_lines, det_lines = [], []
        mine = sorted((v for v in visits if v.camera == cam), key=lambda v: v.baseline)
        for f in range(frames):
            t = f / fps
            image = backdrop.copy()
            for v in mine:  # far people first, so nearer ones occlude them
                if not v.enter <= t <= v.leave:
                    continue
                x1, y1, x2, y2 = _box(v, t, size)
                step = np.sin(t * 6.0 + v.person)
                draw_body(
                    image,
                    looks[v.person],
                    (x1 + x2) // 2,
                    y1,
                    y2 - y1,
                    0.6 * step,
                    0.5 * step,
                    v.person % 4,
                )
                cx1, cy1, cx2, cy2 = max(0, x1), max(0, y1), min(w - 1, x2), min(h - 1, y2)
                if cx2 - cx1 < 4:
                    continue
                gt_lines.append(
                    f"{f + 1},{v.person + 1},{cx1},{cy1},{cx2 - cx1},{cy2 - cy1},1,-1,-1,-1"
                )
                if rng.random() > 0.05:  # the detector misses 5 %
                    jitter = rng.normal(0, 2, 4)
                    dx1, dy1 = cx1 + jitter[0], cy1 + jitter[1]
                    dw = max(1.0, cx2 - cx1 + jitter[2])
                    dh = max(1.0, cy2 - cy1 + jitter[3])
                    det_lines.append(
                        f"{f + 1},-1,{dx1:.1f},{dy1:.1f},{dw:.1f},{dh:.1f},"
                        f"{rng.uniform(0.6, 0.95):.2f},-1,-1,-1"
                    )
            light = views[cam].gain * np.asarray(views[cam].cast, np.float32)
            writer.write(np.clip(image.astype(np.float32) * light, 0, 255).astype(np.uint8))
        writer.release()
        (out / "gt" / f"{name}.txt").write_text("\n".join(gt_lines) + "\n")
        (out / "det" / f"{name}.txt").write_text("\n".join(det_lines) + "\n")
    cams = {
        "cameras": [
            {"id": f"cam{c}", "source": f"cam{c}.mp4", "detections": f"det/cam{c}.txt"}
            for c in range(cameras)
        ],
        "detector": {"kind": "precomputed"},
        "tracklets": {"min_height": 40, "summary_every_s": 4.0, "finish_after_s": 2.0},
        "outputs": {"dir": str(out / "run")},
    }
    path = out / "cams.yaml"
    path.write_text(yaml.safe_dump(cams, sort_keys=False))
    return path
