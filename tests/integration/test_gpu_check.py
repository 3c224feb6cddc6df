"""`make gpu-check` (tools/gpu_check.py, fastreid_slr.gpu_check): its tiny CPU mode runs in CI and
says that nothing was measured on a GPU; its full mode is configs/SLR/d2m.yml's model, its epoch
part d2m at Market scale; SEED turns on cuDNN's deterministic kernels."""
import json
import os
import subprocess
import sys

import pytest
import torch

from fastreid_slr.engine.records import EPOCH_PARTS
from fastreid_slr.gpu_check.context import MARKET_TRAIN_IMAGES, Context
from fastreid_slr.gpu_check.epoch import epoch_config, stage2_estimate
from procedural_reid import ProceduralSpec, plan
from tiny import PROCEDURAL, REPO, TINY_CONFIG, TINY_SLR

TOOLS = os.path.join(REPO, "tools")
D2M = os.path.join(REPO, "configs", "SLR", "d2m.yml")


def _run(tmp_path, *flags):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    done = subprocess.run([sys.executable, os.path.join(TOOLS, "gpu_check.py"), "--output", str(tmp_path), *flags],
                          env=env, capture_output=True, text=True, timeout=1200)
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    return done, report


def test_tiny_cpu_mode_runs_every_part_and_says_nothing_was_measured_on_a_gpu(tmp_path):
    done, report = _run(tmp_path, "--mode", "tiny", "--ddp", "off")
    errors = {name: part["error"] for name, part in report["parts"].items() if part.get("ok") is False}
    assert done.returncode == 0, f"{errors}\n{done.stdout[-3000:]}{done.stderr[-3000:]}"
    machine, parts = report["machine"], report["parts"]
    assert machine["mode"] == "tiny" and machine["gpu_measured"] is False
    assert "Nothing in this report was measured on a GPU" in machine["note"]
    assert machine["note"] in done.stdout and "| pipeline" in done.stdout  # the table and the warning
    assert machine["faiss"].startswith("FaissBuild(distribution='faiss-")
    assert "build_dual_resnet_backbone 18x" in machine["model"]
    assert report["failed"] == [] and all(p["ok"] for p in parts.values() if p.get("ran", True))

    pipeline = parts["pipeline"]
    assert pipeline["stage2_epochs"] == 2 and all(k >= 2 for k in pipeline["clusters_per_epoch"])
    assert 0 <= pipeline["target_mAP"] <= 100
    step = parts["step_time"]
    assert step["slr_s_per_iter"] > 0 and step["baseline_s_per_iter"] > 0 and step["slr_seeded_s_per_iter"] > 0
    assert parts["features"]["images"] > 0 and parts["features"]["dim"] > 0
    labels = parts["pseudo_labels"]
    assert labels["labels_identical"] is True and labels["backends"] == ["blas", "torch", "faiss"]
    assert all(labels[name]["search_s"] > 0 and labels[name]["clusters"] >= 2 for name in labels["backends"])
    assert parts["amp"]["losses_finite"] is True and parts["amp"]["iterations"] == 1
    assert parts["repeatable"]["identical"] is True  # seeded CPU steps repeat bit for bit
    epoch = parts["epoch"]
    assert set(EPOCH_PARTS) <= set(epoch["steady_seconds"]) and set(EPOCH_PARTS) <= set(epoch["first_epoch_seconds"])
    assert all(0 <= share <= 1 for share in epoch["shares"].values()) and 0 < epoch["pseudo_labels_share"] < 1
    assert epoch["pseudo_labels_s"] > 0 and epoch["decode_s"] > 0 and epoch["feature_rate_of_model"] > 0
    assert epoch["stage2_estimate"]["seconds"] > 0 and epoch["stage2_estimate"]["evaluations"] == 10
    assert "mean nothing" in epoch["note"] and "| epoch" in done.stdout
    assert parts["ddp"] == {"ran": False, "reason": "not run: --ddp off"}
    assert report["peak_gpu_memory_gb"] is None
    assert not list(tmp_path.rglob("*.pth"))  # GBs of checkpoints in full mode: removed unless --keep


@pytest.mark.slow
def test_tiny_cpu_mode_two_gloo_ranks_through_num_gpus_end_with_the_same_labels(tmp_path):
    done, report = _run(tmp_path, "--mode", "tiny", "--ddp", "on")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    ddp = report["parts"]["ddp"]
    assert ddp["ran"] and ddp["labels_identical"] is True and ddp["epochs"] == 2
    assert ddp["backends"] == ["gloo", "gloo"]  # a CPU config gets gloo, whatever the host has


@pytest.mark.gpu
def test_full_mode_on_cuda(tmp_path):
    done, report = _run(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert report["machine"]["gpu_measured"] is True and report["failed"] == []
    assert report["parts"]["pseudo_labels"]["backends"][:2] == ["blas", "torch"]
    assert report["peak_gpu_memory_gb"] > 0


def _context(tmp_path, full):
    return Context(full, str(tmp_path), D2M, TINY_CONFIG, (PROCEDURAL,))


def test_full_mode_is_the_paper_model_with_short_epochs(tmp_path):
    context = _context(tmp_path, full=True)
    cfg, model = context.cfg, context.cfg.MODEL
    assert (model.META_ARCHITECTURE, model.BACKBONE.NAME, model.BACKBONE.DEPTH) == (
        "SLR", "build_dual_resnet_backbone", "50x")
    assert model.DEVICE == "cuda" and model.BACKBONE.PRETRAIN is False
    assert list(cfg.INPUT.SIZE_TRAIN) == [256, 128] and cfg.SOLVER.IMS_PER_BATCH == 16
    assert cfg.SOLVER.AMP.ENABLED is False  # AMP is its own part
    assert cfg.DATASETS.NAMES == ("ProceduralB",) and cfg.SLR.SOURCE.DATASETS == ("ProceduralA",)
    assert context.steps["step_time"][1] >= 50


def test_the_epoch_part_is_d2m_as_the_paper_trains_it_at_market_scale(tmp_path):
    context = _context(tmp_path, full=True)
    context.source_weights = "stage1.pth"
    cfg = epoch_config(context)
    assert (cfg.MODEL.BACKBONE.DEPTH, list(cfg.INPUT.SIZE_TRAIN), cfg.SOLVER.IMS_PER_BATCH) == ("50x", [256, 128], 16)
    assert cfg.SLR.ITERS_PER_EPOCH == 400 and cfg.MODEL.WEIGHTS == "stage1.pth"
    cluster = cfg.SLR.CLUSTER
    assert (cluster.JACCARD, cluster.K1, cluster.K2, cluster.RHO, cluster.SOURCE_WEIGHT) == ("abmt", 20, 6, 0.002, 0.1)
    assert (cfg.SOLVER.MAX_EPOCH, cfg.TEST.EVAL_PERIOD) == (2, 1)
    spec = ProceduralSpec.from_config(cfg)
    assert spec.image_size == (128, 64)  # Market's images, resized to 256x128 as Market's are
    train = [shot for shot in plan(spec, "B") if shot.split == "bounding_box_train"]
    assert abs(len(train) - MARKET_TRAIN_IMAGES) < 0.02 * MARKET_TRAIN_IMAGES


def test_tiny_mode_is_the_tests_tiny_run_with_a_resnet18(tmp_path):
    """configs/Demo/tiny.yml on d2m.yml; the check's own are its model and its (fewer) epochs."""
    cfg = _context(tmp_path, full=False).cfg
    expected = dict(TINY_SLR, **{"SLR.SOURCE.MAX_EPOCH": 3, "SOLVER.MAX_EPOCH": 2, "TEST.EVAL_PERIOD": 2})
    for key, value in expected.items():
        node = cfg
        for name in key.split("."):
            node = node[name]
        assert (list(node) if isinstance(node, tuple) else node) == value, key
    assert (cfg.MODEL.DEVICE, cfg.MODEL.BACKBONE.DEPTH) == ("cpu", "18x")


def test_the_stage2_estimate_decodes_once_and_evaluates_every_period():
    steady = {"features_source": 2.0, "evaluation": 3.0, "epoch": 20.0}
    estimate = stage2_estimate(steady, decode_s=10.0, source_images=8261, epochs=50, eval_period=5)
    # the source pass doubles (16,522 / 8,261): 20 - 3 + 2 = 19 s per epoch
    assert estimate["epoch_s"] == pytest.approx(19.0) and estimate["evaluations"] == 10
    assert estimate["seconds"] == pytest.approx(10 + 50 * 19 + 10 * 3)
    assert stage2_estimate(steady, 0.0, 8261, epochs=12, eval_period=5)["evaluations"] == 3  # and after the last


def test_seed_turns_on_deterministic_cudnn(monkeypatch):
    from fastreid.config import get_cfg
    from fastreid_slr import add_run_config, add_slr_config
    from fastreid_slr.run import seed

    cfg = add_run_config(add_slr_config(get_cfg()))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", True)
    monkeypatch.setattr(torch.backends.cudnn, "deterministic", False)
    seed(cfg)  # SEED -1: nothing changes
    assert torch.backends.cudnn.benchmark and not torch.backends.cudnn.deterministic
    cfg.SEED = 0
    seed(cfg)
    assert not torch.backends.cudnn.benchmark and torch.backends.cudnn.deterministic
