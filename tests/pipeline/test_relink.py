"""Re-association in Redis: wrong merges split, missed links merged, old ids resolve, and
nothing lost while live matchers race it."""

from __future__ import annotations

import multiprocessing as mp
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.matcher import Matcher, MatcherConfig
from pipeline.query.api import create_app
from pipeline.query.service import QueryService
from tests.pipeline.scenes import same_partition, walkers

pytestmark = pytest.mark.redis


def with_noise_maps(tracklets: list, truth: list, seed: int) -> tuple[list, list]:
    """The tracklets with random projections ([K, 512, 4, 2]) as their attention maps."""
    rng = np.random.default_rng(seed)
    maps = [rng.random((len(t.features), 512, 4, 2)).astype(np.float32) for t in tracklets]
    return [replace(t, projections=m) for t, m in zip(tracklets, maps, strict=True)], truth


def recorded(matcher: Matcher, tracklets: list) -> list[str]:
    return [matcher.identity_of(t.camera_id, t.track_id) for t in tracklets]


def assert_consistent(matcher: Matcher, tracklets: list) -> None:
    """Every tracklet has an identity whose trajectory holds it exactly once."""
    for t, identity in zip(tracklets, recorded(matcher, tracklets), strict=True):
        assert identity is not None
        refs = [(s.camera_id, s.track_id) for s in matcher.reader.trajectory(identity)]
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
    assert matcher.reader.resolve(old) == survivor
    api = TestClient(create_app(QueryService(matcher.reader)))
    body = api.get(f"/api/identities/{old}").json()
    assert body["identity"] == survivor and body["info"]["merged_from"] == old
    assert {name for name, _ in matcher.reader.identities(100)} == set(recorded(matcher, tracklets))
    # the online index follows: the next sighting of a merged person links to the survivor
    person = truth[founded.index(old)]
    again = tracklets[truth.index(person)]
    later = type(again)("cam9", 999, 5000.0, 5005.0, again.features)
    fresh = Matcher(redis_url, namespace, MatcherConfig(link_threshold=0.2))
    assert fresh.submit(later) == matcher.reader.resolve(old)
    assert matcher.decide(later).identity == matcher.reader.resolve(old)


def test_transit_times_are_stored_for_the_topology_view(redis_url: str, namespace: str) -> None:
    tracklets, _ = walkers(30, 3, transit=(15.0, 25.0), noise=0.1, seed=13)
    matcher = Matcher(redis_url, namespace, MatcherConfig(link_threshold=1e-6))
    for t in tracklets:
        matcher.submit(t)
    matcher.relink()
    learned = matcher.reader.topology()
    assert 15.0 <= np.median(learned[("cam0", "cam1")]) <= 25.0
    api = TestClient(create_app(QueryService(matcher.reader)))
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
    tracklets, truth = with_noise_maps(*walkers(12, 3, noise=0.1, dim=512, seed=15), 15)
    matcher = Matcher(redis_url, namespace, MatcherConfig(link_threshold=1e-6), scorer=scorer)
    for t in tracklets:
        matcher.submit(t)
    report = matcher.relink()
    assert report.attention_auc and report.attention_weight == 0.0
    assert same_partition(recorded(matcher, tracklets), truth)


def _representative(t) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """The tracklet's crop closest to its mean, as the test reads the definition."""
    k = int(np.argmax(t.features @ t.features.mean(axis=0)))
    return t.features[k], t.projections[k]


def test_rewritten_identities_keep_their_attention_evidence(redis_url: str, namespace: str) -> None:
    """Re-association and a correction rebuild identities from their tracklets: each
    rebuilt identity's exemplars are its tracklets' representative crops, feature *and*
    projections, and the next decision still scores attention on them (it used to fall back
    to features alone for the rest of the identity's life)."""
    from pipeline.matcher.codec import decode_exemplars
    from pipeline.matcher.corrections import Actor, Corrector
    from reid.models import CASN
    from reid.runtime.consistency import attention_scorer
    from reid.runtime.pair_scoring import combine

    scorer = attention_scorer(CASN(5, backbone="resnet18").eval())
    tracklets, truth = with_noise_maps(*walkers(8, 3, noise=0.1, dim=512, seed=16), 16)
    rng = np.random.default_rng(17)
    config = MatcherConfig(link_threshold=1.0, attention_weight=0.4)
    matcher = Matcher(redis_url, namespace, config, scorer=scorer)
    for t in tracklets:  # strangers glued together online
        matcher.submit(t)
    report = matcher.relink()
    assert report.splits and same_partition(recorded(matcher, tracklets), truth)
    by_ref = {(t.camera_id, t.track_id): t for t in tracklets}

    def exemplars_of(identity: str):  # noqa: ANN202
        raw = matcher.redis.hgetall(matcher.keys.exemplars(identity))
        sightings = matcher.reader.trajectory(identity)
        members = [by_ref[(s.camera_id, s.track_id)] for s in sightings if s.camera_id != "cam9"]
        return decode_exemplars(raw), sorted(members, key=lambda t: t.end)

    rebuilt = set(report.splits) | {i for i in set(recorded(matcher, tracklets))}
    for identity in rebuilt:
        found, members = exemplars_of(identity)
        assert found is not None and found.projections is not None, identity
        if identity in report.splits:  # rebuilt: the members' representative crops
            reps = [_representative(t) for t in members]
            assert np.allclose(found.features, np.stack([f for f, _ in reps]), atol=1e-6)
            expected = np.stack([p for _, p in reps]).astype(np.float16).astype(np.float32)
            assert np.array_equal(found.projections, expected)

    # an operator merge rebuilds the survivor the same way
    a, b = sorted(report.splits)[:2]
    Corrector(matcher.reader, config).merge(a, b, Actor("alice", "operator"))
    merged, members = exemplars_of(b)
    assert merged is not None and merged.projections is not None
    assert len(merged.features) == min(len(members), config.exemplars_per_identity)

    # and the next decision against it weighs attention, as for a fresh identity
    query = members[-1]  # a new crop of the same person, not one of the exemplars
    near = query.features[:1] + 0.02 * rng.standard_normal(query.features[:1].shape)
    new = type(query)(
        "cam9",
        1,
        query.end + 500.0,
        query.end + 501.0,
        (near / np.linalg.norm(near)).astype(np.float32),
        rng.random((1, 512, 4, 2)).astype(np.float32),
    )
    decision = matcher.decide(new)
    assert decision.identity == b and decision.action == "link"
    survivor = merged  # the exemplars it was scored against
    sims = new.features @ survivor.features.T
    j = int(np.argmax(sims[0]))
    d_feat = float(np.clip((1 - sims[0, j]) / 2, 0, 1))
    d_att = scorer.distance(
        new.features[:1],
        new.projections[:1],
        survivor.features[j : j + 1],
        survivor.projections[j : j + 1],
    )
    expected = float(combine(np.array([d_feat]), d_att, config.attention_weight)[0])
    assert decision.distance == pytest.approx(expected, abs=1e-5)
    assert abs(decision.distance - d_feat) > 1e-4  # attention moved it
