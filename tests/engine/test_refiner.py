"""SLRRefiner across epochs: passthrough, projection, state round trip, options."""
import json

import numpy as np
import pytest

from slr_refine import SLRRefiner, harden, iou_projection, relabel_contiguous
from test_projection import brute_soft_labels


def epoch_labels(n_epochs=3, n=600, n_ids=40, seed=0):
    """Cluster labels of the same samples over epochs: identities, label noise, outliers."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, n_ids, n)
    epochs = []
    for _ in range(n_epochs):
        labels = truth.copy()
        flipped = rng.random(n) < 0.1
        labels[flipped] = rng.integers(0, n_ids, flipped.sum())
        labels = rng.permutation(n_ids)[labels]  # cluster ids are arbitrary each epoch
        labels[rng.random(n) < 0.08] = -1
        epochs.append(labels)
    return epochs


def test_first_epoch_passes_through():
    cur = epoch_labels(1)[0]
    cur[cur == 3] = 99  # a gap in the ids
    result = SLRRefiner().step(cur)
    np.testing.assert_array_equal(result.hard_labels, relabel_contiguous(cur))
    assert result.soft_labels is None
    assert result.stats["refined"] == 0.0 and np.isnan(result.stats["agreement_with_previous"])
    assert result.stats["clusters_before"] == result.stats["clusters_after"] == len(np.unique(cur[cur >= 0]))


@pytest.mark.parametrize("alpha,normalize", [(0.5, "row"), (0.7, "col"), (0.3, "softmax")])
def test_second_epoch_refines_with_the_projection(alpha, normalize):
    first, second = epoch_labels(2)
    refiner = SLRRefiner(alpha=alpha, normalize=normalize, min_cluster_size=5)
    refiner.step(first)
    result = refiner.step(second)
    expected_soft = brute_soft_labels(first, second, alpha, normalize)
    np.testing.assert_allclose(result.soft_labels.toarray(), expected_soft, rtol=1e-12, atol=1e-12)
    # (hardening the brute-force rows could break equal-distance ties differently: compare on ours)
    np.testing.assert_array_equal(result.hard_labels, harden(result.soft_labels, min_cluster_size=5))
    stats = result.stats
    assert stats["refined"] == 1.0
    assert stats["outliers_before"] == int((second < 0).sum())
    assert stats["outliers_after"] == int((result.hard_labels < 0).sum())
    assert stats["revived"] == int(((second < 0) & (result.hard_labels >= 0)).sum())
    assert stats["kept_fraction"] == pytest.approx(1 - stats["outliers_after"] / second.size)
    assert 0.5 < stats["agreement_with_previous"] <= 1.0


def _round_trip(state):
    """Through JSON: the state is plain lists and numbers (checkpoints load it with weights_only)."""
    return json.loads(json.dumps(state))


def test_state_dict_round_trip_makes_the_next_step_identical():
    first, second, third = epoch_labels(3)
    original = SLRRefiner(alpha=0.6)
    original.step(first)
    original.step(second)
    restored = SLRRefiner(alpha=0.6)
    restored.load_state_dict(_round_trip(original.state_dict()))
    assert restored.steps == 2
    expected, got = original.step(third), restored.step(third)
    np.testing.assert_array_equal(got.hard_labels, expected.hard_labels)
    assert (got.soft_labels != expected.soft_labels).nnz == 0
    fresh = SLRRefiner(alpha=0.6)
    fresh.load_state_dict(_round_trip(SLRRefiner().state_dict()))
    assert fresh.step(third).soft_labels is None, "an empty state means a first epoch"


@pytest.mark.parametrize("prev_source", ["cluster", "refined"])
def test_prev_source_decides_what_the_next_epoch_projects(prev_source):
    first, second, third = epoch_labels(3)
    refiner = SLRRefiner(prev_source=prev_source)
    refiner.step(first)
    hard_second = refiner.step(second).hard_labels
    previous = relabel_contiguous(second) if prev_source == "cluster" else hard_second
    assert not np.array_equal(relabel_contiguous(second), hard_second), "the two options must differ here"
    result = refiner.step(third)
    np.testing.assert_allclose(result.soft_labels.toarray(), brute_soft_labels(previous, relabel_contiguous(third), 0.5, "row"))


def test_disabled_is_the_baseline_passthrough():
    refiner = SLRRefiner(enabled=False)
    for labels in epoch_labels(3):
        result = refiner.step(labels)
        np.testing.assert_array_equal(result.hard_labels, relabel_contiguous(labels))
        assert result.soft_labels is None and result.stats["refined"] == 0.0


def test_method_none_trains_on_soft_labels_with_current_hard_labels():
    first, second = epoch_labels(2)
    refiner = SLRRefiner(harden_method="none")
    refiner.step(first)
    result = refiner.step(second)
    np.testing.assert_array_equal(result.hard_labels, second)
    np.testing.assert_allclose(result.soft_labels.toarray(), brute_soft_labels(first, second, 0.5, "row"))
    assert result.stats["seconds_harden"] == 0.0


@pytest.mark.parametrize("method", ["max", "dbscan"])
def test_other_hardening_methods_run_through_the_refiner(method):
    first, second = epoch_labels(2)
    refiner = SLRRefiner(harden_method=method, alpha=0.7, dbscan_eps=0.2, dbscan_min_samples=3)
    refiner.step(first)
    result = refiner.step(second)
    np.testing.assert_array_equal(result.hard_labels, harden(result.soft_labels, method=method, dbscan_eps=0.2,
                                                             dbscan_min_samples=3))


@pytest.mark.parametrize("alpha", [0.5, 0.8])
def test_max_hardening_differs_from_the_clustering_exactly_on_revived_outliers(alpha):
    """Table 3's "DBSCAN + MaxThresh": at α >= 0.5 the current cluster wins every argmax, so "max"
    changes exactly the outliers of this epoch whose previous cluster overlaps a current one."""
    first, second = (relabel_contiguous(labels) for labels in epoch_labels(2))
    refiner = SLRRefiner(harden_method="max", alpha=alpha)
    refiner.step(first)
    hard = refiner.step(second).hard_labels
    projection = iou_projection(first, second)
    revivable = (second < 0) & (first >= 0) & projection[np.maximum(first, 0)].any(axis=1)
    assert revivable.sum() > 10
    np.testing.assert_array_equal(hard != second, revivable)
    np.testing.assert_array_equal(hard[revivable], projection[first[revivable]].argmax(axis=1))

    ablation = SLRRefiner(harden_method="max", alpha=alpha, project_outliers=False)
    ablation.step(first)
    np.testing.assert_array_equal(ablation.step(second).hard_labels, second)


def test_bad_arguments_and_changed_sample_count_are_rejected():
    with pytest.raises(ValueError):
        SLRRefiner(harden_method="kmeans")
    with pytest.raises(ValueError):
        SLRRefiner(prev_source="teacher")
    refiner = SLRRefiner()
    refiner.step(np.zeros(10, dtype=int))
    with pytest.raises(ValueError):
        refiner.step(np.zeros(11, dtype=int))


def _small_clusters(n_clusters=60, size=5, seed=0):
    """Two epochs of clusters of ``size`` images, relabelled at random and with a little noise."""
    rng = np.random.default_rng(seed)
    truth = np.repeat(np.arange(n_clusters), size)
    epochs = []
    for _ in range(2):
        labels = rng.permutation(n_clusters)[truth]
        swap = rng.random(truth.size) < 0.05
        labels[swap] = rng.integers(0, n_clusters, swap.sum())
        epochs.append(labels)
    return epochs


def test_data_relative_min_cluster_size_follows_the_median_cluster():
    """Clusters of ~5 images: the paper's min size 7 drops most of them (and says how many in
    "dropped"), 0.4 x the median cluster (size 2) keeps them."""
    first, second = _small_clusters()
    fixed, relative = SLRRefiner(min_cluster_size=7), SLRRefiner(min_cluster_size_fraction=0.4)
    for refiner in (fixed, relative):
        refiner.step(first)
    fixed_stats, relative_stats = fixed.step(second).stats, relative.step(second).stats
    assert fixed_stats["min_cluster_size"] == 7 and relative_stats["min_cluster_size"] == 2
    clustered = second.size - fixed_stats["outliers_before"]
    assert fixed_stats["dropped"] > clustered / 2
    assert relative_stats["dropped"] < clustered / 10
    assert relative_stats["clusters_after"] > 2 * fixed_stats["clusters_after"]
    with pytest.raises(ValueError, match="min_cluster_size_fraction"):
        SLRRefiner(min_cluster_size_fraction=-0.1)
