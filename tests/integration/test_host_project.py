"""A fast-reid project of its own (tests/integration/host_project: its config keys, backbone, dataset and
trainer script on fast-reid's launch) with fastreid_slr mixed in, each run in its own process:

(a) its Baseline trains and evaluates, to the same weights and figures as with only fastreid_slr's
    compat patches (tests/breaks_only.py): nothing else the plugin does reaches the project;
(b) its two-process launch (gloo on the CPU) reads its own keys in every rank;
(c) SLR trains with its backbone, named by MODEL.BACKBONE.NAME.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from tiny import REPO

PROJECT = os.path.join(REPO, "tests", "integration", "host_project")
CONFIG = os.path.join(PROJECT, "configs", "toys.yml")
BREAKS_ONLY = os.path.join(REPO, "tests", "breaks_only.py")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    """MyProjToys on disk: 8 train identities and 4 test ones, 2 cameras, 32x16 images whose colours
    follow the identity (upper and lower body) and the camera (brightness)."""
    root = tmp_path_factory.mktemp("datasets")
    rng = np.random.default_rng(0)
    splits = {"bounding_box_train": (range(1, 9), (1, 2), 2), "query": (range(9, 13), (1,), 1),
              "bounding_box_test": (range(9, 13), (2,), 3)}
    for split, (pids, cams, per_cam) in splits.items():
        os.makedirs(root / "myproj_toys" / split)
        for pid in pids:
            upper, lower = np.random.default_rng(pid).integers(0, 256, (2, 3))
            for cam in cams:
                for k in range(per_cam):
                    image = np.empty((32, 16, 3))
                    image[:16], image[16:] = upper, lower
                    image = image * (0.6 + 0.3 * cam) + rng.normal(0, 20, image.shape)
                    Image.fromarray(image.clip(0, 255).astype(np.uint8)).save(
                        root / "myproj_toys" / split / f"{pid:04d}_c{cam}_{k}.png")
    return root


def _run(command, datasets, log):
    """Run a command in a CPU-only environment; its log on failure."""
    env = dict(os.environ, FASTREID_DATASETS=str(datasets), CUDA_VISIBLE_DEVICES="", OMP_NUM_THREADS="1",
               PYTHONUNBUFFERED="1")
    with open(log, "w") as f:
        rc = subprocess.run([sys.executable, *command], env=env, stdout=f, stderr=subprocess.STDOUT,
                            timeout=600).returncode
    text = open(log).read()
    assert rc == 0, text[-5000:]
    return text


def _model(output_dir):
    return torch.load(os.path.join(output_dir, "model_final.pth"), map_location="cpu", weights_only=True)["model"]


def _results(output_dir):
    with open(os.path.join(output_dir, "myproj_results.json")) as f:
        return json.load(f)


def test_baseline_with_the_plugin_equals_baseline_with_its_compat_patches_only(datasets, tmp_path):
    train = [os.path.join(PROJECT, "train_net.py"), "--config-file", CONFIG]
    _run([*train, "OUTPUT_DIR", str(tmp_path / "plugin")], datasets, tmp_path / "plugin.log")
    _run([BREAKS_ONLY, *train, "OUTPUT_DIR", str(tmp_path / "breaks")], datasets, tmp_path / "breaks.log")

    plugin, breaks = _model(tmp_path / "plugin"), _model(tmp_path / "breaks")
    assert plugin.keys() == breaks.keys()
    different = [k for k in plugin if not torch.equal(plugin[k], breaks[k])]
    assert not different, f"the plugin changed the project's training: {different}"
    assert _results(tmp_path / "plugin") == _results(tmp_path / "breaks")

    # It trained (the second epoch moved the first's weights) and evaluated.
    first = torch.load(tmp_path / "plugin" / "model_0000.pth", map_location="cpu", weights_only=True)["model"]
    assert sum(not torch.equal(first[k], plugin[k]) for k in plugin) > 0.5 * len(plugin)
    results = _results(tmp_path / "plugin")
    assert results["world_size"] == 1 and {"mAP", "Rank-1"} <= set(results["results"])
    assert 0 < results["results"]["mAP"] <= 100


def test_two_process_launch_reads_the_projects_own_keys(datasets, tmp_path):
    text = _run([os.path.join(PROJECT, "train_net.py"), "--config-file", CONFIG, "--num-gpus", "2",
                 "--dist-url", "auto", "SOLVER.IMS_PER_BATCH", "16", "OUTPUT_DIR", str(tmp_path)],
                datasets, tmp_path / "ddp.log")
    assert _results(tmp_path)["world_size"] == 2, text[-3000:]
    model = _model(tmp_path)
    # MYPROJ.FOO 3 (the file's, not the default 1): three conv blocks
    assert {k.split(".")[1] for k in model if k.startswith("backbone.")} == {"0", "1", "2"}


def test_slr_trains_with_the_projects_backbone(datasets, tmp_path):
    source = tmp_path / "source"
    _run([os.path.join(PROJECT, "train_slr.py"), "--config-file", CONFIG,
          "MODEL.META_ARCHITECTURE", "SLR", "MODEL.HEADS.NUM_CLASSES", "1", "DATASETS.NAMES", '("MyProjToys",)',
          "SLR.SOURCE.DATASETS", '("MyProjToys",)', "SLR.SOURCE.OUTPUT_DIR", str(source),
          "SLR.SOURCE.MAX_EPOCH", "2", "SLR.SOURCE.STEPS", "[100]", "SLR.SOURCE.WARMUP_EPOCHS", "0",
          "SLR.SOURCE.IMS_PER_BATCH", "8", "SLR.ORACLE", "True", "SLR.ITERS_PER_EPOCH", "2",
          "SOLVER.MAX_EPOCH", "2", "OUTPUT_DIR", str(tmp_path / "adapt")], datasets, tmp_path / "slr.log")
    stage1, stage2 = _model(source), _model(tmp_path / "adapt")
    backbone = [k for k in stage2 if k.startswith("student.backbone.")]
    assert {k.split(".")[2] for k in backbone} == {"0", "1", "2"}  # MYPROJ.FOO 3 blocks: the project's
    moved = [k for k in backbone if stage2[k].is_floating_point() and not torch.equal(stage1[k], stage2[k])]
    assert len(moved) > 0.5 * len(backbone), f"stage 2 moved {len(moved)} of {len(backbone)} backbone tensors"
    assert {"mAP", "Rank-1"} <= set(_results(tmp_path / "adapt")["results"])
