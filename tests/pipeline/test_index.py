"""The candidate index: exact below ivf_min, FAISS IVF above; updates and removals."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.matcher.index import IdentityIndex


def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("ivf_min", [10**9, 400])
def test_finds_the_right_identity_exact_and_ivf(ivf_min: int) -> None:
    rng = np.random.default_rng(0)
    centroids = unit(rng.standard_normal((2000, 512)))
    index = IdentityIndex(index_dim=128, ivf_min=ivf_min)
    index.upsert_many([f"p{i}" for i in range(2000)], centroids)
    assert index.approximate == (ivf_min < 2000)
    for i in rng.choice(2000, 50, replace=False):
        query = unit(centroids[i] + 0.02 * rng.standard_normal(512))[None]
        assert index.search(query, 5)[0] == f"p{i}"
    # an update moves an identity; a removal makes it unfindable
    index.upsert("p1", centroids[2])
    assert set(index.search(centroids[2][None], 2)) == {"p1", "p2"}
    index.remove("p2")
    assert "p2" not in index and index.search(centroids[2][None], 1) == ["p1"]
    assert len(index) == 1999


def test_dimension_mismatch_is_an_error() -> None:
    index = IdentityIndex()
    index.upsert("a", unit(np.ones(64)))
    with pytest.raises(ValueError, match="feature dim 32 != index dim 64"):
        index.upsert("b", unit(np.ones(32)))


def test_building_an_index_leaves_process_settings_alone() -> None:
    """faiss' thread count is process-wide: entry points set it (the constructor used to)."""
    import faiss

    from pipeline.matcher.index import single_threaded_search

    faiss.omp_set_num_threads(2)
    IdentityIndex()
    assert faiss.omp_get_max_threads() == 2
    single_threaded_search()
    assert faiss.omp_get_max_threads() == 1
