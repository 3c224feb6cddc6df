"""Tiny configs and data shared by tests: fast-reid's Baseline with ResNet-18 at 64x32, the one tiny
SLR run (configs/Demo/tiny.yml, as opts: TINY_SLR), configs as tools/train_net.py builds them, random batches."""
import argparse
import os

import torch
import yaml
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


# The one tiny SLR run: configs/Demo/tiny.yml (small procedural domains, 32x16 images, a few
# iterations) on top of configs/Demo/slr-procedural.yml (the demo's slim dual backbone). TINY_SLR
# holds the overlay's keys as tools/train_net.py's command-line opts take them.
TINY_CONFIG = os.path.join(REPO, "configs", "Demo", "tiny.yml")


def _flat_keys(node: dict, prefix: str = ""):
    """``{"A": {"B": v}}`` as ``("A.B", v)`` pairs: a config file's keys as command-line opts take them."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from _flat_keys(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


with open(TINY_CONFIG) as _file:
    TINY_SLR = dict(_flat_keys(yaml.safe_load(_file)))


def as_opts(keys: dict) -> list:
    """``{"A.B": v}`` as command-line opts: ``["A.B", "v"]``."""
    return [str(x) for item in keys.items() for x in item]


def tiny_slr_opts(**overrides) -> list:
    """``TINY_SLR`` with ``overrides`` (keys as in the config: pass them as ``**{"A.B": v}``), as
    command-line opts for tools/train_net.py."""
    return as_opts({**TINY_SLR, **overrides})


# What tools/train_net.py adds to the plugin's run: the demo's procedural datasets.
PROCEDURAL = ConfigExtension(add_procedural_config, apply_procedural_config)


def train_net_cfg(config_file, *opts):
    """The config tools/train_net.py runs for ``config_file`` and ``opts``: fast-reid's keys, SLR's,
    SEED and the procedural datasets'."""
    args = argparse.Namespace(config_file=config_file, opts=[str(x) for x in opts])
    return load_config(args, (PROCEDURAL,))


def tiny_slr_cfg(output_dir, source_dir, **overrides):
    """The tiny SLR run's config (configs/Demo/tiny.yml + ``overrides``), writing under the two
    folders; the procedural datasets configured for it."""
    cfg = train_net_cfg(os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"))
    cfg.merge_from_file(TINY_CONFIG)
    cfg.merge_from_list(as_opts({"OUTPUT_DIR": output_dir, "SLR.SOURCE.OUTPUT_DIR": source_dir, **overrides}))
    apply_procedural_config(cfg)
    return cfg
