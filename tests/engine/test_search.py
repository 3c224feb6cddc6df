"""The clustering's exact search: every backend gives a dense float64 search's neighbours."""
import numpy as np
import pytest

from slr_refine import BlasSearch, FaissSearch, normalize_features, search_neighbours
from slr_refine.search import float32_error


def clustered(seed, n, dim, n_ids, noise=0.8):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim))
    return normalize_features(centers[rng.integers(0, n_ids, n)] + noise * rng.normal(size=(n, dim)))


def dense_reference(features, k, others=None):
    """Ranks by float64 distance, ties by index (a stable sort); farthest and nearest-other distances."""
    x = features.astype(np.float64)
    squared = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    ranks = np.argsort(squared, axis=1, kind="stable")[:, :k]
    nearest_other = None
    if others is not None:
        nearest_other = ((x[:, None, :] - others.astype(np.float64)[None, :, :]) ** 2).sum(-1).min(1)
    return ranks, squared.max(1), nearest_other


BACKENDS = {"blas, blocks of 64": BlasSearch(block_size=64), "blas, one block": BlasSearch(),
            "faiss": FaissSearch(chunk_size=100)}


@pytest.mark.parametrize("backend", BACKENDS.values(), ids=BACKENDS.keys())
def test_every_backend_finds_the_dense_float64_neighbours(backend):
    features, others = clustered(0, 450, 24, 30), clustered(1, 170, 24, 10)
    found = search_neighbours(features, 21, farthest=True, others=others, backend=backend)
    ranks, farthest, nearest_other = dense_reference(features, 21, others)
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_allclose(found.farthest, farthest, rtol=1e-12)
    np.testing.assert_allclose(found.nearest_other, nearest_other, rtol=1e-12, atol=1e-15)


def test_ties_are_broken_by_index_and_uncertain_rows_searched_again_exactly():
    """Exact duplicates and equidistant lattice points: float32 cannot order them, so rows fall back
    to the float64 search, and the ranks still equal the dense search's, ties in index order."""
    rng = np.random.default_rng(2)
    lattice = rng.integers(0, 3, size=(150, 6)).astype(np.float32)  # many exactly equal distances
    features = np.concatenate([lattice, lattice[:40]])  # and exact duplicates
    found = search_neighbours(features, 12, farthest=True, backend=BlasSearch(block_size=32))
    ranks, farthest, _ = dense_reference(features, 12)
    assert found.uncertified > 0, "the data must exercise the float64 fallback"
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_array_equal(found.farthest, farthest)


def test_unnormalised_rows_and_fewer_rows_than_k():
    rng = np.random.default_rng(3)
    features = (rng.normal(size=(15, 5)) * rng.uniform(0.1, 10, size=(15, 1))).astype(np.float32)
    found = search_neighbours(features, 40, farthest=True, backend=BlasSearch(block_size=4))
    ranks, farthest, _ = dense_reference(features, 15)
    assert found.ranks.shape == (15, 15)
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_allclose(found.farthest, farthest, rtol=1e-12)


def test_only_the_nearest_other_row():
    features, others = clustered(4, 120, 8, 6), clustered(5, 90, 8, 6)
    found = search_neighbours(features, 0, others=others)
    assert found.ranks.shape == (120, 0) and found.farthest is None
    np.testing.assert_allclose(found.nearest_other, dense_reference(features, 0, others)[2], rtol=1e-12, atol=1e-15)


def test_float32_error_bounds_the_float32_distances():
    """The certification's premise: float32 distances lie within ``float32_error`` of float64's."""
    features = clustered(6, 300, 512, 20) * np.float32(3.0)
    norms = np.linalg.norm(features.astype(np.float64), axis=1)
    squared32 = (norms[:, None] ** 2).astype(np.float32) + (norms[None, :] ** 2).astype(np.float32) \
        - np.float32(2) * (features @ features.T)
    x = features.astype(np.float64)
    exact = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    bound = float32_error(norms, norms, features.shape[1])
    error = np.abs(squared32.astype(np.float64) - exact).max(1)
    assert (error <= bound).all()
    assert (error > 0).any(), "float32 rounding must be visible for the bound to mean something"
