"""Hardening: the exact fast HDBSCAN on duplicated rows against the hdbscan package, and the rest."""
import hdbscan
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.cluster import DBSCAN
from sklearn.metrics import adjusted_rand_score
from sklearn.neighbors import KDTree

from slr_refine import HARDEN_METHODS, harden, refine_soft_labels
from slr_refine.harden import _spanning_tree_of_duplicated_rows


def noisy_labels(rng, truth, n_ids, flip=0.1, outliers=0.06):
    """A clustering of `truth` with label noise, outliers and a few merged identities."""
    labels = truth.copy()
    flipped = rng.random(truth.size) < flip
    labels[flipped] = rng.integers(0, n_ids, flipped.sum())
    merged = rng.permutation(n_ids)[labels] % int(n_ids * 0.95)
    return np.where(rng.random(truth.size) < outliers, -1, merged)


def soft_labels(seed, n=1200, alpha=0.5, project_outliers=True):
    rng = np.random.default_rng(seed)
    n_ids = n // 16
    truth = rng.integers(0, n_ids, n)
    prev, cur = noisy_labels(rng, truth, n_ids), noisy_labels(rng, truth, n_ids)
    return refine_soft_labels(prev, cur, alpha=alpha, project_outliers=project_outliers), cur


def first_appearance(labels):
    """Canonical numbering (by first appearance) to compare partitions exactly."""
    mapping = {}
    return np.array([-1 if x < 0 else mapping.setdefault(x, len(mapping)) for x in labels])


def duplicated_points(seed):
    """Continuous points, each repeated 1-11 times, shuffled."""
    rng = np.random.default_rng(seed)
    distinct = rng.normal(size=(6, 5))[rng.integers(0, 6, 80)] * 3 + rng.normal(size=(80, 5))
    rows = np.repeat(distinct, rng.integers(1, 12, 80), axis=0)
    return rows[rng.permutation(rows.shape[0])]


@pytest.mark.parametrize("seed", range(3))
def test_fast_path_builds_the_packages_core_distances_and_spanning_tree(seed):
    rows = duplicated_points(seed)
    min_samples = 7
    edges, core = _spanning_tree_of_duplicated_rows(sp.csr_matrix(rows), min_samples)
    # core distance = min_samples-th other point of the multiset, duplicates at 0 included
    np.testing.assert_allclose(core, KDTree(rows).query(rows, k=min_samples + 1)[0][:, -1], rtol=1e-12)
    assert edges.shape == (rows.shape[0] - 1, 3)
    n_parts, _ = sp.csgraph.connected_components(
        sp.coo_matrix((np.ones(len(edges)), (edges[:, 0], edges[:, 1])), shape=(rows.shape[0],) * 2)
    )
    assert n_parts == 1, "a spanning tree of every row"
    plain = hdbscan.HDBSCAN(min_cluster_size=7, algorithm="prims_kdtree", gen_min_span_tree=True).fit(rows)
    # MSTs may differ where weights tie, their weight multisets may not
    np.testing.assert_allclose(np.sort(edges[:, 2]), np.sort(plain.minimum_spanning_tree_._mst[:, 2]), rtol=1e-12)


@pytest.mark.parametrize("alpha,bound", [(0.5, 0.85), (0.7, 0.99)])
@pytest.mark.parametrize("seed", range(2))
def test_fast_path_agrees_with_the_plain_package_call(seed, alpha, bound):
    """Measured on these labelings: ARI 0.91-0.92 at alpha=0.5, 1.0 at alpha=0.7; the plain call
    against itself on permuted rows scores the same (0.91-0.92 / 1.0): the residue is tie order."""
    soft, _ = soft_labels(seed, alpha=alpha)
    fast = harden(soft)
    plain = harden(soft, plain_hdbscan=True)
    permutation = np.random.default_rng(seed).permutation(soft.shape[0])
    plain_permuted = harden(soft[permutation], plain_hdbscan=True)[np.argsort(permutation)]
    assert adjusted_rand_score(fast, plain) > bound
    assert adjusted_rand_score(fast, plain) > adjusted_rand_score(plain, plain_permuted) - 0.05


def test_dropping_multiplicities_would_be_wrong():
    """Why the fast path carries counts: clustering the distinct rows alone loses the density
    (measured ARI 0.007 against the plain call here)."""
    soft, _ = soft_labels(0, alpha=0.7)
    fast = harden(soft)
    canonical = sp.csr_matrix(soft)
    _, first, inverse = np.unique(canonical.toarray(), axis=0, return_index=True, return_inverse=True)
    naive = harden(canonical[first])[inverse.ravel()]
    assert adjusted_rand_score(fast, harden(soft, plain_hdbscan=True)) > 0.99
    assert adjusted_rand_score(naive, harden(soft, plain_hdbscan=True)) < 0.5


@pytest.mark.parametrize("method", HARDEN_METHODS)
def test_all_zero_rows_stay_out_and_come_back_as_noise(method):
    soft, cur = soft_labels(1, alpha=0.7, project_outliers=False)  # today's outliers: zero rows
    zero = np.diff(soft.indptr) == 0
    assert zero.sum() > 10 and np.array_equal(zero, cur < 0)
    labels = harden(soft, method=method)
    assert np.all(labels[zero] == -1)
    alone = harden(soft[~zero], method=method)  # the zero rows must not influence the others
    np.testing.assert_array_equal(first_appearance(labels[~zero]), first_appearance(alone))


@pytest.mark.parametrize("method", HARDEN_METHODS)
def test_labels_are_contiguous(method):
    soft, _ = soft_labels(2, alpha=0.5)
    labels = harden(soft, method=method)
    kept = np.unique(labels[labels >= 0])
    np.testing.assert_array_equal(kept, np.arange(kept.size))
    assert kept.size > 10


def test_max_is_argmax_of_the_nonzero_rows():
    soft, _ = soft_labels(3, alpha=0.3)  # alpha < 0.5: the projection can override the current label
    dense = soft.toarray()
    nonzero = dense.any(axis=1)
    expected = np.full(dense.shape[0], -1)
    _, expected[nonzero] = np.unique(dense[nonzero].argmax(axis=1), return_inverse=True)
    np.testing.assert_array_equal(harden(soft, method="max"), expected)


def test_dbscan_equals_sklearn_on_every_row():
    soft, _ = soft_labels(4, alpha=0.5)
    rows = soft.toarray()
    nonzero = rows.any(axis=1)
    expected = np.full(rows.shape[0], -1)
    expected[nonzero] = DBSCAN(eps=0.3, min_samples=4).fit_predict(rows[nonzero])
    labels = harden(soft, method="dbscan", dbscan_eps=0.3, dbscan_min_samples=4)
    np.testing.assert_array_equal(first_appearance(labels), first_appearance(expected))


def test_too_few_rows_for_a_cluster_are_noise_and_bad_methods_rejected():
    soft = sp.csr_matrix(np.eye(5))
    np.testing.assert_array_equal(harden(soft, min_cluster_size=7), -np.ones(5))
    with pytest.raises(ValueError):
        harden(soft, method="kmeans")
