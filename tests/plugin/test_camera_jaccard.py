"""CA-Jaccard in the plugin (SLR.CLUSTER.CAMERA_JACCARD): its keys checked at start-up, off in the
paper's and the demo's configs, and a tiny SLR run that clusters with it (and camera BN) and trains."""
import glob
import os

import numpy as np
import pytest

from fastreid_slr.engine import SLRTrainer, check_adaptation_config, ensure_source_weights
from fastreid_slr.engine import pseudo_labels
from fastreid_slr.engine.camera_bn import camera_indices
from tiny import REPO, tiny_slr_cfg, train_net_cfg

CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "SLR", "*.yml"))) + [
    os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")]


@pytest.mark.parametrize("path", CONFIGS, ids=os.path.basename)
def test_the_paper_and_demo_recipes_stay_camera_blind(path):
    assert train_net_cfg(path).SLR.CLUSTER.CAMERA_JACCARD is False


@pytest.mark.parametrize("key,value,message", [
    ("SLR.CLUSTER.CA_K1_INTRA", -1, "SLR.CLUSTER.CA_K1_INTRA must be an integer >= 0, got -1"),
    ("SLR.CLUSTER.CA_K2_INTRA", 0, "SLR.CLUSTER.CA_K2_INTRA must be an integer >= 1 .*got 0"),
])
def test_a_bad_size_fails_at_start_up_naming_its_key_even_while_off(tmp_path, key, value, message):
    cfg = tiny_slr_cfg(tmp_path / "run", tmp_path / "source", **{key: value})
    with pytest.raises(ValueError, match=message):
        check_adaptation_config(cfg)


def test_a_tiny_run_clusters_with_ca_jaccard_and_camera_bn_and_trains(source_weights, tmp_path, monkeypatch):
    cfg = tiny_slr_cfg(tmp_path, os.path.dirname(source_weights), **{
        "SLR.CLUSTER.CAMERA_JACCARD": True, "SLR.CLUSTER.CAMERA_AWARE": "bn", "SOLVER.MAX_EPOCH": 2,
        "SLR.CLUSTER.CA_K1_INTER": 10})
    calls = []
    clustering_distance = pseudo_labels.clustering_distance

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return clustering_distance(*args, **kwargs)

    monkeypatch.setattr(pseudo_labels, "clustering_distance", spy)
    cfg.MODEL.WEIGHTS = ensure_source_weights(cfg)
    trainer = SLRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()

    cameras = camera_indices(trainer.target_items)
    assert len(calls) == 2 and len(np.unique(cameras)) > 1
    for kwargs in calls:  # every clustering on the target's cameras, at the configured sizes
        np.testing.assert_array_equal(kwargs["cameras"], cameras)
        assert kwargs["camera_jaccard"].k1_inter == 10
    labels = trainer.pseudo_label_hook.labels
    assert trainer.model.num_classes == labels.max() + 1 >= 2
