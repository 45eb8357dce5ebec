"""Many matchers on one Redis: no duplicate identities, nothing lost, crashes survived."""

from __future__ import annotations

import json
import multiprocessing as mp
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import redis
from typer.testing import CliRunner

from pipeline.matcher import Matcher, MatcherConfig, Tracklet
from pipeline.matcher.codec import encode_tracklet
from pipeline.matcher.keys import Keys
from pipeline.matcher.stream import GROUP, MatcherWorker, TrackletPublisher
from pipeline.query.cli import app as query_cli
from tests.pipeline.scenes import same_partition, walkers
from tests.pipeline.servers import RedisServer

pytestmark = pytest.mark.redis
PEOPLE, CAMERAS, DIM = 12, 4, 32


def scene() -> list[Tracklet]:
    """Each person walks cam0 -> cam3, 100 s per camera; people are far apart in features."""
    rng = np.random.default_rng(7)
    centers = np.linalg.qr(rng.standard_normal((DIM, DIM)))[0][:PEOPLE]
    tracklets = []
    for p, center in enumerate(centers):
        for cam in range(CAMERAS):
            views = center + 0.05 * rng.standard_normal((3, DIM))
            views /= np.linalg.norm(views, axis=1, keepdims=True)
            start = 1000.0 * p + 100.0 * cam
            tracklets.append(Tracklet(f"cam{cam}", p, start, start + 50.0, views))
    return tracklets


def _submit_all(url: str, namespace: str, seed: int, out: dict) -> None:
    order = np.random.default_rng(seed).permutation(len(scene()))
    matcher = Matcher(url, namespace)
    tracklets = scene()
    out[seed] = {tracklets[i].ref: matcher.submit(tracklets[i]) for i in order}


def race(target, redis_url: str, namespace: str, processes: int = 8) -> dict:  # noqa: ANN001
    """Run ``target(url, namespace, seed, out)`` in spawned processes; what each put in out."""
    ctx = mp.get_context("spawn")
    with ctx.Manager() as manager:
        out = manager.dict()
        procs = [
            ctx.Process(target=target, args=(redis_url, namespace, s, out))
            for s in range(processes)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join(300)
        assert all(p.exitcode == 0 for p in procs)
        return dict(out)


def test_eight_processes_overlapping_submissions(redis_url: str, namespace: str) -> None:
    results = race(_submit_all, redis_url, namespace)
    matcher = Matcher(redis_url, namespace)
    recorded = {t.ref: matcher.identity_of(t.camera_id, t.track_id) for t in scene()}
    assert None not in recorded.values()  # none lost
    for answers in results.values():  # every process was told the recorded identity
        assert answers == recorded
    identities = {name for name, _ in matcher.reader.identities(1000)}
    assert len(identities) == PEOPLE  # no duplicates: one identity per person
    for identity in identities:
        trajectory = matcher.reader.trajectory(identity)
        assert sorted(s.camera_id for s in trajectory) == [f"cam{c}" for c in range(CAMERAS)]
        assert len({s.track_id for s in trajectory}) == 1


def test_killed_consumer_entries_are_claimed(redis_url: str, namespace: str) -> None:
    client = redis.Redis.from_url(redis_url)
    publisher = TrackletPublisher(client, namespace)
    tracklets = scene()[:8]
    for t in tracklets:
        assert publisher.publish(t)
    doomed = MatcherWorker(Matcher(redis_url, namespace), "doomed", claim_idle_ms=100, batch=5)
    # it read a batch and died before acknowledging anything
    client.xreadgroup(GROUP, "doomed", {Keys(namespace).inbox: ">"}, count=5)
    assert client.xpending(Keys(namespace).inbox, GROUP)["pending"] == 5
    time.sleep(0.2)
    survivor = MatcherWorker(Matcher(redis_url, namespace), "survivor", claim_idle_ms=100)
    decisions = survivor.step(block_ms=100)
    assert len(decisions) == 8
    assert client.xpending(Keys(namespace).inbox, GROUP)["pending"] == 0
    assert all(survivor.matcher.identity_of(t.camera_id, t.track_id) for t in tracklets)
    assert doomed.processed == 0


def test_a_successor_decides_its_predecessors_entries_before_new_ones(
    redis_url: str, namespace: str
) -> None:
    """A matcher started after another died reads nothing new until the dead one's entries
    are claimed and decided (it used to decide later tracklets first: a link became a new
    identity)."""
    client = redis.Redis.from_url(redis_url)
    inbox = Keys(namespace).inbox
    publisher = TrackletPublisher(client, namespace)
    tracklets = scene()[:6]
    for t in tracklets[:3]:
        assert publisher.publish(t)
    MatcherWorker(Matcher(redis_url, namespace), "dead", claim_idle_ms=300)
    client.xreadgroup(GROUP, "dead", {inbox: ">"}, count=3)  # read, then killed
    for t in tracklets[3:]:
        assert publisher.publish(t)
    successor = MatcherWorker(Matcher(redis_url, namespace), "next", claim_idle_ms=300)
    assert successor.step(block_ms=50) == [] and successor.processed == 0
    assert client.xinfo_groups(inbox)[0]["lag"] == 3  # the new entries are not read yet
    time.sleep(0.35)
    decisions = successor.step(block_ms=50)
    assert len(decisions) == 6 and successor.barrier is None
    assert client.xpending(inbox, GROUP)["pending"] == 0


def test_redis_restart_mid_run_loses_nothing(tmp_path: Path) -> None:
    server = RedisServer(tmp_path).start()
    url = server.url
    try:
        # delivery, not the re-association cadence, is under test here
        matcher = Matcher(url, "restart", MatcherConfig(relink_every_s=0))
        publisher = TrackletPublisher(redis.Redis.from_url(url), "restart")
        worker = MatcherWorker(matcher, "w1")
        tracklets = scene()
        for t in tracklets[:10]:
            matcher.submit(t)
        server.stop()
        threading.Timer(1.5, server.start).start()
        # while Redis is down: publishing buffers, deciding waits and retries
        assert publisher.publish(tracklets[10]) is False
        assert matcher.submit(tracklets[11])
        time.sleep(0.1)
        for t in tracklets[12:]:
            publisher.publish(t)
        assert publisher.flush() and not publisher.pending and publisher.dropped == 0
        while worker.step(block_ms=100):
            pass
        for t in tracklets:
            assert matcher.identity_of(t.camera_id, t.track_id), t.ref
        assert len({name for name, _ in matcher.reader.identities(1000)}) == PEOPLE
    finally:
        server.stop()


def _decide_in_batches(url: str, namespace: str, seed: int, out: dict) -> None:
    tracklets, _ = walkers(12, 3, noise=0.1, seed=21)
    matcher = Matcher(url, namespace, MatcherConfig(link_threshold=0.35, joint_window_s=30.0))
    size = 3 + seed % 5  # each process cuts the stream into different batches
    told = {}
    for start in range(0, len(tracklets), size):
        batch = tracklets[start : start + size]
        for t, decision in zip(batch, matcher.decide_many(batch), strict=True):
            told[t.ref] = decision.identity
    out[seed] = told


def test_joint_decisions_race_without_duplicates_or_losses(redis_url: str, namespace: str) -> None:
    results = race(_decide_in_batches, redis_url, namespace)
    tracklets, truth = walkers(12, 3, noise=0.1, seed=21)
    matcher = Matcher(redis_url, namespace)
    recorded = {t.ref: matcher.identity_of(t.camera_id, t.track_id) for t in tracklets}
    assert None not in recorded.values()
    for told in results.values():
        assert told == recorded
    assert len({name for name, _ in matcher.reader.identities(1000)}) == 12
    assert same_partition([recorded[t.ref] for t in tracklets], truth)


def test_poison_inbox_entries_are_set_aside_not_fatal(redis_url: str, namespace: str) -> None:
    """A garbage entry and a tracklet from another model (other feature size) go to the
    dead-letter stream with their error; the good entries around them are decided."""
    client = redis.Redis.from_url(redis_url)
    publisher = TrackletPublisher(client, namespace)
    good = scene()[:2]
    other_model = Tracklet("cam9", 1, 5.0, 6.0, np.eye(16, dtype=np.float32)[:2])
    keys = Keys(namespace)
    assert publisher.publish(good[0])
    client.xadd(keys.inbox, {"camera": "cam1", "track": "not a number"})
    assert publisher.publish(other_model)
    nested = {**encode_tracklet(good[1]), "crops": "[" * 200_000 + "]" * 200_000}
    client.xadd(keys.inbox, nested)  # used to raise RecursionError in every matcher
    client.xadd(keys.inbox, {**encode_tracklet(good[1]), "crops": "[" * 5000 + "]" * 5000})
    assert publisher.publish(good[1])
    worker = MatcherWorker(Matcher(redis_url, namespace), "w1", batch=10)
    decisions = worker.step(block_ms=100)
    assert [d.action for d in decisions] == ["new_identity", "link"]  # one person, 2 cameras
    assert worker.processed == 6 and worker.dead == 4
    dead = client.xrange(keys.dead)
    errors = [fields[b"error"].decode() for _, fields in dead]
    assert "malformed inbox entry" in errors[0] and "16-d features" in errors[1]
    assert "at most" in errors[2] and "nests too deeply" in errors[3]
    assert client.xpending(keys.inbox, GROUP)["pending"] == 0
    listed = CliRunner().invoke(
        query_cli, ["deadletters", "--redis", redis_url, "--namespace", namespace, "--json"]
    )
    rows = json.loads(listed.stdout)  # newest first, without the feature blobs
    assert [(r["camera"], r["consumer"]) for r in rows][2:] == [("cam9", "w1"), ("cam1", "w1")]
    assert "16-d features" in rows[2]["error"] and "features" not in rows[2]


def test_acknowledged_inbox_entries_are_trimmed_pending_ones_kept(
    redis_url: str, namespace: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    publisher = TrackletPublisher(client, namespace)
    tracklets = scene()[:8]
    for t in tracklets[:4]:
        assert publisher.publish(t)
    keys = Keys(namespace)
    slow = MatcherWorker(Matcher(redis_url, namespace), "slow", batch=2)
    # both running before anything is pending (a consumer started later waits for them)
    fast = MatcherWorker(Matcher(redis_url, namespace), "fast", claim_idle_ms=60_000, batch=10)
    client.xreadgroup(GROUP, "slow", {keys.inbox: ">"}, count=2)  # read, not yet acknowledged
    for t in tracklets[4:]:
        assert publisher.publish(t)
    fast.step(block_ms=100)
    assert fast.processed == 6
    assert client.xlen(keys.inbox) == 8  # the slow consumer's 2 pending hold the rest back
    slow.claim_idle_ms = 0
    slow.step(block_ms=100)  # it finishes its own entries
    assert client.xpending(keys.inbox, GROUP)["pending"] == 0
    assert client.xlen(keys.inbox) == 0


def test_re_association_passes_to_another_matcher_when_its_lease_holder_dies(
    redis_url: str, namespace: str
) -> None:
    """Of two matchers on one namespace only the lease holder re-associates; when it dies
    (stops renewing) the other takes the lease over and re-associates from then on."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys(namespace)
    publisher = TrackletPublisher(client, namespace)
    config = MatcherConfig(relink_every_s=50.0)
    holder, other = (
        MatcherWorker(Matcher(redis_url, namespace, config), name, claim_idle_ms=2000, batch=4)
        for name in ("holder", "other")
    )
    tracklets = scene()
    for t in tracklets[:16]:
        assert publisher.publish(t)
    while holder.step(block_ms=50):
        pass
    assert holder.relinks and client.get(keys.relink_lease) == b"holder"
    for t in tracklets[16:32]:
        assert publisher.publish(t)
    while other.step(block_ms=50):  # the holder is alive: its lease stands
        pass
    assert other.processed == 16 and other.relinks == []
    time.sleep(2.2)  # the holder died: its lease lapses
    for t in tracklets[32:]:
        assert publisher.publish(t)
    while other.step(block_ms=50):
        pass
    assert other.relinks and client.get(keys.relink_lease) == b"other"
    other.finish()  # a clean exit gives the lease up
    assert client.get(keys.relink_lease) is None


def test_dead_letters_that_are_not_utf8_are_listed(redis_url: str, namespace: str) -> None:
    """`reid-query deadletters` used to die with UnicodeDecodeError on such an entry."""
    client = redis.Redis.from_url(redis_url)
    client.xadd(Keys(namespace).dead, {"camera": b"\xff\xfecam", "error": "malformed"})
    listed = CliRunner().invoke(
        query_cli, ["deadletters", "--redis", redis_url, "--namespace", namespace, "--json"]
    )
    assert listed.exit_code == 0, listed.output
    (row,) = json.loads(listed.stdout)
    assert row["camera"] == "\ufffd\ufffdcam" and row["error"] == "malformed"
