"""The engine against torch and fast-reid: the sparse Jaccard distance equals fast-reid's own dense
``compute_jaccard_distance``, and the engine's row normalisation is torch's."""
import numpy as np
import pytest
import torch

import fastreid_slr  # noqa: F401  (fast-reid compat patches before fastreid is used)
from fastreid.utils.compute_dist import compute_jaccard_distance
from slr_refine import jaccard_distance, normalize_features, to_dense_distance


def clustered_features(seed, n, dim, n_ids, noise):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_ids, dim))
    return (centers[rng.integers(0, n_ids, n)] + noise * rng.normal(size=(n, dim))).astype(np.float32)


def fastreid_reference(features, k1, k2):
    """fast-reid's dense Jaccard. search_option=3 is its CPU faiss branch, the one that never calls
    ``.cuda()``; the caller normalises, as fast-reid's evaluator does for cosine features."""
    normalized = torch.nn.functional.normalize(torch.from_numpy(features), dim=1)
    return compute_jaccard_distance(normalized, k1=k1, k2=k2, search_option=3)


@pytest.mark.parametrize(
    "seed,n,dim,n_ids,noise,k1,k2",
    [
        (0, 500, 32, 30, 0.8, 30, 6),  # fast-reid / SpCL defaults
        (1, 400, 16, 60, 1.2, 20, 6),  # ABMT's k1, overlapping identities
        (2, 300, 8, 10, 0.5, 13, 1),  # odd k1 (round(6.5) = 6), no query expansion
    ],
)
def test_matches_fastreid_compute_jaccard_distance(seed, n, dim, n_ids, noise, k1, k2):
    features = clustered_features(seed, n, dim, n_ids, noise)
    ours = jaccard_distance(features, k1=k1, k2=k2, variant="fastreid")
    reference = fastreid_reference(features, k1, k2)
    assert ours.shape == (n, n)
    np.testing.assert_allclose(to_dense_distance(ours), reference, atol=1e-5, rtol=0)
    # stored entries are exactly the overlapping pairs: reference distance below 1
    np.testing.assert_array_equal(to_dense_distance(ours) < 1 - 1e-5, reference < 1 - 1e-5)


def test_normalize_features_matches_torch():
    features = clustered_features(5, 50, 9, 5, 1.0)
    features[3] = 0.0
    expected = torch.nn.functional.normalize(torch.from_numpy(features), dim=1).numpy()
    np.testing.assert_allclose(normalize_features(features), expected, rtol=1e-6, atol=1e-7)
