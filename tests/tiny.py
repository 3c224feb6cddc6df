"""Tiny configs and data shared by tests: depth-18 nets, 64x32 images, a few iterations."""
import torch
from fastreid.config import get_cfg

import fastreid_slr
from fastreid_slr import add_slr_config


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
