"""The shipped configs load, and the README's CPU-shrinking opts stay true for every one of them."""
import glob
import os
import re
import shlex

import pytest
from fastreid.config import get_cfg

from fastreid_slr import add_slr_config
from fastreid_slr.engine import PseudoLabeler
from tiny import REPO

PAPER_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "SLR", "*.yml")))


def _readme_shrink_opts():
    readme = open(os.path.join(REPO, "README.md")).read()
    block = re.search(r"### Shrinking any config.*?```\n(.*?)```", readme, re.S).group(1)
    return shlex.split(block)


def _load(path, opts=()):
    cfg = add_slr_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    return cfg


def test_eight_paper_configs():
    names = {os.path.basename(p)[:-4] for p in PAPER_CONFIGS}
    assert names == {f"{task}{ibn}" for task in ("d2m", "m2d", "m2px", "px2m") for ibn in ("", "_ibn")}


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=os.path.basename)
def test_paper_config_settings(path):
    cfg = _load(path)
    assert cfg.MODEL.META_ARCHITECTURE == "SLR" and cfg.MODEL.BACKBONE.DEPTH == "50x"
    assert cfg.MODEL.BACKBONE.WITH_IBN == path.endswith("_ibn.yml")
    assert cfg.SOLVER.MAX_EPOCH == 50 and cfg.SOLVER.IMS_PER_BATCH == 16
    assert cfg.SLR.REFINE.HARDEN == "hdbscan" and cfg.SLR.REFINE.MIN_CLUSTER_SIZE == 7
    assert cfg.DATASETS.NAMES == cfg.DATASETS.TESTS and cfg.SLR.SOURCE.DATASETS != cfg.DATASETS.NAMES
    # ABMT's recipe, which the paper's baseline numbers come from
    assert (cfg.SLR.CLUSTER.K1, cfg.SLR.CLUSTER.K2, cfg.SLR.CLUSTER.RHO, cfg.SLR.CLUSTER.SOURCE_WEIGHT) == (20, 6, 0.002, 0.1)
    assert cfg.DATALOADER.SAMPLER_TRAIN == "CrossCameraIdentitySampler" and cfg.SLR.REFINE.PROJECT_OUTLIERS
    assert (cfg.SLR.SOURCE.STEPS, cfg.SLR.SOURCE.WARMUP_EPOCHS, cfg.SLR.SOURCE.WARMUP_FACTOR) == ([40, 70], 10, 0.01)
    PseudoLabeler.from_config(cfg)  # valid method names and ranges


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=os.path.basename)
def test_readme_shrink_opts_give_a_cpu_model(path):
    """The README's list turns every paper config into a model that runs on the CPU without
    ImageNet files."""
    import torch
    from fastreid.modeling import build_model

    opts = _readme_shrink_opts()
    assert len(opts) % 2 == 0 and len(opts) >= 20
    cfg = _load(path, opts)  # an unknown key in the list raises here
    model = build_model(cfg).eval()
    with torch.no_grad():
        features = model({"images": torch.rand(2, 3, *cfg.INPUT.SIZE_TEST) * 255})
    assert features.device.type == "cpu" and features.shape[0] == 2 and torch.isfinite(features).all()


def _draws_after_setup(tmp_path, seed):
    """tools/train_net.py's ``setup`` with ``SEED``, then one draw from each generator."""
    import importlib.util
    import random

    import numpy as np
    import torch
    from fastreid_slr.data.procedural import get_default_spec, set_default_spec

    spec = importlib.util.spec_from_file_location("train_net_for_seed", os.path.join(REPO, "tools", "train_net.py"))
    train_net = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train_net)
    args = train_net.argument_parser().parse_args(
        ["--config-file", os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"),
         "SEED", str(seed), "OUTPUT_DIR", str(tmp_path)])
    threads, spec = torch.get_num_threads(), get_default_spec()
    try:
        train_net.setup(args)
    finally:  # setup also picks the CPU threads and the procedural spec: keep the session's
        torch.set_num_threads(threads)
        set_default_spec(spec)
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_makes_runs_repeat(tmp_path):
    assert _draws_after_setup(tmp_path, 3) == _draws_after_setup(tmp_path, 3)
    assert _draws_after_setup(tmp_path, 3) != _draws_after_setup(tmp_path, 4)
    assert _draws_after_setup(tmp_path, -1) != _draws_after_setup(tmp_path, -1)  # fast-reid's default
