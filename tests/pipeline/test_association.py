"""Re-association without Redis: cannot-links, calibration, constrained clustering, transit."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.matcher import MatcherConfig, Tracklet
from pipeline.matcher.association import (
    associate,
    calibrate,
    cannot_link_pairs,
    cluster_tracklets,
    fit_attention_weight,
    tracklet_vectors,
)
from pipeline.matcher.evidence import AppearanceEvidence, Density, PairedAppearance
from pipeline.query.topology import topology_rows
from tests.pipeline.scenes import overlapping_walkers, same_partition, unit, walkers


def test_cannot_links_match_their_definition() -> None:
    tracklets, _ = walkers(10, 3, seed=1)
    config = MatcherConfig(overlapping=(("cam0", "cam1"),))
    expected = {
        (i, j)
        for i, a in enumerate(tracklets)
        for j, b in enumerate(tracklets)
        if i < j
        and a.start <= b.end
        and b.start <= a.end
        and not {a.camera_id, b.camera_id} == {"cam0", "cam1"}
    }
    assert {tuple(p) for p in cannot_link_pairs(tracklets, config).tolist()} == expected
    assert expected  # the scene has simultaneous people


def test_threshold_is_the_negatives_quantile() -> None:
    tracklets, _ = walkers(12, 3, seed=2)
    config = MatcherConfig(false_links_per_tracklet=1.75)  # 36 tracklets: pair rate 5%
    vectors = tracklet_vectors(tracklets)
    negatives = cannot_link_pairs(tracklets, config)
    got = calibrate(vectors, negatives, config)
    means = [unit(t.features.mean(axis=0)) for t in tracklets]
    distances = [(1 - float(means[i] @ means[j])) / 2 for i, j in negatives]
    assert got.learned and got.negatives == len(distances)
    assert got.pair_rate == pytest.approx(1.75 / 35)
    assert got.threshold == pytest.approx(np.quantile(distances, 1.75 / 35), abs=1e-6)


def test_too_few_negatives_fall_back_to_the_configured_threshold() -> None:
    tracklets, _ = walkers(2, 2, seed=3, stagger_s=100.0)
    got = calibrate(
        tracklet_vectors(tracklets),
        cannot_link_pairs(tracklets, MatcherConfig()),
        MatcherConfig(link_threshold=0.07),
    )
    assert not got.learned and got.threshold == 0.07


def test_clusters_recover_well_separated_people() -> None:
    tracklets, truth = walkers(12, 3, noise=0.1, seed=4)
    labels, calibration = cluster_tracklets(tracklets, MatcherConfig())
    assert calibration.learned
    assert same_partition(labels, truth)


def test_camera_bias_is_removed() -> None:
    """Each camera adds its own strong bias: strangers in one camera look closer than one
    person in two. Centring on the cameras' means brings the person back together."""
    tracklets, truth = walkers(12, 3, noise=0.1, seed=4)
    bias = 1.5 * unit(np.random.default_rng(13).standard_normal((3, 64)))
    biased = [
        Tracklet(
            t.camera_id, t.track_id, t.start, t.end, unit(t.features + bias[int(t.camera_id[-1])])
        )
        for t in tracklets
    ]
    raw = tracklet_vectors(biased)
    same_person = [
        (1 - float(raw[i] @ raw[j])) / 2
        for i in range(len(raw))
        for j in range(i + 1, len(raw))
        if truth[i] == truth[j]
    ]
    strangers = [  # seen at once in one camera
        (1 - float(raw[i] @ raw[j])) / 2
        for i, j in cannot_link_pairs(biased, MatcherConfig())
        if biased[i].camera_id == biased[j].camera_id
    ]
    assert min(same_person) > max(strangers)  # uncentred, the wrong links come first
    assert same_partition(cluster_tracklets(biased, MatcherConfig())[0], truth)


def test_cannot_link_keeps_lookalikes_apart() -> None:
    """Two people who look the same but are in one camera at once are never merged, even
    when appearance alone would merge them."""
    twin = unit(np.ones((1, 16)))
    tracklets, _ = walkers(12, 2, noise=0.1, dim=16, seed=5)
    a = Tracklet("cam0", 1, 500.0, 510.0, np.repeat(twin, 3, axis=0))
    b = Tracklet("cam0", 2, 505.0, 515.0, np.repeat(twin, 3, axis=0))
    labels, _ = cluster_tracklets([*tracklets, a, b], MatcherConfig(false_links_per_tracklet=10.0))
    assert labels[-1] != labels[-2]


def test_average_linkage_does_not_chain() -> None:
    """A chain of small steps (each under the threshold) is not one person: average linkage
    stops where the ends are far apart, unlike the greedy nearest-identity rule."""
    rng = np.random.default_rng(6)
    basis = unit(rng.standard_normal((2, 32)))
    steps = [unit(np.cos(a) * basis[0] + np.sin(a) * basis[1]) for a in np.linspace(0, 1.2, 7)]
    chain = [
        Tracklet(f"cam{n % 2}", n, 100.0 * n, 100.0 * n + 5, np.repeat(v[None], 2, axis=0))
        for n, v in enumerate(steps)
    ]
    gap = (1 - float(steps[0] @ steps[1])) / 2
    config = MatcherConfig(link_threshold=gap * 1.5, spatio_temporal=False)
    labels, calibration = cluster_tracklets(chain, config)
    assert not calibration.learned  # no cannot-links here: the configured threshold
    assert len(set(labels)) > 1


def test_transit_times_recover_the_generator() -> None:
    """cam0 -> cam1 takes 15-25 s, cam1 -> cam2 the same: the learned distributions say so."""
    tracklets, _ = walkers(30, 3, transit=(15.0, 25.0), noise=0.1, seed=7)
    result = associate(tracklets, MatcherConfig())
    rows = {(r["source"], r["target"]): r for r in topology_rows(result.transit.samples)}
    for pair in (("cam0", "cam1"), ("cam1", "cam2")):
        assert rows[pair]["links"] >= 20
        assert 15.0 <= rows[pair]["median_s"] <= 25.0
        assert 14.0 <= rows[pair]["mode_s"] <= 26.0
    # a plausible transit is evidence for a link, an implausible one against it
    assert result.transit.llr("cam0", "cam1", 20.0) > 0 > result.transit.llr("cam0", "cam1", 90.0)


def test_time_links_what_appearance_alone_leaves_apart() -> None:
    """Noisy looks: appearance alone is unsure; learned transit times resolve people."""
    tracklets, truth = walkers(40, 3, transit=(15.0, 20.0), noise=0.4, seed=8, stagger_s=6.0)
    appearance = MatcherConfig(spatio_temporal=False)
    both = MatcherConfig()

    def pairwise_f1(labels: list[int]) -> float:
        same_l = np.equal.outer(labels, labels)
        same_t = np.equal.outer(truth, truth)
        off = ~np.eye(len(labels), dtype=bool)
        tp = (same_l & same_t & off).sum()
        return 2 * tp / max((same_l & off).sum() + (same_t & off).sum(), 1)

    alone = pairwise_f1(cluster_tracklets(tracklets, appearance)[0])
    fused = pairwise_f1(cluster_tracklets(tracklets, both)[0])
    assert fused > alone + 0.05


def test_density_integrates_to_one_and_appearance_evidence_is_monotone() -> None:
    density = Density.fit(np.array([1.0, 2.0, 2.5, 9.0]), -5.0, 20.0, 0.5, 1.0)
    assert density.pdf.sum() * density.step == pytest.approx(1.0)
    evidence = AppearanceEvidence.fit(np.linspace(0.05, 0.2, 100), rate=0.05)
    llr = evidence.llr(np.linspace(0.0, 0.3, 50))
    assert np.all(np.diff(llr) <= 1e-12)
    assert evidence.llr(np.quantile(np.linspace(0.05, 0.2, 100), 0.05)) == pytest.approx(0, abs=0.1)


def test_appearance_per_camera_pair_is_a_switch() -> None:
    """Off (the default), every distance is judged against all cannot-links; on, against
    those of its own camera pair where there are enough, and a cluster pair spanning two
    camera pairs gets the member-weighted mean of their log odds."""
    cameras = np.array(["a", "a", "b", "b"], dtype=object)
    within = np.linspace(0.10, 0.20, 30)  # a-a strangers
    across = np.linspace(0.30, 0.40, 30)  # a-b strangers
    negatives = np.array([[0, 1]] * 30 + [[0, 2]] * 30)
    d = np.r_[within, across]
    rate = 0.1

    def log_odds(sample: np.ndarray, x: float) -> float:  # log(rate / share closer than x)
        return float(np.log(rate / (np.searchsorted(np.sort(sample), x) / len(sample))))

    off = PairedAppearance.fit(d, cameras, negatives, rate, per_pair=False)
    on = PairedAppearance.fit(d, cameras, negatives, rate, per_pair=True)
    assert off.by_pair == {} and sorted(on.by_pair) == ["a\ta", "a\tb"]
    pairs = np.array([[0, 1], [1, 3]])
    x = np.array([0.35, 0.35])
    np.testing.assert_allclose(off.llr(x, cameras, pairs), [log_odds(d, 0.35)] * 2)
    np.testing.assert_allclose(off.llr(x, cameras, pairs), AppearanceEvidence.fit(d, rate).llr(x))
    np.testing.assert_allclose(on.llr(x, cameras, pairs)[1], log_odds(across, 0.35))
    assert on.llr(x, cameras, pairs)[0] < log_odds(d, 0.35)  # far for two in one camera
    spanning = on.spanning(0.35, cameras, [0], [1, 2, 3])  # one a-a pair, two a-b pairs
    expected = (on.by_pair["a\ta"].llr(0.35) + 2 * log_odds(across, 0.35)) / 3
    assert spanning == pytest.approx(float(expected))
    assert off.spanning(0.35, cameras, [0], [1, 2, 3]) == pytest.approx(log_odds(d, 0.35))


def test_overlapping_views_are_mapped_and_used() -> None:
    """Two cameras sharing a strip: the foot-point map is learned without any link known
    (it is the 300 px shift), and where two tracklets are seen at once it decides."""
    tracklets, truth = overlapping_walkers(16, noise=0.45, seed=9)
    config = MatcherConfig(overlapping=(("left", "right"),))
    result = associate(tracklets, config)
    view = result.spatial.maps[("left", "right")]
    np.testing.assert_allclose(view.affine, [[1, 0, -300], [0, 1, 0]], atol=1e-3)
    assert view.inlier_pairs == 16
    without = cluster_tracklets(tracklets, config.model_copy(update={"spatio_temporal": False}))[0]
    assert not same_partition(without, truth)
    assert same_partition(result.labels, truth)


def test_attention_weight_is_fitted_and_never_taken_when_it_does_not_help() -> None:
    """On pseudo-pairs: an attention distance that separates same from different people
    gets a weight; pure noise gets 0 (two folds must both improve)."""
    rng = np.random.default_rng(10)
    positives, negatives = 60, 400
    feature = (rng.normal(0.30, 0.05, positives), rng.normal(0.35, 0.05, negatives))
    informative = (rng.normal(0.1, 0.03, positives), rng.normal(0.3, 0.03, negatives))
    noise = (rng.normal(0.2, 0.05, positives), rng.normal(0.2, 0.05, negatives))
    weight, aucs = fit_attention_weight(feature, informative, rate=0.05)
    assert weight > 0 and aucs[f"w={weight:g}"] > aucs["w=0"] + 0.1
    assert fit_attention_weight(feature, noise, rate=0.05)[0] == 0.0
    assert fit_attention_weight((feature[0][:3], feature[1]), noise, rate=0.05) == (0.0, {})
