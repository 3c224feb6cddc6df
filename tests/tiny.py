"""Tiny configs and data shared by tests: fast-reid's Baseline with ResNet-18 at 64x32, the one tiny
SLR run (TINY_SLR), configs as tools/train_net.py builds them, random batches."""
import argparse
import os

import torch
from fastreid.config import get_cfg

from fastreid_slr import add_slr_config
from fastreid_slr.run import ConfigExtension, load_config
from procedural_reid import add_procedural_config, apply_procedural_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_baseline_cfg(num_classes=8, **overrides):
    """fast-reid's own Baseline, sized for two CPU cores."""
    cfg = get_cfg()
    add_slr_config(cfg)
    cfg.MODEL.DEVICE = "cpu"
    cfg.MODEL.META_ARCHITECTURE = "Baseline"
    cfg.MODEL.BACKBONE.NAME = "build_resnet_backbone"
    cfg.MODEL.BACKBONE.DEPTH = "18x"
    cfg.MODEL.BACKBONE.FEAT_DIM = 512
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.MODEL.HEADS.NUM_CLASSES = num_classes
    cfg.MODEL.HEADS.NECK_FEAT = "after"
    cfg.MODEL.HEADS.WITH_BNNECK = True
    cfg.MODEL.LOSSES.NAME = ("CrossEntropyLoss", "TripletLoss")
    cfg.MODEL.LOSSES.CE.EPSILON = 0.1
    cfg.MODEL.LOSSES.TRI.HARD_MINING = True
    cfg.INPUT.SIZE_TRAIN = [64, 32]
    cfg.INPUT.SIZE_TEST = [64, 32]
    cfg.SOLVER.OPT = "Adam"
    cfg.SOLVER.BASE_LR = 3.5e-4
    cfg.SOLVER.IMS_PER_BATCH = 16
    cfg.SOLVER.WARMUP_ITERS = 0
    cfg.SOLVER.MAX_EPOCH = 2
    cfg.SOLVER.STEPS = [1]
    cfg.SOLVER.CHECKPOINT_PERIOD = 1
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.DATALOADER.SAMPLER_TRAIN = "NaiveIdentitySampler"
    cfg.TEST.IMS_PER_BATCH = 64
    for key, value in overrides.items():
        node = cfg
        *path, leaf = key.split(".")
        for part in path:
            node = getattr(node, part)
        setattr(node, leaf, value)
    return cfg


def random_batch(num_ids=4, per_id=4, size=(64, 32), seed=0):
    """A fast-reid training batch: images in 0..255, identity targets, camera ids."""
    gen = torch.Generator().manual_seed(seed)
    n = num_ids * per_id
    return {
        "images": torch.rand(n, 3, *size, generator=gen) * 255,
        "targets": torch.arange(num_ids).repeat_interleave(per_id),
        "camids": torch.zeros(n, dtype=torch.long),
    }


# The one tiny SLR run of the tests, on top of configs/Demo/slr-procedural.yml (the demo's slim
# dual backbone): small procedural domains, 32x16 images, a few iterations.
TINY_SLR = {
    "DATASETS.PROCEDURAL.NUM_TRAIN_IDS": 12, "DATASETS.PROCEDURAL.NUM_TEST_IDS": 8,
    "DATASETS.PROCEDURAL.NUM_CAMERAS": 3, "DATASETS.PROCEDURAL.IMAGES_PER_CAMERA": 3,
    "INPUT.SIZE_TRAIN": [32, 16], "INPUT.SIZE_TEST": [32, 16], "INPUT.PADDING.SIZE": 2,
    "DATALOADER.NUM_WORKERS": 0, "SOLVER.IMS_PER_BATCH": 8, "SOLVER.MAX_EPOCH": 3, "TEST.EVAL_PERIOD": 3,
    # 15 source epochs: with 6 the first clusterings were no better than a random partition
    "SLR.ITERS_PER_EPOCH": 2, "SLR.SOURCE.MAX_EPOCH": 15, "SLR.SOURCE.STEPS": [100], "SLR.SOURCE.IMS_PER_BATCH": 16,
    "SLR.SOURCE.ITERS_PER_EPOCH": 0,  # a pass over the ~90 source images: 5 steps
    "SLR.CLUSTER.K1": 10, "SLR.CLUSTER.K2": 3,
    # ~90 target images, ~7 % of their pairs same-identity: the smallest 10 % gave 6-11 clusters
    # (ARI 0.12-0.23) over three seeds; 3 % gave 2-5 at ARI ~0.04, and one cluster on some CPUs
    "SLR.CLUSTER.RHO": 0.1,
    "SLR.REFINE.MIN_CLUSTER_SIZE": 3,
}


def tiny_slr_opts(**overrides) -> list:
    """``TINY_SLR`` with ``overrides`` (keys as in the config: pass them as ``**{"A.B": v}``), as
    command-line opts for tools/train_net.py."""
    return [str(x) for item in {**TINY_SLR, **overrides}.items() for x in item]


# What tools/train_net.py adds to the plugin's run: the demo's procedural datasets.
PROCEDURAL = ConfigExtension(add_procedural_config, apply_procedural_config)


def train_net_cfg(config_file, *opts):
    """The config tools/train_net.py runs for ``config_file`` and ``opts``: fast-reid's keys, SLR's,
    SEED and the procedural datasets'."""
    args = argparse.Namespace(config_file=config_file, opts=[str(x) for x in opts])
    return load_config(args, (PROCEDURAL,))


def tiny_slr_cfg(output_dir, source_dir, **overrides):
    """The tiny SLR run's config (``TINY_SLR`` + ``overrides``), writing under the two folders; the
    procedural datasets configured for it."""
    cfg = train_net_cfg(os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"),
                        *tiny_slr_opts(**{"OUTPUT_DIR": str(output_dir), "SLR.SOURCE.OUTPUT_DIR": str(source_dir),
                                          **overrides}))
    apply_procedural_config(cfg)
    return cfg
