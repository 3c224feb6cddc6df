"""PseudoLabeler's telemetry: it says loudly when hardening throws away most of the clustered images."""
import logging

import numpy as np
import pytest

from fastreid_slr.engine import PseudoLabeler
from slr_refine import SLRRefiner


def _blobs(identities=60, images=4, dim=16, seed=0):
    """Two epochs' features of people with 4 images each (clusters smaller than the paper's 7)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(identities, dim))
    return [(centres.repeat(images, 0) + 0.15 * rng.normal(size=(identities * images, dim))).astype(np.float32)
            for _ in range(2)]


class _Warnings(logging.Handler):
    """The module logger's warnings, whether or not a logger above it propagates (train_net's set-up
    stops propagation)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _warnings_of_two_epochs(refiner):
    labeler = PseudoLabeler(refiner=refiner, k1=4, k2=2, rho=0.0, eps=0.6, source_weight=0.0)
    logger, warnings = logging.getLogger("fastreid_slr.engine.pseudo_labels"), _Warnings()
    logger.addHandler(warnings)
    try:
        results = [labeler(features) for features in _blobs()]
    finally:
        logger.removeHandler(warnings)
    return results, warnings.messages


def test_hardening_that_drops_most_clustered_images_is_logged_with_the_fix():
    results, warnings = _warnings_of_two_epochs(SLRRefiner(min_cluster_size=7))
    stats = results[1].stats
    assert stats["clusters_before"] > 40 and stats["dropped"] > (240 - stats["outliers_before"]) / 2
    assert len(warnings) == 1 and "SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION" in warnings[0], warnings


def test_a_min_size_that_fits_the_clusters_is_quiet():
    results, warnings = _warnings_of_two_epochs(SLRRefiner(min_cluster_size_fraction=0.4))
    assert results[1].stats["min_cluster_size"] == 2 and not warnings


@pytest.mark.parametrize("key,value,message", [
    ("SLR.REFINE.ALPHA", 1.5, "SLR.REFINE.ALPHA must lie in \\[0, 1\\] \\(Eq. 4\\), got 1.5"),
    ("SLR.REFINE.HARDEN", "kmeans", "SLR.REFINE.HARDEN must be one of .*got 'kmeans'"),
    ("SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION", -0.5, "SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION must be >= 0"),
    ("SLR.CLUSTER.JACCARD", "spcl", "SLR.CLUSTER.JACCARD must be one of .*got 'spcl'"),
])
def test_a_bad_setting_fails_at_start_up_naming_its_key(tmp_path, key, value, message):
    """The refiner validates its arguments once; the labeler's config reader names the key."""
    from fastreid_slr.engine import check_adaptation_config
    from tiny import tiny_slr_cfg

    cfg = tiny_slr_cfg(tmp_path / "run", tmp_path / "source", **{key: value})
    with pytest.raises(ValueError, match=message):
        check_adaptation_config(cfg)


def test_hdbscan_module_d_refuses_a_source_term():
    """HDBSCAN's spanning tree needs every absent pair at one distance: no source term with it."""
    with pytest.raises(ValueError, match="SOURCE_WEIGHT"):
        PseudoLabeler(refiner=SLRRefiner(), method="hdbscan", source_weight=0.1)
