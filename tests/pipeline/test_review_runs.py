"""The review server over a real pipeline run: which crop files it serves, and clips that
do not re-read the run's records for every request."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.matcher import IdentityReader, Sighting
from pipeline.query import clips
from pipeline.query.api import create_app
from pipeline.query.service import QueryService
from reid_demo.scene import generate_scene
from tests.pipeline.runs import review_scene_run, run_pipeline

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Path, str]]:
    """A real run over a synthetic two-camera scene, under a crops root: folder, namespace."""
    yield from review_scene_run(tmp_path_factory, redis_url, "today")


def sightings(reader: IdentityReader) -> list[Sighting]:
    return [s for name, _ in reader.identities(100) for s in reader.trajectory(name)]


def test_only_crops_that_the_namespace_records_are_served(run, redis_url: str) -> None:
    """Any .jpg under the crops root used to be served."""
    folder, namespace = run
    reader = IdentityReader(redis_url, namespace)
    root = folder.parent
    api = TestClient(create_app(QueryService(reader), crops_root=root))
    recorded = [crop for s in sightings(reader) for crop in s.crops]
    assert recorded and all(
        api.get("/api/crop", params={"path": c}).status_code == 200 for c in recorded
    )
    tracks = Path(recorded[0]).parent
    other_run = root / "yesterday"  # a run of another namespace, copied under the root
    shutil.copytree(folder / "tracks", other_run / "tracks")
    strays = [
        root / "passport.jpg",
        tracks / "dropped-in.jpg",
        other_run / "tracks" / tracks.name / Path(recorded[0]).name,
        folder / "tracks" / "cam9_1" / "0.jpg",
    ]
    for stray in strays:
        stray.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(stray), np.zeros((8, 4, 3), np.uint8))
        refused = api.get("/api/crop", params={"path": str(stray)})
        assert refused.status_code == 404, stray


def test_a_second_clip_does_not_parse_the_runs_boxes_again(
    run, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every new clip used to read the whole boxes.txt; a run still writing it (the file
    grows) is read again."""
    folder, namespace = run
    reader = IdentityReader(redis_url, namespace)
    parses: list[Path] = []

    def counted(path: Path) -> dict:
        parses.append(path)
        return parse(path)

    parse = clips.track_frames
    monkeypatch.setattr(clips, "track_frames", counted)
    api = TestClient(create_app(QueryService(reader), crops_root=folder.parent))
    camera = sightings(reader)[0].camera_id
    first, second, third = [s for s in sightings(reader) if s.camera_id == camera][:3]

    def clip(s: Sighting) -> bytes:
        answer = api.get(f"/api/sightings/{s.camera_id}/{s.track_id}/clip")
        assert answer.status_code == 200 and answer.headers["content-type"] == "video/webm"
        return answer.content

    assert clip(first) and clip(second)
    assert parses == [folder / "boxes.txt"]
    with (folder / "boxes.txt").open("a") as boxes:
        boxes.write(f"{camera} 9999 123 0.0 0.0 1.0 1.0\n")
    assert clip(third)
    assert parses == [folder / "boxes.txt"] * 2


def test_crops_and_clips_of_a_run_moved_aside_are_still_served(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """A second run into the same --out keeps the first as <out>.1; the first run's
    sightings used to point at files that were gone (or, before track ids were unique, at
    the next run's crops of other people)."""
    scene = generate_scene(tmp_path / "scene", people=3, cameras=2, duration=12, seed=3)
    out = tmp_path / "runs" / "site"
    assert run_pipeline(scene, redis_url, out, namespace).exit_code == 0
    reader = IdentityReader(redis_url, namespace)
    first = {(s.camera_id, s.track_id): s for s in sightings(reader)}
    assert run_pipeline(scene, redis_url, out, namespace).exit_code == 0
    kept = tmp_path / "runs" / "site.1"
    assert kept.is_dir() and len(sightings(reader)) > len(first)
    api = TestClient(create_app(QueryService(reader), crops_root=tmp_path / "runs"))
    for sighting in first.values():
        for crop in sighting.crops:
            answer = api.get("/api/crop", params={"path": crop})
            moved = kept / Path(crop).relative_to(out)
            assert answer.status_code == 200 and answer.content == moved.read_bytes(), crop
    camera, track = next(iter(first))
    video = api.get(f"/api/sightings/{camera}/{track}/video")
    assert video.status_code == 200
    assert video.content == (kept / "video" / f"{camera}.mp4").read_bytes()
