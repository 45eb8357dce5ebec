"""A synthetic person re-id dataset in the Market-1501 layout, deterministic by seed.

Each identity has fixed appearance attributes (skin, hair, shirt colour and pattern,
trousers, shoes, an optional bag); each camera has its own background, colour cast and
brightness; each image varies pose, scale, position, lighting, blur and occlusion. It is
easy enough to learn on a CPU in minutes yet hard enough that an untrained model does badly,
which is what tests and demos on machines without the public benchmarks need.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from reid.data.datasets import BENCHMARK_SPLITS, DatasetError

PATTERNS = ("solid", "hstripes", "vstripes", "checks", "two_tone")
Color = tuple[int, int, int]


@dataclass(frozen=True)
class Appearance:
    """What stays the same for one identity across cameras (BGR colours)."""

    skin: Color
    hair: Color
    shirt: Color
    shirt_accent: Color
    pattern: str
    trousers: Color
    shorts: bool
    shoes: Color
    bag: Color | None
    bag_left: bool
    build: float  # shoulder width factor


@dataclass(frozen=True)
class CameraLook:
    """What one camera adds: background colours, colour cast and brightness."""

    background: Color
    floor: Color
    cast: tuple[float, float, float]
    gain: float


def _color(rng: np.random.Generator, saturation: tuple[float, float] = (0.3, 1.0)) -> Color:
    hsv = np.array(
        [[[rng.integers(0, 180), rng.uniform(*saturation) * 255, rng.uniform(0.25, 1.0) * 255]]],
        np.uint8,
    )
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def random_appearance(rng: np.random.Generator) -> Appearance:
    skin_tone = rng.uniform(0.35, 1.0)
    return Appearance(
        skin=(int(140 * skin_tone), int(170 * skin_tone), int(220 * skin_tone)),
        hair=_color(rng, (0.0, 0.6)),
        shirt=_color(rng),
        shirt_accent=_color(rng),
        pattern=str(rng.choice(PATTERNS)),
        trousers=_color(rng, (0.0, 0.8)),
        shorts=bool(rng.random() < 0.25),
        shoes=_color(rng, (0.0, 0.4)),
        bag=_color(rng) if rng.random() < 0.4 else None,
        bag_left=bool(rng.random() < 0.5),
        build=float(rng.uniform(0.8, 1.2)),
    )


def random_camera(rng: np.random.Generator) -> CameraLook:
    background = _color(rng, (0.0, 0.3))
    floor = _color(rng, (0.0, 0.2))
    b, g, r = (float(c) for c in rng.uniform(0.8, 1.2, size=3))
    return CameraLook(
        background=background, floor=floor, cast=(b, g, r), gain=float(rng.uniform(0.7, 1.2))
    )


def _fill_pattern(
    img: np.ndarray, box: tuple[int, int, int, int], look: Appearance, phase: int
) -> None:
    x0, y0, x1, y1 = box
    region = img[y0:y1, x0:x1]
    if region.size == 0:
        return
    region[:] = look.shirt
    ys, xs = np.mgrid[0 : region.shape[0], 0 : region.shape[1]]
    period = max(3, region.shape[0] // 5)
    mask = {
        "solid": np.zeros_like(ys, dtype=bool),
        "hstripes": ((ys + phase) // period) % 2 == 1,
        "vstripes": ((xs + phase) // period) % 2 == 1,
        "checks": (((ys + phase) // period) + (xs // period)) % 2 == 1,
        "two_tone": ys > region.shape[0] // 2,
    }[look.pattern]
    region[mask] = look.shirt_accent


def draw_body(
    img: np.ndarray,
    look: Appearance,
    cx: int,
    top: int,
    ph: int,
    stride: float,
    swing: float,
    phase: int = 0,
) -> None:
    """Draw ``look`` in place: centred at ``cx``, head at ``top``, ``ph`` pixels tall.

    ``stride`` and ``swing`` (in head units, about -0.6..0.6) pose the legs and arms;
    ``phase`` shifts the shirt pattern.
    """
    h, w = img.shape[:2]
    unit = ph / 8.0  # body proportions in heads
    shoulder = int(unit * 0.95 * look.build)
    head_r = int(unit * 0.45)
    neck = top + int(unit)
    hip = top + int(unit * 3.8)
    foot = top + ph
    stride = stride * unit
    swing = swing * unit
    thick = max(2, int(unit * 0.45))
    aa = cv2.LINE_AA
    # legs
    for side in (-1, 1):
        knee = (cx + side * int(unit * 0.3) + int(side * stride * 0.5), hip + int(unit * 2))
        ankle = (cx + side * int(unit * 0.3) + int(side * stride), foot - int(unit * 0.25))
        cv2.line(img, (cx + side * int(unit * 0.3), hip), knee, look.trousers, thick, aa)
        leg_low = look.skin if look.shorts else look.trousers
        cv2.line(img, knee, ankle, leg_low, thick, aa)
        cv2.ellipse(
            img,
            (ankle[0] + side * 2, foot - int(unit * 0.15)),
            (max(2, int(unit * 0.3)), max(1, int(unit * 0.15))),
            0,
            0,
            360,
            look.shoes,
            -1,
            aa,
        )
    # torso with its pattern, then arms
    _fill_pattern(
        img, (max(0, cx - shoulder), max(0, neck), min(w, cx + shoulder), min(h, hip)), look, phase
    )
    for side in (-1, 1):
        shoulder_pt = (cx + side * shoulder, neck + int(unit * 0.2))
        hand = (
            cx + side * (shoulder + int(unit * 0.2)) + int(side * swing * 0.3),
            neck + int(unit * 2.6) + int(swing),
        )
        cv2.line(img, shoulder_pt, hand, look.shirt, max(2, int(thick * 0.8)), aa)
        cv2.circle(img, hand, max(1, int(unit * 0.18)), look.skin, -1, aa)
    if look.bag is not None:
        side = -1 if look.bag_left else 1
        bx = cx + side * (shoulder + int(unit * 0.2))
        cv2.rectangle(
            img,
            (bx - int(unit * 0.35), neck + int(unit * 1.8)),
            (bx + int(unit * 0.35), neck + int(unit * 2.8)),
            look.bag,
            -1,
        )
    # head and hair
    head = (cx, top + head_r + 1)
    cv2.circle(img, head, head_r, look.skin, -1, aa)
    cv2.ellipse(img, head, (head_r, head_r), 0, 180, 360, look.hair, -1, aa)


def draw_person(
    look: Appearance,
    camera: CameraLook,
    rng: np.random.Generator,
    size: tuple[int, int] = (128, 64),
) -> np.ndarray:
    """One BGR crop ``[H, W, 3]`` uint8 of ``look`` as seen by ``camera``."""
    h, w = size
    img = np.empty((h, w, 3), np.uint8)
    img[:] = camera.background
    horizon = int(h * rng.uniform(0.55, 0.8))
    img[horizon:] = camera.floor
    for _ in range(int(rng.integers(0, 4))):  # clutter
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        cv2.rectangle(
            img,
            (x, y),
            (x + int(rng.integers(4, w // 2)), y + int(rng.integers(4, h // 3))),
            _color(rng, (0.0, 0.5)),
            -1,
        )
    scale = rng.uniform(0.75, 0.95)
    ph = int(h * scale)
    top = int(rng.uniform(0.02, 1.0 - scale) * h)
    cx = int(w / 2 + rng.uniform(-0.12, 0.12) * w)
    draw_body(
        img,
        look,
        cx,
        top,
        ph,
        rng.uniform(-0.6, 0.6),
        rng.uniform(-0.5, 0.5),
        int(rng.integers(0, 4)),
    )
    # camera colour cast, per-image lighting, blur, noise, occlusion
    light = camera.gain * rng.uniform(0.8, 1.2)
    out = img.astype(np.float32) * np.float32(light) * np.asarray(camera.cast, np.float32)
    out += rng.normal(0.0, 4.0, out.shape).astype(np.float32)
    out = np.clip(out, 0, 255).astype(np.uint8)
    if rng.random() < 0.3:
        k = int(rng.choice([3, 5]))
        out = cv2.GaussianBlur(out, (k, k), 0)
    if rng.random() < 0.2:
        oh, ow = int(h * rng.uniform(0.15, 0.35)), int(w * rng.uniform(0.3, 0.8))
        oy, ox = int(rng.integers(h // 3, h - oh)), int(rng.integers(0, w - ow + 1))
        out[oy : oy + oh, ox : ox + ow] = _color(rng, (0.0, 0.4))
    return out


def generate_synthetic(
    root: str | Path,
    identities: int = 100,
    cameras: int = 4,
    images_per_camera: int = 3,
    seed: int = 0,
    size: tuple[int, int] = (128, 64),
) -> Path:
    """Write a Market-1501-layout dataset under ``root`` and return ``root``.

    Half of the identities (rounded down) train; for the other half, one image per camera
    is a query and the rest are gallery. Every identity appears in ``2..cameras`` cameras.
    File names: ``<pid:04d>_c<cam>s1_<frame:06d>_00.jpg`` (1-based camera).
    """
    if identities < 4 or cameras < 2 or images_per_camera < 2:
        raise DatasetError("need at least 4 identities, 2 cameras and 2 images per camera")
    root = Path(root)
    for split in BENCHMARK_SPLITS:
        (root / split).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    camera_looks = [random_camera(rng) for _ in range(cameras)]
    n_train = identities // 2
    for pid in range(1, identities + 1):
        look = random_appearance(rng)
        seen = rng.choice(cameras, size=int(rng.integers(2, cameras + 1)), replace=False)
        for cam in sorted(int(c) for c in seen):
            for n in range(images_per_camera):
                crop = draw_person(look, camera_looks[cam], rng, size)
                if pid <= n_train:
                    split = "bounding_box_train"
                else:
                    split = "query" if n == 0 else "bounding_box_test"
                name = f"{pid:04d}_c{cam + 1}s1_{n:06d}_00.jpg"
                cv2.imwrite(str(root / split / name), crop)
    return root
