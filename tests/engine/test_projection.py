"""IoU projection and refined soft labels against dense loops written straight from Eq. 1-4."""
import numpy as np
import pytest

from slr_refine import NORMALIZATIONS, iou_projection, refine_soft_labels, relabel_contiguous


def brute_iou(prev, cur):
    """Eq. 1 with Python sets: A_a = {i: prev_i = a}, B_b = {i: cur_i = b}."""
    n_prev, n_cur = max(prev.max(initial=-1), -1) + 1, max(cur.max(initial=-1), -1) + 1
    iou = np.zeros((n_prev, n_cur))
    for a in range(n_prev):
        members_a = {i for i in range(prev.size) if prev[i] == a}
        for b in range(n_cur):
            members_b = {i for i in range(cur.size) if cur[i] == b}
            union = members_a | members_b
            if union:
                iou[a, b] = len(members_a & members_b) / len(union)
    return iou


def brute_normalize(iou, normalize):
    """Eq. 2 by loops; rows (columns) with no overlap stay zero."""
    out = np.zeros_like(iou)
    if normalize == "none":
        return iou.copy()
    if normalize == "col":
        return brute_normalize(iou.T, "row").T
    for a in range(iou.shape[0]):
        if iou[a].sum() == 0:
            continue
        if normalize == "row":
            out[a] = iou[a] / iou[a].sum()
        else:  # softmax
            out[a] = np.exp(iou[a]) / np.exp(iou[a]).sum()
    return out


def brute_soft_labels(prev, cur, alpha, normalize, project_outliers=True):
    """Eq. 3-4 sample by sample; without ``project_outliers``, today's outliers get no label."""
    projection = brute_normalize(brute_iou(prev, cur), normalize)
    soft = np.zeros((prev.size, projection.shape[1]))
    for i in range(prev.size):
        if cur[i] < 0 and not project_outliers:
            continue
        if cur[i] >= 0:
            soft[i, cur[i]] += alpha
        if prev[i] >= 0:
            soft[i] += (1 - alpha) * projection[prev[i]]
    return soft


def _random_labels(rng, n, n_clusters, outlier_rate):
    labels = rng.integers(0, n_clusters, n)
    labels[rng.random(n) < outlier_rate] = -1
    return labels


def labelings():
    """(name, prev, cur) covering the edge cases of Eq. 1-4."""
    rng = np.random.default_rng(0)
    cases = []
    for seed in range(6):
        n = int(rng.integers(20, 80))
        cases.append((f"random{seed}", _random_labels(rng, n, int(rng.integers(2, 9)), 0.2),
                      _random_labels(rng, n, int(rng.integers(2, 9)), 0.2)))
    n = 40
    prev = _random_labels(rng, n, 5, 0.1)
    cur = prev.copy()
    cur[prev == 2] = -1  # previous cluster 2: every member became an outlier
    cases.append(("prev_cluster_all_outliers", prev, cur))
    cases.append(("single_cluster", np.zeros(n, dtype=np.int64), _random_labels(rng, n, 1, 0.3)))
    cases.append(("all_outliers_now", prev, np.full(n, -1)))
    cases.append(("all_outliers_before", np.full(n, -1), cur))
    disjoint_prev = np.where(np.arange(n) < n // 2, np.arange(n) % 3, -1)
    disjoint_cur = np.where(np.arange(n) >= n // 2, np.arange(n) % 4, -1)
    cases.append(("empty_intersections", disjoint_prev, disjoint_cur))
    gaps = prev.copy()
    gaps[gaps == 1] = 7  # cluster ids 1 and 5-6 carry no sample: zero rows in Pn
    cases.append(("unused_ids_and_kp_ne_kc", gaps, _random_labels(rng, n, 3, 0.1)))
    return cases


CASES = labelings()


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize("name,prev,cur", CASES, ids=[c[0] for c in CASES])
def test_iou_projection_matches_eq_1_2(name, prev, cur, normalize):
    expected = brute_normalize(brute_iou(prev, cur), normalize)
    projection = iou_projection(prev, cur, normalize=normalize)
    assert projection.shape == (prev.max(initial=-1) + 1, cur.max(initial=-1) + 1)
    np.testing.assert_allclose(projection, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("name,prev,cur", CASES, ids=[c[0] for c in CASES])
def test_row_normalisation_gives_distributions(name, prev, cur):
    projection = iou_projection(prev, cur, normalize="row")
    sums = projection.sum(axis=1)
    assert np.all(np.isclose(sums, 1.0) | (sums == 0))


@pytest.mark.parametrize("project_outliers", [True, False])
@pytest.mark.parametrize("normalize", NORMALIZATIONS)
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 0.9, 1.0])
@pytest.mark.parametrize("name,prev,cur", CASES, ids=[c[0] for c in CASES])
def test_refined_soft_labels_match_eq_3_4(name, prev, cur, alpha, normalize, project_outliers):
    soft = refine_soft_labels(prev, cur, alpha=alpha, normalize=normalize, project_outliers=project_outliers)
    expected = brute_soft_labels(prev, cur, alpha, normalize, project_outliers)
    np.testing.assert_allclose(soft.toarray(), expected, rtol=1e-12, atol=1e-12)
    assert soft.shape[0] == prev.size
    assert np.all(soft.data != 0), "no stored zeros: hardening tells empty rows by their nnz"


def test_outliers_now_carry_their_projected_previous_label_only_in_the_papers_mode():
    prev = np.array([0, 0, 0, 1, 1, -1, 1])
    cur = np.array([0, 0, -1, 1, -1, -1, -1])
    paper = refine_soft_labels(prev, cur, alpha=0.5).toarray()
    dropped = refine_soft_labels(prev, cur, alpha=0.5, project_outliers=False).toarray()
    # sample 2: outlier now, previous cluster 0 maps onto current cluster 0 only
    np.testing.assert_allclose(paper[2], [0.5, 0.0])
    np.testing.assert_allclose(paper[4], paper[6])  # both from previous cluster 1
    assert paper[4].sum() == pytest.approx(0.5) and paper[5].sum() == 0  # -1 in both epochs: zero
    assert not dropped[[2, 4, 5, 6]].any()
    np.testing.assert_allclose(paper[cur >= 0], dropped[cur >= 0])


def test_mismatched_lengths_and_bad_labels_are_rejected():
    with pytest.raises(ValueError):
        refine_soft_labels(np.zeros(3, dtype=int), np.zeros(4, dtype=int))
    with pytest.raises(ValueError):
        iou_projection(np.array([0, -2]), np.array([0, 0]))
    with pytest.raises(ValueError):
        iou_projection(np.array([0, 1]), np.array([0, 0]), normalize="l2")


def test_relabel_contiguous_keeps_noise_and_order():
    labels = np.array([5, -1, 2, 5, 9, -1, 2])
    np.testing.assert_array_equal(relabel_contiguous(labels), [1, -1, 0, 1, 2, -1, 0])
    np.testing.assert_array_equal(relabel_contiguous(np.full(3, -1)), [-1, -1, -1])
