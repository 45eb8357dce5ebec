"""Redis full, hung or lost during a run, on a private redis-server: every track reaches the
outputs, re-associated in memory from the run's own records when Redis cannot do it, and a
SIGTERM is not held up by a Redis that stopped answering."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest
import redis

from pipeline.config import load_pipeline_config
from pipeline.matcher import RedisUnavailable
from pipeline.matcher.association import associate
from pipeline.run_record import read_tracklets
from pipeline.runner import SESSION_SPAN, Pipeline
from reid_demo.scene import generate_scene
from tests.pipeline.scenes import same_partition
from tests.pipeline.servers import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.slow]


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_scene(
        tmp_path_factory.mktemp("scene"), people=5, cameras=2, duration=30, seed=2
    )


@pytest.fixture
def server(tmp_path: Path):  # noqa: ANN201
    started = RedisServer(tmp_path / "redis").start()
    yield started
    if started.process is not None:
        started.process.send_signal(signal.SIGCONT)  # a paused one must be able to stop
    started.stop()


def pipeline_for(scene: Path, url: str, out: Path, namespace: str, *extra: str) -> Pipeline:
    return Pipeline(
        load_pipeline_config(
            scene,
            [
                f"redis.url={url}",
                f"redis.namespace={namespace}",
                f"outputs.dir={out}",
                "outputs.video=false",
                *extra,
            ],
        )
    )


def after_frames(pipeline: Pipeline, share: float, action) -> threading.Thread:  # noqa: ANN001
    """Run ``action`` once the pipeline has read ``share`` of its frames."""
    total = sum(r.capture.frame_count for r in pipeline.readers.values() if r.capture)

    def wait() -> None:
        while sum(c.frames for c in pipeline.state.cameras.values()) < share * total:
            time.sleep(0.002)
        action()

    thread = threading.Thread(target=wait, daemon=True)
    thread.start()
    return thread


def outputs(out: Path) -> dict[tuple[str, int], str]:
    """(camera, track within the run) -> final identity, from identities.json; checked to
    hold every tracklet the run recorded."""
    rows = json.loads((out / "identities.json").read_text())
    final = {(r["camera"], r["track"] % SESSION_SPAN): r["identity"] for r in rows}
    recorded = {
        (r["camera"], r["track"] % SESSION_SPAN)
        for r in map(json.loads, (out / "tracklets.jsonl").read_text().splitlines())
    }
    assert recorded == set(final) and all(final.values())
    assert (out / "mtmc.txt").read_text() and (out / "summary.json").is_file()
    return final


def test_redis_lost_near_the_end_ends_with_the_identities_of_a_clean_run(
    scene: Path, server: RedisServer, tmp_path: Path
) -> None:
    """Redis gone for good near the end of the footage: the run ends past its retry budget
    with a clear error, and its outputs hold every track it saw, re-associated in memory
    from its own records, grouped as a run with Redis throughout groups them but for the
    tracks the loss cut short (it used to keep the online identities and drop the tracks
    decided after the loss)."""
    clean = pipeline_for(scene, server.url, tmp_path / "clean", "clean")
    clean.run()
    expected = outputs(tmp_path / "clean")
    assert len(set(expected.values())) < len(expected)  # some tracks linked: not trivial
    lost = pipeline_for(scene, server.url, tmp_path / "lost", "lost", "redis.retry_budget_s=1")
    assert server.process is not None
    after_frames(lost, 0.9, server.process.kill)  # gone at once, mid-write
    with pytest.raises(RedisUnavailable, match="outputs written to"):
        lost.run()
    found = outputs(tmp_path / "lost")  # the tracks it saw before the run ended
    assert len(found) >= 0.8 * len(expected) and set(found) <= set(expected)
    order = sorted(found)
    # exactly what re-association makes of the tracks as the lost run recorded them (the
    # loss can cut the last tracks short, and hand-overs weigh where tracks end)...
    recorded = read_tracklets(tmp_path / "lost")
    labels = associate(recorded, load_pipeline_config(scene, []).matcher).labels
    alone = {
        (t.camera_id, t.track_id % SESSION_SPAN): n for t, n in zip(recorded, labels, strict=True)
    }
    assert same_partition([found[k] for k in order], [alone[k] for k in order])
    # ...which groups nearly every pair of tracks as the clean run does
    pairs = [(a, b) for n, a in enumerate(order) for b in order[n + 1 :]]
    agree = sum((found[a] == found[b]) == (expected[a] == expected[b]) for a, b in pairs)
    assert agree >= 0.9 * len(pairs)


def test_a_full_redis_ends_the_run_with_every_output(
    scene: Path, server: RedisServer, tmp_path: Path
) -> None:
    """maxmemory reached under noeviction (as shipped): writes are refused; the run ends with
    an error that says Redis is full, and the outputs hold every track (it used to end in an
    OutOfMemoryError traceback with no summary, mtmc or identities)."""
    run = pipeline_for(scene, server.url, tmp_path / "full", "full")
    admin = redis.Redis.from_url(server.url)

    def fill() -> None:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.config_set("maxmemory", 1)

    after_frames(run, 0.5, fill)
    with pytest.raises(RedisUnavailable, match="Redis is full"):
        run.run()
    outputs(tmp_path / "full")


@pytest.mark.timeout(120)
def test_sigterm_with_redis_hung_ends_in_seconds_with_every_output(
    scene: Path, server: RedisServer, tmp_path: Path
) -> None:
    """Redis stopped (SIGSTOP: connections hang instead of failing) and then the run told to
    stop: every Redis call has a deadline, so the run ends within seconds with every output
    (it used to wait until Redis resumed: 154 s and 594 s in the probe)."""
    run = pipeline_for(scene, server.url, tmp_path / "hung", "hung")
    assert server.process is not None
    ended: list[float] = []

    def hang_then_stop() -> None:
        os.kill(server.process.pid, signal.SIGSTOP)
        time.sleep(0.5)
        ended.append(time.monotonic())
        run.stop.set()

    after_frames(run, 0.5, hang_then_stop)
    run.run()  # a stop is no failure: the outputs are complete
    took = time.monotonic() - ended[0]
    outputs(tmp_path / "hung")
    print(f"SIGTERM to exit with Redis hung: {took:.1f} s")


def test_a_restore_from_an_older_snapshot_mid_run_loses_no_track(
    scene: Path, server: RedisServer, tmp_path: Path
) -> None:
    """The namespace taken back to what it held at a third of the run (what a restore from
    an older snapshot does): the run notices the gallery version going back and hands every
    track it recorded over again, so none drops out of the outputs (28 of 80 did) and the
    identities are a clean run's."""
    clean = pipeline_for(scene, server.url, tmp_path / "clean", "clean")
    clean.run()
    expected = outputs(tmp_path / "clean")
    run = pipeline_for(scene, server.url, tmp_path / "restored", "restored")
    admin = redis.Redis.from_url(server.url)
    snapshot: dict[bytes, bytes] = {}

    def take() -> None:
        snapshot.update({k: admin.dump(k) for k in admin.scan_iter("{restored}:*")})

    def restore() -> None:
        admin.delete(*admin.scan_iter("{restored}:*"))
        for key, value in snapshot.items():
            admin.restore(key, 0, value)

    after_frames(run, 0.33, take)
    after_frames(run, 0.66, restore)
    run.run()
    assert run.sink.matcher.gallery.rewinds >= 1
    found = outputs(tmp_path / "restored")
    assert set(found) == set(expected)
    order = sorted(expected)
    assert same_partition([found[k] for k in order], [expected[k] for k in order])
