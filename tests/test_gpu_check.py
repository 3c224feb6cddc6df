"""`make gpu-check` (tools/gpu_check.py): its tiny CPU mode runs in CI and says that nothing was
measured on a GPU; its full mode is configs/SLR/d2m.yml's model; SEED turns on cuDNN's
deterministic kernels."""
import importlib.util
import json
import os
import subprocess
import sys

import pytest
import torch

from tiny import REPO

TOOLS = os.path.join(REPO, "tools")


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


def _load_tool(name, monkeypatch):
    spec = importlib.util.spec_from_file_location(f"{name}_under_test", os.path.join(TOOLS, f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_full_mode_is_the_paper_model_with_short_epochs(tmp_path, monkeypatch):
    gpu_check = _load_tool("gpu_check", monkeypatch)
    cfg = gpu_check.build_cfg(gpu_check.check_opts(full=True, output=str(tmp_path)))
    model = cfg.MODEL
    assert (model.META_ARCHITECTURE, model.BACKBONE.NAME, model.BACKBONE.DEPTH) == ("SLR", "build_dual_resnet_backbone", "50x")
    assert model.DEVICE == "cuda" and model.BACKBONE.PRETRAIN is False
    assert list(cfg.INPUT.SIZE_TRAIN) == [256, 128] and cfg.SOLVER.IMS_PER_BATCH == 16
    assert cfg.SOLVER.AMP.ENABLED is False  # AMP is its own part
    assert cfg.DATASETS.NAMES == ("ProceduralB",) and cfg.SLR.SOURCE.DATASETS == ("ProceduralA",)
    assert gpu_check.FULL_STEPS["step_time"][1] >= 50


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
