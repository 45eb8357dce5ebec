"""Scale-out on one machine: camera workers publish tracklets, matcher processes consume
them as a consumer group, all on one Redis."""

from __future__ import annotations

import json
import multiprocessing as mp
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import redis

from pipeline.config import load_pipeline_config
from pipeline.matcher import Matcher, Store, Tracklet
from pipeline.matcher.keys import Keys
from pipeline.matcher.stream import MatcherWorker, TrackletPublisher
from pipeline.runner import SESSION_SPAN, Pipeline
from reid_demo.scene import generate_scene
from tests.pipeline.scenes import same_partition

pytestmark = [pytest.mark.redis, pytest.mark.slow]


def scene_tracklets(camera: str) -> list[Tracklet]:
    """One camera's tracklets of a 10-person walk-through: every person crosses cam0 then
    cam1 (transit 30 s), two tracks per visit; features are separable per person."""
    rng = np.random.default_rng(4)
    centres = np.linalg.qr(rng.standard_normal((64, 64)))[0][:10]
    out = []
    for person, centre in enumerate(centres):
        base = 100.0 * person + (30.0 if camera == "cam1" else 0.0)
        for part in range(2):
            views = centre + 0.05 * np.random.default_rng(
                [person, part, camera == "cam1"]
            ).standard_normal((3, 64))
            views /= np.linalg.norm(views, axis=1, keepdims=True)
            out.append(
                Tracklet(
                    camera,
                    2 * person + part,
                    base + 10 * part,
                    base + 10 * part + 8,
                    views.astype(np.float32),
                )
            )
    return out


def partition(matcher: Matcher, tracks: list[tuple[str, int]]) -> set[frozenset]:
    """Groups of (camera, track) sharing an identity, whatever the identities are called."""
    groups: dict[str, set] = {}
    for camera, track in tracks:
        identity = matcher.identity_of(camera, track)
        assert identity is not None, (camera, track)
        groups.setdefault(identity, set()).add((camera, track))
    return {frozenset(g) for g in groups.values()}


def _worker(url: str, namespace: str, camera: str) -> None:
    publisher = TrackletPublisher(redis.Redis.from_url(url), namespace)
    for tracklet in scene_tracklets(camera):
        publisher.publish(tracklet)
        time.sleep(0.01)  # a camera produces tracklets over time


def _matcher(url: str, namespace: str, name: str, idle_s: float) -> None:
    worker = MatcherWorker(Matcher(url, namespace), name, claim_idle_ms=2000)
    idle_since = time.monotonic()
    while time.monotonic() - idle_since < idle_s:
        if worker.step(block_ms=200):
            idle_since = time.monotonic()


def test_two_workers_two_matchers_equal_single_process(redis_url: str, namespace: str) -> None:
    tracklets = sorted(scene_tracklets("cam0") + scene_tracklets("cam1"), key=lambda t: t.start)
    single = Matcher(redis_url, f"{namespace}-single")
    for t in tracklets:
        single.submit(t)
    ctx = mp.get_context("spawn")
    scaled_ns = f"{namespace}-scaled"
    procs = [
        ctx.Process(target=_matcher, args=(redis_url, scaled_ns, f"m{i}", 4.0)) for i in (1, 2)
    ]
    procs += [
        ctx.Process(target=_worker, args=(redis_url, scaled_ns, cam)) for cam in ("cam0", "cam1")
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert all(p.exitcode == 0 for p in procs)
    scaled = Matcher(redis_url, scaled_ns)
    tracks = [(t.camera_id, t.track_id) for t in tracklets]
    try:
        expected = partition(single, tracks)
        assert len(expected) == 10  # one identity per person, across both cameras
        assert partition(scaled, tracks) == expected
        pending = scaled.redis.xpending(Keys(scaled_ns).inbox, "matchers")["pending"]
        assert pending == 0
    finally:
        single.store.clear()
        scaled.store.clear()


def test_cli_workers_and_matchers_leave_what_one_process_leaves(
    tmp_path: Path, redis_url: str, namespace: str
) -> None:
    """Two publish-only camera workers and two matchers process every tracklet, and end
    with the identities one `reid-pipeline` process leaves on the same footage (the same
    policy: joint decisions, re-association under the lease, a last pass at the end)."""
    cams = generate_scene(tmp_path / "scene", people=5, cameras=2, duration=30, seed=2)
    settings = ["tracklets.summary_every_s=1000", "matcher.relink_every_s=5"]
    single_ns = f"{namespace}-single"
    one = Pipeline(
        load_pipeline_config(
            cams,
            [
                f"redis.url={redis_url}",
                f"redis.namespace={single_ns}",
                f"outputs.dir={tmp_path / 'single'}",
                "outputs.video=false",
                *settings,
            ],
        )
    )
    one.run()
    sets = ["--set", f"redis.namespace={namespace}", "--set", "matcher.footage_epoch=scene-2"]
    sets += [item for setting in settings for item in ("--set", setting)]
    cli = [sys.executable, "-m", "pipeline.cli"]
    matchers = [
        subprocess.Popen(
            [
                *cli,
                "matcher",
                "--cameras",
                str(cams),
                "--redis",
                redis_url,
                "--consumer",
                f"m{i}",
                "--exit-when-idle",
                "15",
                *sets,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in (1, 2)
    ]
    workers = [
        subprocess.Popen(
            [
                *cli,
                "--cameras",
                str(cams),
                "--redis",
                redis_url,
                "--only",
                cam,
                "--publish-only",
                "--no-live-table",
                "--out",
                str(tmp_path / cam),
                *sets,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for cam in ("cam0", "cam1")
    ]
    logs = [w.communicate(timeout=600)[0] for w in workers]
    assert all(w.returncode == 0 for w in workers), [log[-2000:] for log in logs]
    outputs = [m.communicate(timeout=600)[0] for m in matchers]
    assert all(m.returncode == 0 for m in matchers), outputs
    published = sum(
        json.loads((tmp_path / cam / "summary.json").read_text())["decisions"]["published"]
        for cam in ("cam0", "cam1")
    )
    assert redis.Redis.from_url(redis_url).xlen(Keys(namespace).inbox) < published  # trimmed
    processed = sum(int(o.split("tracklets processed")[0].split()[-1]) for o in outputs)
    assert published > 0 and processed == published
    tracks = [
        (p.name.split("_")[0], int(p.name.split("_")[1]))
        for cam in ("cam0", "cam1")
        for p in (tmp_path / cam / "tracks").iterdir()
    ]
    matcher = Matcher(redis_url, namespace)
    assert all(matcher.identity_of(c, t) for c, t in tracks)
    assert any("re-associations run here" in o and " 0 re-associations" not in o for o in outputs)
    # the same tracks (ids within each run, whatever run number they carry)
    scaled = {(c, t % SESSION_SPAN): matcher.identity_of(c, t) for c, t in tracks}
    alone = {
        (c, t % SESSION_SPAN): one.sink.matcher.identity_of(c, t) for c, t in one.outputs.recorded()
    }
    assert set(scaled) == set(alone) and len(alone) > 3
    order = sorted(alone)
    assert same_partition([scaled[k] for k in order], [alone[k] for k in order])
    assert len(set(alone.values())) < len(alone)  # some tracks were linked: not trivial
    Store.open(redis_url, single_ns).clear()
