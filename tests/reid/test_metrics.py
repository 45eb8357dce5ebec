"""evaluate_rank against a second, independent computation written from the definitions."""

import numpy as np
import pytest

from reid.metrics import NoValidQueryError, evaluate_rank


def reference_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank):
    """Per query: valid gallery = not (same id and same camera); AP = sum of precision at
    each relevant position / number relevant; CMC from the first relevant position."""
    cmc_sum, ap_sum, valid = np.zeros(max_rank), 0.0, 0
    for q in range(len(q_pids)):
        candidates = [
            g for g in range(len(g_pids)) if not (g_pids[g] == q_pids[q] and g_cams[g] == q_cams[q])
        ]
        ranked = sorted(candidates, key=lambda g: (distmat[q, g], g))
        relevant = [i for i, g in enumerate(ranked) if g_pids[g] == q_pids[q]]
        if not relevant:
            continue
        valid += 1
        for k in range(max_rank):
            cmc_sum[k] += 1.0 if relevant[0] <= k else 0.0
        precisions = [(n + 1) / (pos + 1) for n, pos in enumerate(relevant)]
        ap_sum += sum(precisions) / len(relevant)
    return cmc_sum / valid, ap_sum / valid


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_independent_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    q, g = 30, 120
    q_pids, g_pids = rng.integers(0, 15, q), rng.integers(0, 15, g)
    q_cams, g_cams = rng.integers(0, 3, q), rng.integers(0, 3, g)
    distmat = rng.random((q, g))
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    ref_cmc, ref_ap = reference_rank(distmat, q_pids, g_pids, q_cams, g_cams, 20)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-12)
    assert mean_ap == pytest.approx(ref_ap, abs=1e-12)


def test_hand_computed_case_excludes_same_camera_matches() -> None:
    # query id 1 cam 0; gallery by distance: [id1 cam0 (excluded), id2, id1 cam1, id1 cam2]
    distmat = np.array([[0.1, 0.2, 0.3, 0.4]])
    cmc, mean_ap = evaluate_rank(
        distmat,
        np.array([1]),
        np.array([1, 2, 1, 1]),
        np.array([0]),
        np.array([0, 0, 1, 2]),
        max_rank=3,
    )
    np.testing.assert_allclose(cmc, [0.0, 1.0, 1.0])
    assert mean_ap == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_queries_without_valid_match_are_skipped() -> None:
    distmat = np.array([[0.1, 0.9], [0.5, 0.2]])
    # query 0 (id 5) has only a same-camera match: skipped; query 1 ranks its match first
    cmc, mean_ap = evaluate_rank(
        distmat, np.array([5, 6]), np.array([5, 6]), np.array([0, 0]), np.array([0, 1])
    )
    assert cmc[0] == 1.0 and mean_ap == 1.0
    with pytest.raises(NoValidQueryError):
        evaluate_rank(distmat[:1], np.array([5]), np.array([5, 6]), np.array([0]), np.array([0, 1]))


def test_shape_mismatch_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="distmat is 2x3"):
        evaluate_rank(np.zeros((2, 3)), np.zeros(2), np.zeros(4), np.zeros(2), np.zeros(3))
