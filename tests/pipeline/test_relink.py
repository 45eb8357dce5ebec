"""Re-association in Redis: wrong merges split, missed links merged, old ids resolve, and
nothing lost while live matchers race it."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.matcher import Matcher, MatcherConfig
from pipeline.query.api import create_app
from pipeline.query.service import QueryService
from tests.pipeline.scenes import same_partition, walkers

pytestmark = pytest.mark.redis


def recorded(matcher: Matcher, tracklets: list) -> list[str]:
    return [matcher.identity_of(t.camera_id, t.track_id) for t in tracklets]


def assert_consistent(matcher: Matcher, tracklets: list) -> None:
    """Every tracklet has an identity whose trajectory holds it exactly once."""
    for t, identity in zip(tracklets, recorded(matcher, tracklets), strict=True):
        assert identity is not None
        refs = [(s.camera_id, s.track_id) for s in matcher.trajectory(identity)]
        assert refs.count((t.camera_id, t.track_id)) == 1


def test_wrong_merges_are_split(redis_url: str, namespace: str) -> None:
    tracklets, truth = walkers(12, 3, noise=0.1, seed=11)
    matcher = Matcher(redis_url, namespace, MatcherConfig(link_threshold=1.0))
    for t in tracklets:  # links anything the gates allow: strangers glued together
        matcher.submit(t)
    assert not same_partition(recorded(matcher, tracklets), truth)
    report = matcher.relink()
    assert report.splits and report.calibration.learned
    assert same_partition(recorded(matcher, tracklets), truth)
    assert_consistent(matcher, tracklets)
    assert matcher.relink().moves == 0  # settled: a second pass changes nothing


def test_missed_links_are_merged_and_old_ids_resolve(redis_url: str, namespace: str) -> None:
    tracklets, truth = walkers(12, 3, noise=0.1, seed=12)
    matcher = Matcher(redis_url, namespace, MatcherConfig(link_threshold=1e-6))
    founded = [matcher.submit(t) for t in tracklets]  # never links: one identity each
    assert len(set(founded)) == len(tracklets)
    report = matcher.relink()
    assert len(report.merges) == len(tracklets) - 12
    assert same_partition(recorded(matcher, tracklets), truth)
    assert_consistent(matcher, tracklets)
    old, survivor = next(iter(report.merges.items()))
    assert matcher.resolve(old) == survivor
    api = TestClient(create_app(QueryService(matcher)))
    body = api.get(f"/api/identities/{old}").json()
    assert body["identity"] == survivor and body["info"]["merged_from"] == old
    assert {name for name, _ in matcher.identities(100)} == set(recorded(matcher, tracklets))
    # the online index follows: the next sighting of a merged person links to the survivor
    person = truth[founded.index(old)]
    again = tracklets[truth.index(person)]
    later = type(again)("cam9", 999, 5000.0, 5005.0, again.features)
    fresh = Matcher(redis_url, namespace, MatcherConfig(link_threshold=0.2))
    assert fresh.submit(later) == matcher.resolve(old)
    assert matcher.decide(later).identity == matcher.resolve(old)


def test_transit_times_are_stored_for_the_topology_view(redis_url: str, namespace: str) -> None:
    tracklets, _ = walkers(30, 3, transit=(15.0, 25.0), noise=0.1, seed=13)
    matcher = Matcher(redis_url, namespace, MatcherConfig(link_threshold=1e-6))
    for t in tracklets:
        matcher.submit(t)
    matcher.relink()
    learned = matcher.topology()
    assert 15.0 <= np.median(learned[("cam0", "cam1")]) <= 25.0
    api = TestClient(create_app(QueryService(matcher)))
    rows = {(r["source"], r["target"]): r for r in api.get("/api/topology").json()}
    assert rows[("cam1", "cam2")]["links"] >= 20
    plot = api.get("/api/topology.png")
    assert plot.headers["content-type"] == "image/png" and len(plot.content) > 5000


def _submit(url: str, namespace: str, seed: int) -> None:
    tracklets, _ = walkers(12, 3, noise=0.1, seed=14)
    matcher = Matcher(url, namespace, MatcherConfig(link_threshold=0.3))
    for i in np.random.default_rng(seed).permutation(len(tracklets)):
        matcher.submit(tracklets[i])


def _relink_loop(url: str, namespace: str, rounds: int) -> None:
    matcher = Matcher(url, namespace)
    for _ in range(rounds):
        matcher.relink()


def test_relinking_while_matchers_race(redis_url: str, namespace: str) -> None:
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_submit, args=(redis_url, namespace, s)) for s in range(6)]
    procs.append(ctx.Process(target=_relink_loop, args=(redis_url, namespace, 15)))
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)
    assert all(p.exitcode == 0 for p in procs)
    tracklets, truth = walkers(12, 3, noise=0.1, seed=14)
    matcher = Matcher(redis_url, namespace)
    assert_consistent(matcher, tracklets)  # nothing lost, nothing recorded twice
    matcher.relink()
    assert same_partition(recorded(matcher, tracklets), truth)
    assert_consistent(matcher, tracklets)


def test_relink_weighs_attention_when_the_model_exports_it(redis_url: str, namespace: str) -> None:
    """Tracklets with attention maps and a matcher with the model's scorer: re-association
    reads each tracklet's representative map back from Redis and fits attention's weight
    on pseudo-pairs (here the maps are noise, so the weight must stay 0)."""
    from reid.models import CASN
    from reid.runtime.consistency import attention_scorer

    scorer = attention_scorer(CASN(5, backbone="resnet18").eval())
    rng = np.random.default_rng(15)
    tracklets, truth = walkers(12, 3, noise=0.1, dim=512, seed=15)
    tracklets = [
        type(t)(
            t.camera_id,
            t.track_id,
            t.start,
            t.end,
            t.features,
            rng.random((len(t.features), 512, 4, 2)).astype(np.float32),
        )
        for t in tracklets
    ]
    matcher = Matcher(redis_url, namespace, MatcherConfig(link_threshold=1e-6), scorer=scorer)
    for t in tracklets:
        matcher.submit(t)
    report = matcher.relink()
    assert report.attention_auc and report.attention_weight == 0.0
    assert same_partition(recorded(matcher, tracklets), truth)
