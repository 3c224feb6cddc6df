"""Two-process DDP (gloo on CPU) through the plugin's ``main`` and fast-reid's ``launch``, as
tools/train_net.py runs them: every rank trains on the same pseudo-labels, builds the same loader
and classifiers, holds the same refiner state and the same weights, keeps its own shard of the
decoded images, and the evaluation has a single-process run's form.

The run is this file run as a script: ``fastreid_slr.run.launch_main`` with the trainer that
records, per rank, what it trained on (``fastreid_slr.gpu_check.ranks``, which `make gpu-check`'s
ddp part runs too).
"""
import json
import os
import subprocess
import sys

import pytest
import torch

import fastreid_slr  # noqa: F401  (compat patches first)
from fastreid_slr.gpu_check.ranks import launch_recorded
from tiny import PROCEDURAL, REPO, TINY_SLR, as_opts

CONFIG = os.path.join(REPO, "configs", "Demo", "slr-procedural.yml")


def _opts(source_weights, output_dir):
    """The tiny run, 8 images per rank (a global batch of 16 needs >= 4 clusters)."""
    return {**TINY_SLR, "SOLVER.IMS_PER_BATCH": 16, "SOLVER.MAX_EPOCH": 2, "TEST.EVAL_PERIOD": 2,
            "SLR.SOURCE.WEIGHTS": source_weights, "OUTPUT_DIR": str(output_dir)}


def _single_process_evaluation(opts, weights):
    """What ``tools/train_net.py --eval-only`` reports for ``weights``, in this process."""
    from fastreid_slr.engine import PluginTrainer, SLRCheckpointer
    from fastreid_slr.utils import numeric_results
    from tiny import train_net_cfg

    cfg = train_net_cfg(CONFIG, *as_opts(opts))
    PROCEDURAL.apply(cfg)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    model = PluginTrainer.build_model(cfg)
    SLRCheckpointer(model).load(weights)
    return numeric_results(PluginTrainer.test(cfg, model))


def test_two_gloo_ranks_agree_on_labels_classifiers_and_refiner(source_weights, tmp_path):
    output_dir = tmp_path / "run"
    opts = _opts(source_weights, output_dir)
    command = [sys.executable, os.path.abspath(__file__), "--config-file", CONFIG, "--num-gpus", "2",
               "--dist-url", "auto", *as_opts(opts)]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1",  # tiny.py, for the script run
               PYTHONPATH=os.pathsep.join([os.path.join(REPO, "tests"), os.environ.get("PYTHONPATH", "")]))
    with open(tmp_path / "ddp.log", "w") as log:
        rc = subprocess.run(command, env=env, stdout=log, stderr=subprocess.STDOUT, timeout=600).returncode
    text = (tmp_path / "ddp.log").read_text()
    assert rc == 0, text[-4000:]
    assert "Stage 1: reusing source-pretrained weights" in text  # no pretraining in the DDP run

    ranks = [json.loads((output_dir / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2] and [r["backend"] for r in ranks] == ["gloo", "gloo"]
    zero, one = ranks
    assert len(zero["epochs"]) == len(one["epochs"]) == 2  # two clustering rounds
    for e0, e1 in zip(zero["epochs"], one["epochs"]):
        assert e0["labels"] == e1["labels"]
        assert e0["num_classes"] == e1["num_classes"] == max(e0["labels"]) + 1
        assert e0["train_set"] == e1["train_set"]  # the same pseudo-labelled training set
    assert zero["labels"] == one["labels"] == zero["epochs"][-1]["labels"]
    assert zero["num_classes"] == one["num_classes"]
    assert zero["refiner"] == one["refiner"] and zero["refiner"]["steps"] == 2
    assert zero["parameters"] == one["parameters"]  # DDP kept student and teacher weights in sync
    assert zero["buffers"] == one["buffers"]  # every rank took rank 0's BN statistics at epoch end
    # Each rank decoded and kept its own shard of each set, which together are the whole set once.
    assert set(zero["cached"]) == set(one["cached"]) >= {"target", "source"}
    target = zero["target_images"]
    assert zero["cached"]["target"] == [0, one["cached"]["target"][0], one["cached"]["target"][0]]
    assert one["cached"]["target"][1] == target and 0 < one["cached"]["target"][0] < target

    # Only rank 0 wrote; its checkpoint holds the labels every rank trained on.
    checkpoint = torch.load(output_dir / "model_final.pth", map_location="cpu", weights_only=True)
    assert checkpoint["pseudo_labels"]["labels"] == zero["labels"]
    assert checkpoint["pseudo_labels"]["labeler"] == zero["refiner"]

    # The evaluation (rank 0, over both ranks' shards) is a single-process one: the same weights
    # give each image the same features whichever rank's batch holds it (only the float summation
    # order of differently sized batches differs), so the figures agree to rounding.
    ddp_results = json.loads((output_dir / "final_results.json").read_text())
    single = _single_process_evaluation(opts, str(output_dir / "model_final.pth"))
    assert {"mAP", "Rank-1", "Rank-5", "Rank-10", "mINP", "metric"} <= set(ddp_results)
    assert set(ddp_results) == set(single)
    for key, value in single.items():
        assert ddp_results[key] == pytest.approx(value, abs=0.01), key


if __name__ == "__main__":  # the run the test starts
    launch_recorded(sys.argv[1:], (PROCEDURAL,))
