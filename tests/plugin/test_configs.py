"""The shipped configs load, and the CPU-shrinking opts (configs/cpu-shrink.opts, shown in
docs/extending.md) stay true for every one of them."""
import glob
import os
import shlex

import pytest
from fastreid.config import get_cfg

from fastreid_slr import add_slr_config
from fastreid_slr.engine import PseudoLabeler
from tiny import REPO, train_net_cfg

PAPER_CONFIGS = sorted(glob.glob(os.path.join(REPO, "configs", "SLR", "*.yml")))


SHRINK_OPTS = os.path.join(REPO, "configs", "cpu-shrink.opts")


def _shrink_opts():
    with open(SHRINK_OPTS) as f:
        return shlex.split(f.read())


def test_the_docs_show_the_shrink_opts_as_they_are():
    """The first code block under the "Shrinking" heading of docs/extending.md is the opts file."""
    text = open(os.path.join(REPO, "docs", "extending.md")).read()
    heading = next(line for line in text.splitlines() if line.startswith("#") and "Shrinking" in line)
    after = text[text.index(heading):]
    block = after.split("```\n", 2)[1]
    assert block == open(SHRINK_OPTS).read()


def _load(path, opts=()):
    cfg = add_slr_config(get_cfg())
    cfg.merge_from_file(path)
    cfg.merge_from_list(list(opts))
    return cfg


def test_paper_configs_and_msmt17():
    """The paper's eight tasks, and Market / Duke -> MSMT17 on ABMT's settings."""
    names = {os.path.basename(p)[:-4] for p in PAPER_CONFIGS}
    tasks = ("d2m", "m2d", "m2px", "px2m", "m2msmt", "d2msmt")
    assert names == {f"{task}{ibn}" for task in tasks for ibn in ("", "_ibn")}


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=os.path.basename)
def test_paper_config_settings(path):
    cfg = _load(path)
    assert cfg.MODEL.META_ARCHITECTURE == "SLR" and cfg.MODEL.BACKBONE.DEPTH == "50x"
    assert cfg.MODEL.BACKBONE.WITH_IBN == path.endswith("_ibn.yml")
    assert cfg.SOLVER.MAX_EPOCH == 50 and cfg.SOLVER.IMS_PER_BATCH == 16
    assert cfg.SLR.REFINE.HARDEN == "hdbscan" and cfg.SLR.REFINE.MIN_CLUSTER_SIZE == 7
    # MSMT17: trained on train + val (MSMT17TrainVal), tested on fast-reid's MSMT17
    assert cfg.DATASETS.TESTS == {("MSMT17TrainVal",): ("MSMT17",)}.get(cfg.DATASETS.NAMES, cfg.DATASETS.NAMES)
    assert cfg.SLR.SOURCE.DATASETS != cfg.DATASETS.TESTS
    # ABMT's recipe, which the paper's baseline numbers come from
    assert (cfg.SLR.CLUSTER.K1, cfg.SLR.CLUSTER.K2, cfg.SLR.CLUSTER.RHO, cfg.SLR.CLUSTER.SOURCE_WEIGHT) == (20, 6, 0.002, 0.1)
    assert cfg.DATALOADER.SAMPLER_TRAIN == "CrossCameraIdentitySampler" and cfg.SLR.REFINE.PROJECT_OUTLIERS
    assert (cfg.SLR.SOURCE.STEPS, cfg.SLR.SOURCE.WARMUP_EPOCHS, cfg.SLR.SOURCE.WARMUP_FACTOR) == ([40, 70], 10, 0.01)
    assert cfg.SLR.ITERS_PER_EPOCH == 400
    # ABMT's Jaccard, stage-1 epochs of 200 steps, source evaluation every 40 epochs (model_best.pth)
    assert (cfg.SLR.CLUSTER.JACCARD, cfg.SLR.SOURCE.ITERS_PER_EPOCH, cfg.SLR.SOURCE.EVAL_PERIOD) == ("abmt", 200, 40)
    file_text = open(path).read() + open(os.path.join(REPO, "configs", "Base-SLR.yml")).read()
    assert "JACCARD: abmt" in file_text and "ITERS_PER_EPOCH: 200" in file_text  # named, not config defaults
    # stage 1 adapts BN to the target (SLR.PRETRAIN.TARGET_BN): one folder per task, as ABMT's per pair
    assert cfg.SLR.SOURCE.OUTPUT_DIR == "logs/SLR/source/" + os.path.basename(path)[:-4]
    PseudoLabeler.from_config(cfg)  # valid method names and ranges


@pytest.mark.parametrize("path", PAPER_CONFIGS, ids=os.path.basename)
def test_shrink_opts_give_a_cpu_model(path):
    """The shrink list turns every paper config into a model that runs on the CPU without
    ImageNet files."""
    import torch
    from fastreid.modeling import build_model

    opts = _shrink_opts()
    assert len(opts) % 2 == 0 and len(opts) >= 20
    cfg = _load(path, opts)  # an unknown key in the list raises here
    model = build_model(cfg).eval()
    with torch.no_grad():
        features = model({"images": torch.rand(2, 3, *cfg.INPUT.SIZE_TEST) * 255})
    assert features.device.type == "cpu" and features.shape[0] == 2 and torch.isfinite(features).all()


def _msmt17(root, folder, train, test, lists):
    """A few fake MSMT17 images in fast-reid's layout: <root>/<folder>/{<train>, <test>, list_*.txt}."""
    from PIL import Image

    for split, directory in (("train", train), ("val", train), ("query", test), ("gallery", test)):
        names = lists[split]
        for name, _ in names:
            path = os.path.join(root, folder, directory, name)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            Image.new("RGB", (8, 16)).save(path)
        with open(os.path.join(root, folder, f"list_{split}.txt"), "w") as f:
            f.writelines(f"{name} {pid}\n" for name, pid in names)


@pytest.mark.parametrize("folder, train, test", [("MSMT17_V1", "train", "test"),
                                                 ("MSMT17_V2", "mask_train_v2", "mask_test_v2")])
def test_msmt17_layout_the_readme_gives(tmp_path, monkeypatch, folder, train, test):
    """fast-reid's MSMT17 reads $FASTREID_DATASETS/<folder>/ itself (no MSMT17/ level); camera =
    third field of the file name - 1; query and gallery identities follow the training ones.
    MSMT17TrainVal adds list_val.txt's images to the training set (ABMT's), nothing else."""
    import fastreid.data.build as build

    from fastreid_slr.data.paths import build_dataset

    monkeypatch.setattr(build, "_root", str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"MSMT17 not found.*MSMT17_V1 \(or MSMT17_V2\).*FASTREID_DATASETS"):
        build_dataset("MSMT17")
    lists = {"train": [("0000/0000_000_01_0303morning_0015_0.jpg", 0), ("0001/0001_003_07_0303noon_0021_1.jpg", 1)],
             "val": [("0001/0001_004_02_0303noon_0022_0.jpg", 1)],
             "query": [("0000/0000_000_05_0303afternoon_0008_0.jpg", 0)],
             "gallery": [("0000/0000_001_15_0303afternoon_0009_0.jpg", 0)]}
    _msmt17(str(tmp_path), folder, train, test, lists)
    data = build_dataset("MSMT17")
    assert [(os.path.relpath(p, tmp_path), pid, cam) for p, pid, cam in data.train] == [
        (os.path.join(folder, train, "0000/0000_000_01_0303morning_0015_0.jpg"), "msmt17_0", "msmt17_0"),
        (os.path.join(folder, train, "0001/0001_003_07_0303noon_0021_1.jpg"), "msmt17_1", "msmt17_6")]
    assert [(pid, cam) for _, pid, cam in data.query] == [(2, 4)]
    assert [(pid, cam) for _, pid, cam in data.gallery] == [(2, 14)]
    train_val = build_dataset("MSMT17TrainVal")
    assert train_val.train == data.train + [
        (os.path.join(str(tmp_path), folder, train, "0001/0001_004_02_0303noon_0022_0.jpg"), "msmt17_1", "msmt17_1")]
    assert (train_val.query, train_val.gallery) == (data.query, data.gallery)
    with pytest.raises(ValueError, match="COMBINEALL would add the test images"):
        build_dataset("MSMT17TrainVal", combineall=True)


def _draws_after_setup(tmp_path, seed):
    """tools/train_net.py's ``setup`` with ``SEED``, then one draw from each generator."""
    import random

    import numpy as np
    import torch
    from fastreid_slr import run
    from tiny import PROCEDURAL

    args = run.argument_parser().parse_args(
        ["--config-file", os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"),
         "SEED", str(seed), "OUTPUT_DIR", str(tmp_path)])
    threads = torch.get_num_threads()
    try:
        run.setup(args, (PROCEDURAL,))
    finally:  # setup also picks the CPU threads (conftest restores the procedural spec)
        torch.set_num_threads(threads)
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_seed_makes_runs_repeat(tmp_path):
    assert _draws_after_setup(tmp_path, 3) == _draws_after_setup(tmp_path, 3)
    assert _draws_after_setup(tmp_path, 3) != _draws_after_setup(tmp_path, 4)
    assert _draws_after_setup(tmp_path, -1) != _draws_after_setup(tmp_path, -1)  # fast-reid's default


def test_the_demo_config_is_the_shrink_opts():
    """configs/Demo/slr-procedural.yml runs what the shrink list says (its tables and the
    shape sweep measure those settings), beside its data, its folders and its evaluation period."""
    opts = _shrink_opts()
    demo = train_net_cfg(os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"))
    shrunk = _load(os.path.join(REPO, "configs", "Base-SLR.yml"), opts)
    for key in opts[::2]:
        node_demo, node_shrunk = demo, shrunk
        for part in key.split("."):
            node_demo, node_shrunk = getattr(node_demo, part), getattr(node_shrunk, part)
        assert node_demo == node_shrunk, key
