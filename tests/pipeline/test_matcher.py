"""Matcher decisions, gates, retention and idempotency against a real Redis."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.matcher import (
    Matcher,
    MatcherConfig,
    Tracklet,
    TrackletError,
    TransitRule,
    connect,
)
from pipeline.matcher.keys import Keys
from reid.models import CASN
from reid.runtime.consistency import ConsistencyScorer, fit_channel_basis
from tests.pipeline.servers import RedisServer

pytestmark = pytest.mark.redis
DIM = 64


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def person(seed: int) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal(DIM))


def views(center: np.ndarray, seed: int, k: int = 3, noise: float = 0.05) -> np.ndarray:
    return unit(center + noise * np.random.default_rng(seed).standard_normal((k, DIM)))


def test_links_the_same_person_and_founds_new_ones(redis_url: str, namespace: str) -> None:
    matcher = Matcher(redis_url, namespace)
    alice, bob = person(1), person(2)
    a1 = matcher.submit(Tracklet("cam1", 1, 0.0, 5.0, views(alice, 10)))
    b1 = matcher.submit(Tracklet("cam1", 2, 0.0, 5.0, views(bob, 11)))
    a2 = matcher.decide(Tracklet("cam2", 1, 20.0, 25.0, views(alice, 12)))
    assert a1 != b1 and a2.identity == a1 and a2.action == "link"
    # the link distance is the best exemplar pair's (1 - cos) / 2
    assert 0.0 < a2.distance < MatcherConfig().link_threshold
    assert matcher.identity_of("cam2", 1) == a1
    assert matcher.identity_of("cam9", 1) is None
    trajectory = matcher.reader.trajectory(a1)
    assert [(s.camera_id, s.track_id, s.start) for s in trajectory] == [
        ("cam1", 1, 0.0),
        ("cam2", 1, 20.0),
    ]
    # a second matcher on the same Redis sees the same gallery
    other = Matcher(redis_url, namespace)
    assert other.submit(Tracklet("cam3", 4, 40.0, 41.0, views(bob, 13))) == b1
    assert {name for name, _ in matcher.reader.identities()} == {a1, b1}


def test_resubmission_is_idempotent_and_updates_refine(redis_url: str, namespace: str) -> None:
    matcher = Matcher(redis_url, namespace)
    t = Tracklet("cam1", 1, 0.0, 5.0, views(person(1), 1), crops=("a.jpg",))
    first = matcher.decide(t)
    again = matcher.decide(t)
    assert (again.identity, again.action) == (first.identity, "duplicate")
    longer = Tracklet("cam1", 1, 0.0, 9.0, views(person(1), 2), crops=("b.jpg",))
    update = matcher.decide(longer)
    assert (update.identity, update.action) == (first.identity, "update")
    (sighting,) = matcher.reader.trajectory(first.identity)
    assert sighting.end == 9.0 and sighting.crops == ("b.jpg",)
    events = matcher.redis.xrange(Keys(namespace).events)
    assert [e[1][b"type"] for e in events] == [b"new_identity", b"update"]
    raw = matcher.redis.hget(Keys(namespace).identity(first.identity), "tracklets")
    assert int(raw) == 1


def test_gates_time_overlap_and_topology(redis_url: str, namespace: str) -> None:
    config = MatcherConfig(
        topology=(TransitRule(source="cam1", target="cam2", min_s=10, max_s=60),),
        overlapping=(("cam1", "cam3"),),
    )
    matcher = Matcher(redis_url, namespace, config)
    alice = person(1)
    a = matcher.submit(Tracklet("cam1", 1, 0.0, 10.0, views(alice, 1)))
    # same time in a non-overlapping camera: must not be alice
    assert matcher.submit(Tracklet("cam2", 1, 5.0, 8.0, views(alice, 2))) != a
    # same time, same camera, another track: not alice either
    assert matcher.submit(Tracklet("cam1", 2, 5.0, 8.0, views(alice, 3))) != a
    # overlapping views may hold her at the same time
    assert matcher.submit(Tracklet("cam3", 1, 2.0, 9.0, views(alice, 4))) == a
    # cam1 -> cam2 needs 10..60 s: 3 s is too fast, 100 s too slow, 30 s fine
    assert matcher.submit(Tracklet("cam2", 2, 13.0, 14.0, views(alice, 5))) != a
    assert matcher.submit(Tracklet("cam2", 3, 110.0, 111.0, views(alice, 6))) != a
    assert matcher.submit(Tracklet("cam2", 4, 40.0, 45.0, views(alice, 7))) == a
    # cam2 -> cam4 is not an allowed pair
    assert matcher.submit(Tracklet("cam4", 1, 70.0, 75.0, views(alice, 8))) != a


def test_all_state_has_a_ttl_and_expires(redis_url: str, namespace: str) -> None:
    matcher = Matcher(redis_url, namespace, MatcherConfig(retention_s=4))
    identity = matcher.submit(Tracklet("cam1", 1, 0.0, 1.0, views(person(1), 1)))
    keys = list(matcher.redis.scan_iter(Keys(namespace).pattern()))
    assert len(keys) == 9  # version, identities, identity, exemplars, sightings, tracklet,
    # tracklets (time index) and when each was recorded, events
    assert all(0 < matcher.redis.pttl(k) <= 4000 for k in keys)
    time.sleep(4.2)
    assert matcher.identity_of("cam1", 1) is None and matcher.reader.trajectory(identity) == []
    # an expired gallery is forgotten: the same person founds a new identity
    assert matcher.submit(Tracklet("cam2", 1, 10.0, 11.0, views(person(1), 2))) != identity


def test_the_tracklet_time_index_forgets_expired_tracklets(redis_url: str, namespace: str) -> None:
    """Commits keep the shared keys alive, so expiry alone never shrank the time index of
    tracklets: on a long run it held every tracklet ever seen (benchmarks/soak.py)."""
    matcher = Matcher(redis_url, namespace, MatcherConfig(retention_s=2, top_k=2))
    keys = Keys(namespace)
    for n in range(3):
        matcher.submit(Tracklet(f"cam{n}", 1, 10.0 * n, 10.0 * n + 1, views(person(n), n)))
        time.sleep(1.2)
    indexed = {ref.decode() for ref in matcher.redis.zrange(keys.tracklets, 0, -1)}
    assert indexed == {"cam1:1", "cam2:1"}  # cam0:1 was recorded 3.6 s ago: gone
    assert matcher.redis.zcard(keys.tracklets_seen) == 2


def test_attention_consistency_enters_the_distance(redis_url: str, namespace: str) -> None:
    model = CASN(5, backbone="resnet18").eval()
    images = torch.randn(4, 3, 64, 32)
    emb = model.embed(images)
    scorer = ConsistencyScorer.from_model(model, fit_channel_basis(emb.maps, rank=16))
    projections = scorer.project(emb.maps).numpy()
    feats = emb.features.numpy()
    config = MatcherConfig(attention_weight=0.5, link_threshold=1.0)
    matcher = Matcher(redis_url, namespace, config, scorer=scorer.to_numpy())
    first = matcher.submit(Tracklet("cam1", 1, 0.0, 1.0, feats[:1], projections[:1]))
    decision = matcher.decide(Tracklet("cam2", 1, 5.0, 6.0, feats[1:2], projections[1:2]))
    assert decision.identity == first and decision.action == "link"
    d_feat = (1 - float(feats[0] @ feats[1])) / 2
    stored = torch.from_numpy(projections[:1].astype(np.float16).astype(np.float32))
    d_att = float(
        scorer.distance(
            emb.features[1:2], torch.from_numpy(projections[1:2]), emb.features[:1], stored
        )[0]
    )
    assert decision.distance == pytest.approx(0.5 * d_feat + 0.5 * d_att, abs=1e-5)


def test_malformed_tracklets_are_clear_errors() -> None:
    good = person(1)[None]
    with pytest.raises(TrackletError, match="L2-normalised"):
        Tracklet("cam1", 1, 0.0, 1.0, good * 2)
    with pytest.raises(TrackletError, match="start <= end"):
        Tracklet("cam1", 1, 5.0, 1.0, good)
    with pytest.raises(TrackletError, match="K x r x h x w"):
        Tracklet("cam1", 1, 0.0, 1.0, good, projections=np.zeros((2, 4, 3, 3)))
    with pytest.raises(TrackletError, match="camera_id"):
        Tracklet("", 1, 0.0, 1.0, good)


def test_wrong_redis_password_is_named_as_such(tmp_path: Path) -> None:
    """It used to be retried as a connection error and reported as 'unreachable'."""
    from pipeline.matcher import RedisUnavailable

    server = RedisServer(tmp_path / "redis", password="right").start()
    try:
        wrong = server.url.replace(":right@", ":wrong@")
        with pytest.raises(RedisUnavailable, match=r":\*\*\*@.* rejected the credentials"):
            connect(wrong)
        with pytest.raises(RedisUnavailable, match="rejected the credentials"):
            connect(server.url.replace(":right@", ""))  # none given
        assert connect(server.url).ping()
    finally:
        server.stop()


def test_unreachable_redis_is_a_clear_error() -> None:
    from pipeline.matcher import RedisUnavailable

    with pytest.raises(RedisUnavailable, match=r"redis://:\*\*\*@127.0.0.1:1/0 is unreachable"):
        Matcher("redis://:secret@127.0.0.1:1/0")


def test_a_matcher_worker_loads_no_torch() -> None:
    """``import pipeline.matcher`` (decisions, re-association, Redis) stays a small process."""
    code = "import sys, pipeline.matcher, pipeline.matcher.relink; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_joint_assignment_fixes_what_greedy_order_gets_wrong(
    redis_url: str, namespace: str
) -> None:
    """Alice and Bob are known. Two tracklets end together in two cameras: t1 looks a bit
    more like Alice than Bob, t2 like Alice only. One by one, t1 takes Alice and t2 (not in
    two places at once) founds a new identity; jointly, t1 -> Bob and t2 -> Alice."""
    rng = np.random.default_rng(3)
    basis = np.linalg.qr(rng.standard_normal((16, 16)))[0]
    alice, bob, other = basis[0], basis[1], basis[2]

    def look(*mix: float) -> np.ndarray:
        v = mix[0] * alice + mix[1] * bob + mix[2] * other
        return (v / np.linalg.norm(v))[None].astype(np.float32)

    config = MatcherConfig(link_threshold=0.2)

    def known(ns: str) -> tuple[Matcher, str, str]:
        matcher = Matcher(redis_url, ns, config)
        a = matcher.submit(Tracklet("cam0", 1, 0.0, 5.0, look(1, 0, 0)))
        b = matcher.submit(Tracklet("cam0", 2, 0.0, 5.0, look(0, 1, 0)))
        return matcher, a, b

    t1 = Tracklet("cam1", 1, 20.0, 30.0, look(0.75, 0.7, 0.1))
    t2 = Tracklet("cam2", 1, 21.0, 30.5, look(0.85, 0.0, 0.5))
    one_by_one, a, b = known(namespace)
    greedy = [one_by_one.decide(t1), one_by_one.decide(t2)]
    assert greedy[0].identity == a and greedy[1].action == "new_identity"
    one_by_one.store.clear()
    joint_matcher, a, b = known(namespace)
    joint = joint_matcher.decide_many([t1, t2])
    assert [d.identity for d in joint] == [b, a]
    assert [d.action for d in joint] == ["link", "link"]
    assert joint_matcher.identity_of("cam1", 1) == b and joint_matcher.identity_of("cam2", 1) == a
    # a resubmission of the same batch is idempotent
    assert [d.action for d in joint_matcher.decide_many([t1, t2])] == ["duplicate", "duplicate"]


def test_redis_restored_from_an_older_snapshot_is_reloaded(redis_url: str, namespace: str) -> None:
    """The gallery version going backwards (Redis restored from an older snapshot) makes the
    matcher reload its index and go on deciding, instead of losing every commit."""
    matcher = Matcher(redis_url, namespace)
    for n in range(1, 4):
        matcher.submit(Tracklet(f"cam{n}", n, 10.0 * n, 10.0 * n + 5, views(person(n), n)))
    matcher.redis.set(Keys(namespace).version, 1)  # what an older snapshot would hold
    decision = matcher.decide(Tracklet("cam9", 9, 90.0, 95.0, views(person(9), 9)))
    assert decision.action == "new_identity"
    assert matcher.redis.get(Keys(namespace).version) == b"2"


def test_a_worker_that_disagrees_with_the_stored_settings_says_so(
    redis_url: str, namespace: str, caplog: pytest.LogCaptureFixture
) -> None:
    from pipeline.matcher import Store

    store = Store.open(redis_url, namespace)
    assert store.settings() is None
    site = MatcherConfig(retention_s=3600)
    store.store_settings(site, "run 1")
    assert store.settings() == site and store.configured() == site
    with caplog.at_level("WARNING"):
        store.store_settings(MatcherConfig(retention_s=7200, top_k=5), "matcher m2")
    assert "retention_s: stored 3600.0, matcher m2 7200.0" in caplog.text
    assert "top_k: stored 10, matcher m2 5" in caplog.text
    assert 3600 < store.redis.ttl(store.keys.settings) <= 7200


def test_session_numbers_never_go_back_when_redis_is_restored(
    redis_url: str, namespace: str
) -> None:
    """A restore from an older snapshot used to hand the next run the session number (and
    so the track ids) of a run made after the snapshot."""
    import time

    from pipeline.matcher import Store

    store = Store.open(redis_url, namespace)
    first = store.new_session(60)
    assert first >= int(time.time()) - 1
    second = store.new_session(60)
    assert second == first + 1
    store.redis.set(store.keys.sessions, 3)  # the snapshot's counter
    time.sleep(2.1)  # sessions are unix seconds (one more when one was taken that second)
    assert store.new_session(60) > second


def test_tracklets_written_with_the_earlier_field_name_still_work() -> None:
    """``attention=`` became ``projections``: code written against the earlier release gets
    a warning, not a TypeError."""
    maps = np.random.default_rng(0).random((1, 4, 3, 2)).astype(np.float32)
    with pytest.warns(DeprecationWarning, match="the field is `projections`"):
        old = Tracklet("cam1", 1, 0.0, 1.0, person(1)[None], attention=maps)
    assert old.projections is not None and np.array_equal(old.projections, maps)
    with pytest.raises(TrackletError, match="not both"), pytest.warns(DeprecationWarning):
        Tracklet("cam1", 1, 0.0, 1.0, person(1)[None], maps, attention=maps)


def test_identities_redis_has_expired_leave_the_matchers_index(
    redis_url: str, namespace: str
) -> None:
    """The in-process index used to keep every identity Redis had expired (305 in it
    against 212 live on a probe): they take top-k places from the people still live."""
    matcher = Matcher(redis_url, namespace, MatcherConfig(retention_s=2, top_k=1))
    regular = matcher.submit(Tracklet("cam1", 0, 0.0, 1.0, views(person(0), 0)))
    for n in range(1, 12):
        matcher.submit(Tracklet("cam1", n, n * 100.0, n * 100.0 + 1, views(person(n), n)))
    for visit in range(1, 4):  # the regular keeps coming back; the others expire
        time.sleep(1.2)
        seen = Tracklet(
            "cam2", visit, 2000.0 + visit * 10, 2001.0 + visit * 10, views(person(0), 50 + visit)
        )
        assert matcher.submit(seen) == regular
    matcher.gallery.sync([])
    assert {name for name, _ in matcher.reader.identities()} == {regular}
    assert len(matcher.gallery.index) == 1 and regular in matcher.gallery.index
