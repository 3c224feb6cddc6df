"""Clustering on sparse distances against sklearn / hdbscan on the dense equivalent (absent = 1)."""
import hdbscan
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score

from slr_refine import cluster_dbscan, cluster_hdbscan, eps_from_rho, jaccard_distance, to_dense_distance


def features(seed, n=600, dim=16, n_ids=40, noise=0.9):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim))
    return (centers[rng.integers(0, n_ids, n)] + noise * rng.normal(size=(n, dim))).astype(np.float32)


@pytest.fixture(scope="module")
def jaccard():
    return jaccard_distance(features(0))


def quantized_distances(seed, n=120, density=0.15):
    """Symmetric sparse distances on a 1/8 grid (many exact ties with eps), stored zero diagonal,
    some explicit off-diagonal zeros."""
    rng = np.random.default_rng(seed)
    upper = sp.random(n, n, density=density, random_state=seed, format="coo")
    keep = upper.row < upper.col
    values = np.floor(rng.random(keep.sum()) * 8) / 8  # 0, 0.125, ..., 0.875; 0 stays stored
    rows = np.concatenate([upper.row[keep], upper.col[keep], np.arange(n)])
    cols = np.concatenate([upper.col[keep], upper.row[keep], np.arange(n)])
    data = np.concatenate([values, values, np.zeros(n)]).astype(np.float32)
    return sp.csr_matrix((data, (rows, cols)), shape=(n, n))


def sklearn_dbscan(dist, eps, min_samples):
    return DBSCAN(eps=eps, min_samples=min_samples, metric="precomputed").fit_predict(to_dense_distance(dist))


@pytest.mark.parametrize("eps", [0.2, 0.45, 0.6, 0.75, 1.0])
@pytest.mark.parametrize("min_samples", [2, 4, 8])
def test_dbscan_equals_sklearn_dense_on_jaccard(jaccard, eps, min_samples):
    np.testing.assert_array_equal(cluster_dbscan(jaccard, eps, min_samples), sklearn_dbscan(jaccard, eps, min_samples))


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("eps", [0.125, 0.25, 0.5, 0.625])  # grid values: ties exactly at eps
def test_dbscan_equals_sklearn_dense_with_ties(seed, eps):
    dist = quantized_distances(seed)
    for min_samples in (1, 3, 5):
        np.testing.assert_array_equal(cluster_dbscan(dist, eps, min_samples), sklearn_dbscan(dist, eps, min_samples))


def test_dbscan_eps_at_a_stored_float32_value(jaccard):
    """A tie between eps and a float32 distance is decided as sklearn decides it."""
    eps = float(np.sort(jaccard.data[jaccard.data > 0])[jaccard.shape[0]])
    np.testing.assert_array_equal(cluster_dbscan(jaccard, eps), sklearn_dbscan(jaccard, eps, 4))


def test_dbscan_leaves_its_input_untouched(jaccard):
    before = (jaccard.data.copy(), jaccard.indices.copy(), jaccard.indptr.copy())
    cluster_dbscan(jaccard, 0.5)
    for kept, now in zip(before, (jaccard.data, jaccard.indices, jaccard.indptr)):
        np.testing.assert_array_equal(kept, now)


def test_dbscan_rejects_asymmetric_input():
    dist = sp.csr_matrix(np.array([[0, 0.1, 0], [0.9, 0, 0], [0, 0, 0]], dtype=np.float32))
    dist.setdiag(0.0)
    with pytest.raises(ValueError):
        cluster_dbscan(dist, 0.5, 1)


def abmt_eps(dense, rho):
    """ABMT's rule on the dense matrix: mean of the smallest rho share of nonzero upper distances."""
    upper = np.triu(dense, 1)
    upper = np.sort(upper[np.nonzero(upper)], axis=None)
    return upper[: int(np.round(rho * upper.size))].mean()


@pytest.mark.parametrize("rho", [2e-3, 1.6e-3, 0.05, 0.6])  # 0.6 reaches into the absent 1s
def test_eps_from_rho_matches_abmt_dense(jaccard, rho):
    assert eps_from_rho(jaccard, rho) == pytest.approx(abmt_eps(to_dense_distance(jaccard), rho), rel=1e-5)


def test_eps_from_rho_skips_exact_zero_distances():
    dist = quantized_distances(7)
    assert eps_from_rho(dist, 0.01) == pytest.approx(abmt_eps(to_dense_distance(dist), 0.01), rel=1e-6)


def test_hdbscan_on_sparse_distances_agrees_with_the_package(jaccard):
    dense = to_dense_distance(jaccard).astype(np.float64)

    def plain(order):
        return hdbscan.HDBSCAN(min_cluster_size=7, metric="precomputed").fit_predict(dense[order][:, order])[np.argsort(order)]

    ours = cluster_hdbscan(jaccard, min_cluster_size=7)
    reference = plain(np.arange(dense.shape[0]))
    permuted = plain(np.random.default_rng(0).permutation(dense.shape[0]))
    # equal distances tie differently in any two MSTs: measured ours 0.969, plain vs permuted 0.975
    assert adjusted_rand_score(ours, reference) > 0.95
    assert adjusted_rand_score(ours, reference) > adjusted_rand_score(reference, permuted) - 0.02
    assert abs(int((ours < 0).sum()) - int((reference < 0).sum())) <= 0.02 * ours.size
