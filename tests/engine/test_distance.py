"""Sparse k-reciprocal Jaccard distance, both variants, against dense brute-force transcriptions of
their definitions; the clustering distance's one search against the Jaccard and source term taken
apart. (Against fast-reid's own dense code: tests/plugin/test_jaccard_vs_fastreid.py.)"""
import numpy as np
import pytest

from slr_refine import (add_source_term, clustering_distance, jaccard_distance, normalize_features, source_distances,
                        to_dense_distance)


def clustered_features(seed, n, dim, n_ids, noise):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim))
    return (centers[rng.integers(0, n_ids, n)] + noise * rng.normal(size=(n, dim))).astype(np.float32)


def brute_force_jaccard(features, k1, k2, variant):
    """The definition of each variant, written out on dense float64 arrays with plain loops.

    fastreid: R(i, k1) over the first k1 ranks (self included), kernel exp(-d²).
    abmt: R(i, k1) over the first k1+1 ranks, kernel exp(-d² / max_j d²(i, j)).
    Both: the half set over the first round(k1/2)+1 ranks, a candidate's half set joins when more
    than 2/3 of it lies in R(i, k1), weights normalised over the expanded set, V averaged over the
    first k2 ranks, m(i, j) = Σ_k min(V[i, k], V[j, k]), distance 1 - m / (2 - m), floored at 0.
    """
    x = normalize_features(features).astype(np.float64)
    n = len(x)
    squared = np.array([[np.sum((x[i] - x[j]) ** 2) for j in range(n)] for i in range(n)])
    ranks = np.argsort(squared, axis=1)
    kernel = squared / squared.max(axis=1, keepdims=True) if variant == "abmt" else squared
    full = k1 + 1 if variant == "abmt" else k1
    half = int(np.around(k1 / 2)) + 1

    def reciprocal(i, columns):
        return [j for j in ranks[i, :columns] if i in ranks[j, :columns]]

    v = np.zeros((n, n))
    for i in range(n):
        neighbours = reciprocal(i, full)
        expanded = set(neighbours)
        for candidate in neighbours:
            candidate_set = reciprocal(candidate, half)
            if len(set(candidate_set) & set(neighbours)) > 2 / 3 * len(candidate_set):
                expanded |= set(candidate_set)
        members = sorted(expanded)
        weights = np.exp(-kernel[i, members])
        v[i, members] = weights / weights.sum()
    if k2 != 1:
        v = np.array([v[ranks[i, :k2]].mean(axis=0) for i in range(n)])
    distance = np.ones((n, n))
    for i in range(n):
        for j in range(n):
            m = np.minimum(v[i], v[j]).sum()
            distance[i, j] = max(1 - m / (2 - m), 0.0)
    return distance


@pytest.mark.parametrize("variant", ["fastreid", "abmt"])
@pytest.mark.parametrize(
    "seed,n,n_ids,k1,k2",
    [
        (0, 120, 8, 20, 6),  # ABMT's k1 / k2
        (1, 90, 15, 13, 1),  # odd k1 (round(6.5) = 6), no query expansion
        (2, 150, 5, 30, 6),  # fast-reid's / SpCL's k1, identities larger than k1
    ],
)
def test_each_variant_equals_its_brute_force_definition(variant, seed, n, n_ids, k1, k2):
    """Every pair, to 1e-6, on random data whose pairwise distances are all distinct (no rank ties)."""
    features = clustered_features(seed, n, 12, n_ids, 0.7)
    squared = ((normalize_features(features)[:, None, :].astype(np.float64)
                - normalize_features(features)[None, :, :]) ** 2).sum(-1)
    upper = np.sort(squared[np.triu_indices(n, 1)])
    assert np.diff(upper).min() > 1e-9, "ties in the distances would make the ranks ambiguous"
    ours = to_dense_distance(jaccard_distance(features, k1=k1, k2=k2, variant=variant))
    reference = brute_force_jaccard(features, k1, k2, variant)
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)
    assert 0.02 < (reference < 1).mean() < 0.95, "the data must exercise both stored and absent pairs"


def test_the_variants_differ_on_the_same_data():
    """ABMT's definition is not fast-reid's under another name: the k1+1 ranks and the row scale
    move distances by more than rounding."""
    features = clustered_features(4, 300, 16, 20, 0.8)
    abmt = to_dense_distance(jaccard_distance(features, k1=20, k2=6, variant="abmt"))
    fastreid = to_dense_distance(jaccard_distance(features, k1=20, k2=6, variant="fastreid"))
    assert np.abs(abmt - fastreid).max() > 0.05


def test_bad_variant_is_refused():
    features = clustered_features(6, 50, 4, 5, 1.0)
    with pytest.raises(ValueError, match="one of .*'fastreid', 'abmt'.*got 'spcl'"):
        jaccard_distance(features, variant="spcl")


@pytest.mark.parametrize("variant", ["fastreid", "abmt"])
def test_clustering_distance_is_jaccard_plus_source_term_from_one_search(variant):
    """The one-pass composition gives the bits of the two terms computed by their own searches."""
    target = clustered_features(7, 300, 16, 20, 0.8)
    source = clustered_features(8, 200, 16, 15, 0.8)
    alone = clustering_distance(target, k1=20, k2=6, variant=variant)
    jaccard = jaccard_distance(target, k1=20, k2=6, variant=variant)
    np.testing.assert_array_equal(to_dense_distance(alone.dist, alone.absent), to_dense_distance(jaccard))
    combined = clustering_distance(target, k1=20, k2=6, variant=variant, source=source, source_weight=0.1)
    expected, absent = add_source_term(jaccard, source_distances(target, source)[0], 0.1)
    np.testing.assert_array_equal(to_dense_distance(combined.dist, combined.absent), to_dense_distance(expected, absent))
    assert set(combined.seconds) == {"search", "jaccard", "source_term"}
    with pytest.raises(ValueError, match="pass the source features"):
        clustering_distance(target, source_weight=0.1)


def test_sparse_convention_symmetric_sorted_with_explicit_zero_diagonal():
    features = clustered_features(3, 800, 16, 20, 0.5)  # identities of ~40 > k1: local overlaps
    dist = jaccard_distance(features)
    assert dist.has_sorted_indices
    dense = to_dense_distance(dist)
    np.testing.assert_array_equal(dense, dense.T)
    np.testing.assert_array_equal(dist.diagonal(), 0.0)
    diagonal_stored = [i in dist.indices[dist.indptr[i]:dist.indptr[i + 1]] for i in range(dist.shape[0])]
    assert all(diagonal_stored), "the zero diagonal must be stored, not implied"
    assert np.all((dist.data >= 0) & (dist.data < 1))
    assert dist.nnz < 0.2 * 800 * 800, "sparse: far from every pair stored"
