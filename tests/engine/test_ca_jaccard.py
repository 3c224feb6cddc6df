"""CA-Jaccard, sparse, against a dense transcription of its definition (``slr_refine/ca_jaccard.py``)
on every pair, both variants; the camera lists of the one search on every backend against a dense
float64 search; the clustering distance's one search with cameras."""
import numpy as np
import pytest

from slr_refine import (BlasSearch, CameraJaccard, FaissSearch, add_source_term, clustering_distance, jaccard_distance,
                        normalize_features, search_neighbours, source_distances, to_dense_distance)
from slr_refine.errors import InvalidArgument


def people_in_cameras(seed, camera_sizes, dim=12, n_ids=30, camera_shift=0.6, noise=0.7):
    """Features of identities seen by several cameras, each camera shifting all of its images, and
    the camera id of each row: cameras of ``camera_sizes`` images (uneven on purpose)."""
    rng = np.random.default_rng(seed)
    cameras = np.repeat(np.arange(len(camera_sizes)), camera_sizes)
    centres, shifts = rng.normal(size=(n_ids, dim)), camera_shift * rng.normal(size=(len(camera_sizes), dim))
    people = rng.integers(0, n_ids, len(cameras))
    features = centres[people] + shifts[cameras] + noise * rng.normal(size=(len(cameras), dim))
    order = rng.permutation(len(cameras))  # cameras interleaved in row order
    return features[order].astype(np.float32), cameras[order]


def dense_ca_jaccard(features, cameras, variant, k1_intra=5, k1_inter=20, k2_intra=3, k2_inter=3):
    """The definition, on dense float64 arrays: each image's ranking within its camera and across
    the others (ties by index), R = R_intra(k1_intra+1 first) ∪ R_inter(k1_inter+1 first), the
    variant's kernel normalised over R (abmt: d² / the row's largest d²), the mean over the first
    k2_intra of the intra list and k2_inter of the inter list, then 1 - m / (2 - m)."""
    x = normalize_features(features).astype(np.float64)
    n = len(x)
    squared = np.einsum("ijd,ijd->ij", x[:, None] - x[None], x[:, None] - x[None])
    scale = squared.max(axis=1) if variant == "abmt" else np.ones(n)
    by_distance = np.argsort(squared, axis=1, kind="stable")
    intra = [[j for j in by_distance[i] if cameras[j] == cameras[i]] for i in range(n)]
    inter = [[j for j in by_distance[i] if cameras[j] != cameras[i]] for i in range(n)]

    def reciprocal(lists, size, i):
        return {j for j in lists[i][:size] if i in lists[j][:size]}

    encoding = np.zeros((n, n))
    for i in range(n):
        members = sorted(reciprocal(intra, k1_intra + 1, i) | reciprocal(inter, k1_inter + 1, i))
        kernel = np.exp(-squared[i, members] / scale[i])
        encoding[i, members] = kernel / kernel.sum()
    expanded = np.stack([encoding[intra[i][:k2_intra] + inter[i][:k2_inter]].mean(axis=0) for i in range(n)])
    overlap = np.stack([np.minimum(row, expanded).sum(axis=1) for row in expanded])
    return np.maximum(1 - overlap / (2 - overlap), 0.0)


CASES = {
    # uneven cameras, one of 3 images and one of 1 (fewer than k1_intra + 1): short intra lists
    "uneven, short intra lists": (0, (150, 100, 60, 40, 3, 1), {}),
    # two cameras: the larger one's inter list (15 images) is shorter than k1_inter + 1
    "two cameras, short inter lists": (1, (200, 15), {}),
    # the authors' README sizes, k1s of another shape
    "other sizes": (2, (120, 120, 100), {"k1_intra": 10, "k1_inter": 8, "k2_intra": 2, "k2_inter": 4}),
}


@pytest.mark.parametrize("variant", ["fastreid", "abmt"])
@pytest.mark.parametrize("seed,camera_sizes,sizes", CASES.values(), ids=CASES.keys())
def test_ca_jaccard_equals_its_dense_definition_on_every_pair(variant, seed, camera_sizes, sizes):
    features, cameras = people_in_cameras(seed, camera_sizes)
    x = normalize_features(features).astype(np.float64)
    squared = ((x[:, None] - x[None]) ** 2).sum(-1)
    assert np.diff(np.sort(squared, axis=1), axis=1).min() > 1e-9, "ties in a row would make its ranks ambiguous"
    ours = to_dense_distance(jaccard_distance(features, variant=variant, cameras=cameras, **sizes))
    reference = dense_ca_jaccard(features, cameras, variant, **sizes)
    np.testing.assert_allclose(ours, reference, atol=1e-6, rtol=0)
    stored = (reference < 1).mean()
    assert stored > 0.02
    if len(camera_sizes) > 2:  # (with two, the small camera is in every inter list of the large one: all pairs link)
        assert stored < 0.95, "the data must exercise absent pairs too"
    blind = to_dense_distance(jaccard_distance(features, k1=20, k2=6, variant=variant))
    assert np.abs(ours - blind).max() > 0.05, "camera-aware must not be the camera-blind distance renamed"


def dense_camera_lists(features, cameras, k, within, across):
    """Ranks by float64 distance, ties by index; then the same order split by camera, -1 padded."""
    x = features.astype(np.float64)
    order = np.argsort(((x[:, None] - x[None]) ** 2).sum(-1), axis=1, kind="stable")
    lists = {"within": np.full((len(x), within), -1), "across": np.full((len(x), across), -1)}
    for i, row in enumerate(order):
        for name, same, size in (("within", True, within), ("across", False, across)):
            chosen = [j for j in row if (cameras[j] == cameras[i]) == same][:size]
            lists[name][i, :len(chosen)] = chosen
    return order[:, :k], lists["within"], lists["across"]


BACKENDS = {"blas, blocks of 64": BlasSearch(block_size=64), "blas, one block": BlasSearch(),
            "faiss, per camera": FaissSearch(chunk_size=100)}  # torch's: tests/plugin/test_neighbour_search.py


@pytest.mark.parametrize("backend", BACKENDS.values(), ids=BACKENDS.keys())
def test_every_backend_finds_the_camera_lists_of_a_dense_float64_search(backend):
    features, cameras = people_in_cameras(3, (120, 90, 60, 25, 4, 1), dim=24)
    features = normalize_features(features)
    cameras = np.array(["c%d" % c for c in cameras])  # any ids
    found = search_neighbours(features, 9, farthest=True, others=features[:50], backend=backend, cameras=cameras,
                              within=6, across=21)
    ranks, within, across = dense_camera_lists(features, cameras, 9, 6, 21)
    np.testing.assert_array_equal(found.ranks, ranks)
    np.testing.assert_array_equal(found.within, within)
    np.testing.assert_array_equal(found.across, across)
    assert (found.within[:, -1] == -1).sum() == 5, "the 4- and 1-image cameras pad their lists"
    assert found.farthest is not None and found.nearest_other is not None


def test_ties_and_duplicates_go_to_the_float64_fallback_and_keep_index_order():
    rng = np.random.default_rng(4)
    lattice = rng.integers(0, 3, size=(150, 6)).astype(np.float32)  # many exactly equal distances
    features = np.concatenate([lattice, lattice[:40]])  # and exact duplicates
    cameras = rng.integers(0, 3, len(features))
    found = search_neighbours(features, 0, backend=BlasSearch(block_size=32), cameras=cameras, within=8, across=12)
    _, within, across = dense_camera_lists(features, cameras, 0, 8, 12)
    assert found.uncertified > 0, "the data must exercise the float64 fallback"
    np.testing.assert_array_equal(found.within, within)
    np.testing.assert_array_equal(found.across, across)


def test_without_cameras_the_search_has_no_camera_lists_and_refuses_lists_without_ids():
    features, _ = people_in_cameras(5, (30, 30))
    assert search_neighbours(features, 5).within is None
    with pytest.raises(ValueError, match="one camera id per row"):
        search_neighbours(features, 5, within=3)
    with pytest.raises(ValueError, match="one camera id per row"):
        jaccard_distance(features, cameras=np.zeros(7))


@pytest.mark.parametrize("variant", ["fastreid", "abmt"])
def test_clustering_distance_with_cameras_is_ca_jaccard_plus_source_term_from_one_search(variant):
    target, cameras = people_in_cameras(6, (90, 70, 40))
    source, _ = people_in_cameras(7, (60, 60))
    sizes = CameraJaccard(k1_intra=4, k1_inter=12, k2_intra=2, k2_inter=4)
    combined = clustering_distance(target, variant=variant, source=source, source_weight=0.1, cameras=cameras,
                                   camera_jaccard=sizes)
    jaccard = jaccard_distance(target, variant=variant, cameras=cameras, k1_intra=4, k1_inter=12, k2_intra=2,
                               k2_inter=4)
    expected, absent = add_source_term(jaccard, source_distances(target, source)[0], 0.1)
    np.testing.assert_array_equal(to_dense_distance(combined.dist, combined.absent),
                                  to_dense_distance(expected, absent))


@pytest.mark.parametrize("argument,value", [("k1_intra", -1), ("k1_inter", 2.5), ("k2_intra", 0), ("k2_inter", -3)])
def test_bad_sizes_are_refused_naming_the_argument(argument, value):
    with pytest.raises(InvalidArgument, match=f"^{argument} must be an integer >= ") as info:
        CameraJaccard(**{argument: value})
    assert info.value.argument == argument
