"""ABMT's clustering distance: the source term, per-epoch eps and DBSCAN, sparse against dense."""
import numpy as np
import pytest
from sklearn.cluster import DBSCAN

from slr_refine import (AbsentPairs, add_source_term, cluster_dbscan, cluster_hdbscan, eps_from_rho,
                                 jaccard_distance, normalize_features, source_distances, to_dense_distance)


def domains(seed, n=400, n_source=300, dim=16, n_ids=30):
    """Target features in identity clusters, the first half shifted away from the source domain."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim))
    target = centers[rng.integers(0, n_ids, n)] + 0.8 * rng.normal(size=(n, dim))
    target[: n // 2] += 2.0 * rng.normal(size=dim)
    source = centers[rng.integers(0, n_ids, n_source)] + 0.8 * rng.normal(size=(n_source, dim))
    return target.astype(np.float32), source.astype(np.float32)


def brute_source_term(target, source):
    """d_s(i) = 1 - exp(-min_s ||t_i - s||²) over normalised features, divided by its max."""
    t, s = normalize_features(target).astype(np.float64), normalize_features(source).astype(np.float64)
    d_s = 1 - np.exp(-((t[:, None, :] - s[None, :, :]) ** 2).sum(-1).min(axis=1))
    return d_s / d_s.max()


def dense_abmt_distance(target, d_s, weight, k1=20, k2=6, variant="fastreid"):
    """ABMT's combined distance on dense matrices, written out directly (float32, as ABMT)."""
    jaccard = to_dense_distance(jaccard_distance(target, k1=k1, k2=k2, variant=variant))  # absent pairs: 1
    lam, d_s = np.float32(weight), d_s.astype(np.float32)
    return (np.float32(1) - lam) * jaccard + lam * (d_s[:, None] + d_s[None, :])


def abmt_eps(dense, rho):
    """ABMT's eps: the mean of the smallest rho share of the nonzero upper-triangle distances."""
    upper = np.triu(dense.astype(np.float64), 1)
    upper = np.sort(upper[np.nonzero(upper)], axis=None)
    return upper[: int(np.round(rho * upper.size))].mean()


def test_source_distances_are_the_nearest_source_image_scaled_to_one():
    target, source = domains(0)
    ours, scale = source_distances(target, source)
    np.testing.assert_allclose(ours, brute_source_term(target, source), atol=1e-5)
    assert ours.max() == pytest.approx(1.0) and 0 < scale <= 1
    assert ours[: len(ours) // 2].mean() > ours[len(ours) // 2:].mean() + 0.1  # the shifted half is farther


@pytest.mark.parametrize("rho", [2e-3, 2e-2])  # ABMT's, and one that suits 400 samples
@pytest.mark.parametrize("weight", [0.1, 0.3])
@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("variant", ["abmt", "fastreid"])
def test_sparse_abmt_clustering_equals_the_dense_formula(seed, weight, rho, variant):
    """Same per-epoch eps and identical DBSCAN labels as sklearn on the dense ABMT matrix, with
    either Jaccard variant."""
    target, source = domains(seed)
    source_term, _ = source_distances(target, source)
    dense = dense_abmt_distance(target, source_term, weight, variant=variant)
    combined, absent = add_source_term(jaccard_distance(target, k1=20, k2=6, variant=variant), source_term, weight)
    np.testing.assert_array_equal(to_dense_distance(combined, absent)[combined.nonzero()], dense[combined.nonzero()])

    eps = eps_from_rho(combined, rho, absent)
    assert eps == pytest.approx(abmt_eps(dense, rho), rel=1e-6)
    assert eps < absent.floor  # why sparse is exact: no absent pair is within eps
    labels = cluster_dbscan(combined, eps, 4, absent)
    expected = DBSCAN(eps=eps, min_samples=4, metric="precomputed").fit_predict(dense)
    np.testing.assert_array_equal(labels, expected)
    assert labels.max() >= (2 if rho < 0.01 else 10)


@pytest.mark.parametrize("rho", [0.3, 0.6, 0.9])
def test_eps_from_rho_counts_absent_pairs_at_their_own_distance(rho):
    """A ρ large enough to reach past the stored pairs: absent pairs enter at 1-λ + λ(d_i + d_j)."""
    target, source = domains(1, n=120)
    jaccard = jaccard_distance(target, k1=10, k2=3)
    combined, absent = add_source_term(jaccard, source_distances(target, source)[0], 0.2)
    dense = to_dense_distance(combined, absent)
    assert eps_from_rho(combined, rho, absent) == pytest.approx(abmt_eps(dense, rho), rel=1e-6)


def test_dbscan_refuses_an_eps_that_reaches_unstored_pairs():
    target, source = domains(2, n=100)
    combined, absent = add_source_term(jaccard_distance(target), source_distances(target, source)[0], 0.1)
    assert absent.floor >= 0.9 - 1e-6
    with pytest.raises(ValueError, match="k-reciprocal"):
        cluster_dbscan(combined, absent.floor + 0.01, 4, absent)


def test_absent_pairs_floor_and_defaults():
    assert AbsentPairs().floor == 1.0
    assert AbsentPairs(0.5, np.array([0.3, 0.1, 0.2])).floor == pytest.approx(0.8)
    with pytest.raises(ValueError):
        add_source_term(jaccard_distance(domains(0, n=50)[0]), np.zeros(49), 0.1)
    with pytest.raises(ValueError):
        add_source_term(jaccard_distance(domains(0, n=50)[0]), np.zeros(50), 1.0)


def test_hdbscan_module_d_takes_the_jaccard_distance_only():
    """HDBSCAN clusters the Jaccard distance alone (its MST needs constant absent pairs; the plugin's
    labeler refuses a source term with it: tests/plugin/test_pseudo_labeler.py)."""
    assert cluster_hdbscan(jaccard_distance(domains(0, n=80)[0]), 5).shape == (80,)
