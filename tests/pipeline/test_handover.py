"""Hand-overs learned from track ends and starts: blind-zone walks and broken tracks."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from pipeline.matcher import MatcherConfig, Tracklet
from pipeline.matcher.association import associate, cannot_link_pairs, tracklet_vectors
from pipeline.matcher.handover import Handover, PairAppearance
from pipeline.query.cli import app as query_app
from reid.runtime.clustering import camera_centred, pair_distances
from tests.pipeline.scenes import unit
from tests.pipeline.test_camera_links import (
    _tracklet,
    blind_zone_scene,
    cross_camera_links,
    learned_in_redis,
)


def _consecutive(truth: list[int], tracklets: list[Tracklet]) -> set[tuple[int, int]]:
    """(earlier, later) index pairs of one person's consecutive tracks."""
    by_person: dict[int, list[int]] = {}
    for n, person in enumerate(truth):
        by_person.setdefault(person, []).append(n)
    pairs = set()
    for members in by_person.values():
        ordered = sorted(members, key=lambda n: tracklets[n].start)
        pairs |= set(zip(ordered, ordered[1:], strict=False))
    return pairs


def _appearance(tracklets: list[Tracklet], config: MatcherConfig) -> PairAppearance:
    vectors = camera_centred(tracklet_vectors(tracklets), [t.camera_id for t in tracklets])
    negatives = cannot_link_pairs(tracklets, config)
    return PairAppearance(
        lambda pairs: pair_distances(vectors, pairs), pair_distances(vectors, negatives)
    )


def test_the_walk_through_a_blind_zone_is_learned_with_no_appearance() -> None:
    """Identical-looking people: only when and where tracks end and begin speak."""
    tracklets, truth = blind_zone_scene(seed=3)
    model = Handover.fit(tracklets, 30.0)
    crossers = sum(truth.count(p) == 2 for p in set(truth))
    ends_in_a = sum(t.camera_id == "a" for t in tracklets)
    gaps = [
        tracklets[y].start - tracklets[x].end
        for x, y in _consecutive(truth, tracklets)
        if tracklets[x].camera_id != tracklets[y].camera_id
    ]
    assert abs(model.gap_s[("a", "b")] - float(np.mean(gaps))) < 1.0
    assert abs(model.continued[("a", "b")] - crossers / ends_in_a) < 0.1
    assert model.continued.get(("b", "a"), 0.0) < 0.05  # nobody walks back
    # a crosser's move scores for one person, a stranger's at a like gap against
    true_pairs = _consecutive(truth, tracklets)
    is_true = np.array([(int(x), int(y)) in true_pairs for x, y in model.pairs])
    cross = np.array([tracklets[x].camera_id != tracklets[y].camera_id for x, y in model.pairs])
    assert np.median(model.llr[is_true & cross]) > 1.0
    assert np.median(model.llr[~is_true & cross]) < 0.0


def test_the_posterior_is_calibrated() -> None:
    """Pairs were never labelled: grouped by posterior, the share that truly are one person's
    hand-over matches the posterior within 0.2 in every bin of at least 20 pairs (measured:
    within 0.17: the low bins are over-confident) and within 0.1 on average over the pairs
    (expected calibration error; measured 0.06)."""
    config = MatcherConfig()
    posteriors, outcomes = [], []
    for seed in (4, 5):
        tracklets, truth = blind_zone_scene(looks=0.8, seed=seed)
        model = Handover.fit(tracklets, 30.0, appearance=_appearance(tracklets, config))
        true_pairs = _consecutive(truth, tracklets)
        posteriors.append(model.posterior)
        outcomes.append([(int(x), int(y)) in true_pairs for x, y in model.pairs])
    posterior, outcome = np.concatenate(posteriors), np.concatenate(outcomes)
    bins = np.clip((posterior * 5).astype(int), 0, 4)
    checked, error = 0, 0.0
    for b in range(5):
        inside = bins == b
        gap = abs(posterior[inside].mean() - outcome[inside].mean()) if inside.any() else 0.0
        error += gap * inside.sum() / len(posterior)
        if inside.sum() >= 20:
            checked += 1
            assert gap < 0.2, b
    assert checked >= 4 and error < 0.1


def test_a_blind_zone_appearance_cannot_link_is_linked_by_the_hand_overs() -> None:
    tracklets, truth = blind_zone_scene(
        crossers=30, strangers=30, duration=600.0, looks=0.5, seed=2
    )
    looks_only = cross_camera_links(
        associate(tracklets, MatcherConfig(handovers=False)).labels, truth, tracklets
    )
    handed = cross_camera_links(associate(tracklets, MatcherConfig()).labels, truth, tracklets)
    assert looks_only[1] <= 0.2 * looks_only[0]  # appearance alone links the wrong people
    assert handed[1] >= 20 and handed[1] >= 0.8 * handed[0]


def test_a_persons_broken_tracks_in_one_camera_are_stitched() -> None:
    """People cross one camera; each is lost for a second once (occlusion) and found again
    where their walk leads, as a new track. Strangers come and go all over the view."""
    rng = np.random.default_rng(7)
    tracklets, truth = [], []
    for person in range(30):
        look = unit(np.random.default_rng(500 + person).standard_normal(16))
        t = float(rng.uniform(0, 400))
        y = float(rng.uniform(150, 450))
        speed = float(rng.choice([-1, 1])) * float(rng.uniform(40, 80))
        x0 = 0.0 if speed > 0 else 640.0
        lost = float(rng.uniform(3, 5))
        gap = float(rng.uniform(0.5, 1.5))
        x1 = x0 + speed * lost
        x2 = x1 + speed * gap
        for n, (start, end, a, b) in enumerate(
            ((t, t + lost, x0, x1), (t + lost + gap, t + lost + gap + 4, x2, x2 + speed * 4))
        ):
            noisy = unit(look + 0.9 * rng.standard_normal(16))
            tracklets.append(_tracklet("a", 2 * person + n, start, end, (a, y), (b, y), noisy))
            truth.append(person)
    config = MatcherConfig()
    made = right = 0
    labels = associate(tracklets, config).labels
    for i in range(len(tracklets)):
        for j in range(i + 1, len(tracklets)):
            if labels[i] == labels[j]:
                made += 1
                right += truth[i] == truth[j]
    off = associate(tracklets, MatcherConfig(handovers=False)).labels
    before = sum(
        off[i] == off[j] and truth[i] == truth[j]
        for i in range(len(tracklets))
        for j in range(i + 1, len(tracklets))
    )
    assert right >= 25 and right >= 0.9 * made
    assert right > before + 10


@pytest.mark.redis
def test_reid_query_shows_the_hand_overs_re_association_learned(
    redis_url: str, namespace: str
) -> None:
    tracklets, truth = blind_zone_scene(crossers=30, strangers=30, duration=600.0, seed=2)
    learned = learned_in_redis(tracklets, redis_url, namespace, MatcherConfig())
    pairs = {(p["source"], p["target"]): p for p in learned["handovers"]["pairs"]}
    gaps = [
        tracklets[y].start - tracklets[x].end
        for x, y in _consecutive(truth, tracklets)
        if tracklets[x].camera_id != tracklets[y].camera_id
    ]
    assert abs(pairs["a", "b"]["gap_s"] - float(np.mean(gaps))) < 1.0
    # 30 of the 60 ends in a cross (measured 0.63: some of b's strangers are put down to
    # crossers whose walk time they happen to match)
    assert abs(pairs["a", "b"]["continued"] - 0.5) < 0.15
    assert ("b", "a") not in pairs
    args = ["--redis", redis_url, "--namespace", namespace]
    table = CliRunner().invoke(query_app, ["camera-links", *args])
    share = f"{pairs['a', 'b']['continued']:.0%}"
    assert table.exit_code == 0 and "hand-overs" in table.output and share in table.output


def test_a_large_window_learns_on_a_sample_of_its_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FIT_PAIRS candidate pairs the EM learns on a sample of the starts and settles on
    every pair: it learns the same walk and hands over most of the same people, as right as
    the whole window's fit (identical-looking people: time and place alone)."""
    from pipeline.matcher import handover

    tracklets, truth = blind_zone_scene(seed=3)
    true_pairs = _consecutive(truth, tracklets)

    def handed_across(model: Handover) -> tuple[int, int]:
        made = {
            (x, y)
            for (x, y), p in zip(model.pairs.tolist(), model.posterior.tolist(), strict=True)
            if p > 0.5 and tracklets[x].camera_id != tracklets[y].camera_id
        }
        return len(made), len(made & true_pairs)

    whole = Handover.fit(tracklets, 30.0)
    monkeypatch.setattr(handover, "FIT_PAIRS", len(whole.pairs) // 3)
    sampled = Handover.fit(tracklets, 30.0)
    assert abs(sampled.gap_s[("a", "b")] - whole.gap_s[("a", "b")]) < 0.5
    assert abs(sampled.continued[("a", "b")] - whole.continued[("a", "b")]) < 0.1
    (made, right), (made_whole, right_whole) = handed_across(sampled), handed_across(whole)
    assert right >= 0.75 * right_whole  # measured 24 of the whole fit's 31
    assert right / made >= right_whole / made_whole - 0.1
