"""Tiny configs and data shared by tests: depth-18 nets, 64x32 images, a few iterations."""
import os

import torch
from fastreid.config import get_cfg

import fastreid_slr
from fastreid_slr import add_slr_config

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


def tiny_slr_cfg(output_dir, source_dir, **overrides):
    """SLR on small procedural domains (A -> B): the demo's backbone at 32x16, a few iterations."""
    from fastreid_slr.data.procedural import ProceduralSpec, set_default_spec

    cfg = get_cfg()
    add_slr_config(cfg)
    cfg.merge_from_file(os.path.join(REPO, "configs", "Demo", "slr-procedural.yml"))
    cfg.DATASETS.PROCEDURAL.NUM_TRAIN_IDS = 12
    cfg.DATASETS.PROCEDURAL.NUM_TEST_IDS = 8
    cfg.DATASETS.PROCEDURAL.NUM_CAMERAS = 3
    cfg.DATASETS.PROCEDURAL.IMAGES_PER_CAMERA = 3
    cfg.INPUT.SIZE_TRAIN = [32, 16]
    cfg.INPUT.SIZE_TEST = [32, 16]
    cfg.INPUT.PADDING.SIZE = 2
    cfg.DATALOADER.NUM_WORKERS = 0
    cfg.SOLVER.IMS_PER_BATCH = 8
    cfg.SOLVER.MAX_EPOCH = 3
    cfg.TEST.EVAL_PERIOD = 3
    cfg.SLR.ITERS_PER_EPOCH = 2
    cfg.SLR.SOURCE.MAX_EPOCH = 6
    cfg.SLR.SOURCE.STEPS = [100]
    cfg.SLR.SOURCE.IMS_PER_BATCH = 16
    cfg.SLR.CLUSTER.K1 = 10
    cfg.SLR.CLUSTER.K2 = 3
    cfg.SLR.CLUSTER.RHO = 0.0  # ρ-eps is sized for thousands of images: a fixed eps here
    cfg.SLR.CLUSTER.EPS = 0.5
    cfg.SLR.REFINE.MIN_CLUSTER_SIZE = 3
    cfg.OUTPUT_DIR = str(output_dir)
    cfg.SLR.SOURCE.OUTPUT_DIR = str(source_dir)
    cfg.merge_from_list([x for kv in overrides.items() for x in kv])
    set_default_spec(ProceduralSpec.from_config(cfg))
    return cfg
