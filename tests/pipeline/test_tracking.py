"""Tracker identity stability on the synthetic scene; tracklet lifecycle; crop quality."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from detectors import Detections
from detectors.precomputed import read_mot
from pipeline.crop_quality import crop_quality
from pipeline.sources import Frame
from pipeline.tracking import BotSortSettings, ByteTrackSettings, CameraTracker, Track
from pipeline.tracklets import TrackletBuilder
from reid_demo.scene import generate_scene


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), people=5, cameras=2, duration=30, seed=3
    ).parent


@pytest.mark.parametrize("kind", ["bytetrack", "botsort"])
def test_tracker_keeps_one_id_per_person_visit(scene: Path, kind: str) -> None:
    truth = read_mot(scene / "gt/cam0.txt")
    gt_rows = [line.split(",") for line in (scene / "gt/cam0.txt").read_text().split()]
    detections = read_mot(scene / "det/cam0.txt")
    settings = {"bytetrack": ByteTrackSettings, "botsort": BotSortSettings}[kind]
    tracker = CameraTracker(settings(lost_after_s=2.0), fps=10)
    blank = np.zeros((288, 384, 3), np.uint8)
    votes: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    gt_by_frame = defaultdict(list)
    for r in gt_rows:
        f, pid, x, y, w, h = (float(v) for v in r[:6])
        gt_by_frame[int(f)].append((int(pid), np.array([x + w / 2, y + h / 2])))
    for f in range(1, max(truth) + 1):
        for track in tracker.update(detections.get(f, Detections()), blank):
            centre = (track.xyxy[:2] + track.xyxy[2:]) / 2
            pid = min(
                gt_by_frame[f], key=lambda g: np.linalg.norm(g[1] - centre), default=(None, None)
            )[0]
            if pid is not None:
                votes[track.track_id][pid] += 1
    # each track follows one person (purity) and each person gets few tracks (no churn)
    purity = sum(max(v.values()) for v in votes.values()) / sum(
        sum(v.values()) for v in votes.values()
    )
    assert purity > 0.95
    tracks_per_person = defaultdict(set)
    for tid, v in votes.items():
        if sum(v.values()) >= 5:
            tracks_per_person[max(v, key=v.get)].add(tid)
    assert all(len(t) <= 2 for t in tracks_per_person.values())


def _frame(t: float, image: np.ndarray) -> Frame:
    return Frame("cam", int(t * 10) + 1, t, image)


def test_tracklet_lifecycle_periodic_and_final_summaries() -> None:
    image = np.random.default_rng(0).integers(0, 255, (200, 200, 3), np.uint8)
    builder = TrackletBuilder(
        "cam",
        best_k=2,
        lost_after_s=0.5,
        finish_after_s=1.0,
        summary_every_s=1.0,
        min_boxes=3,
        min_height=20,
    )
    box = np.array([50, 40, 90, 160], np.float32)
    emitted = []
    for step in range(25):  # seen for 2.4 s, then gone
        t = step * 0.1
        emitted += builder.update(_frame(t, image), [Track(7, box + step, 0.9)])
    periodic = [s for s in emitted if not s.final]
    assert [round(s.end, 1) for s in periodic] == [1.0, 2.0]
    assert all(len(s.crops) == 2 for s in periodic)
    for step in range(25, 40):
        emitted += builder.update(_frame(step * 0.1, image), [])
    finals = [s for s in emitted if s.final]
    assert len(finals) == 1 and finals[0].end == pytest.approx(2.4) and finals[0].start == 0.0
    assert builder.tracks == {}


def test_short_tracks_are_noise_and_flush_closes_the_rest() -> None:
    image = np.zeros((200, 200, 3), np.uint8)
    builder = TrackletBuilder("cam", min_boxes=3, min_height=20)
    builder.update(
        _frame(0.0, image),
        [
            Track(1, np.array([0, 0, 30, 60], np.float32), 0.9),
            Track(2, np.array([100, 20, 130, 90], np.float32), 0.9),
        ],
    )
    builder.update(_frame(0.1, image), [Track(2, np.array([100, 20, 130, 90], np.float32), 0.9)])
    builder.update(_frame(0.2, image), [Track(2, np.array([100, 20, 130, 90], np.float32), 0.9)])
    assert [(s.track_id, s.final) for s in builder.flush()] == [(2, True)]


def test_a_static_thing_on_the_ground_founds_no_identity() -> None:
    """The vtest demo's yellow object on the grass was boxed for 80 s and became an
    identity. Never moving and never upright: no summary. A person standing still (upright)
    and a wide box that moves are kept; min_motion=0 turns the check off."""
    image = np.zeros((300, 300, 3), np.uint8)
    lying = np.array([100, 200, 180, 230], np.float32)  # 80 wide, 30 tall
    standing = np.array([20, 40, 50, 140], np.float32)

    def summaries(builder: TrackletBuilder, step_box) -> list[int]:  # noqa: ANN001
        for step in range(30):
            builder.update(_frame(step * 0.1, image), [Track(1, step_box(step), 0.9)])
        return [s.track_id for s in builder.flush()]

    def jitter(box: np.ndarray):  # noqa: ANN202 - detector noise of a pixel or two
        return lambda step: box + np.float32(step % 3 - 1)

    assert summaries(TrackletBuilder("cam", min_height=20), jitter(lying)) == []
    assert summaries(TrackletBuilder("cam", min_height=20), jitter(standing)) == [1]
    crawling = lambda step: lying + np.float32([3 * step, 0, 3 * step, 0])  # noqa: E731
    assert summaries(TrackletBuilder("cam", min_height=20), crawling) == [1]
    off = TrackletBuilder("cam", min_height=20, min_motion=0.0)
    assert summaries(off, jitter(lying)) == [1]


def test_crop_quality_prefers_large_sharp_whole_unoccluded_people() -> None:
    rng = np.random.default_rng(1)
    sharp = rng.integers(0, 255, (160, 60, 3), np.uint8)
    blurry = np.full((160, 60, 3), 120, np.uint8)
    frame = (480, 640, 3)
    inside = np.array([100, 100, 160, 260], np.float32)
    base = crop_quality(sharp, inside, frame, 0.9, 0.0)
    assert base > crop_quality(blurry, inside, frame, 0.9, 0.0)  # sharpness
    assert base > crop_quality(sharp[:80], np.array([100, 100, 160, 180]), frame, 0.9, 0.0)
    assert base > crop_quality(sharp, np.array([0, 100, 60, 260]), frame, 0.9, 0.0)  # edge
    assert base > crop_quality(sharp, inside, frame, 0.9, 0.4)  # overlap
    assert base > crop_quality(sharp, inside, frame, 0.5, 0.0)  # detector score
