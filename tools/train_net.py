#!/usr/bin/env python
"""Train or evaluate with fast-reid, SLR components registered.

Same shape and flags as fast-reid's own ``tools/train_net.py``; fast-reid's meta-architectures
run unchanged.
"""
import logging

import torch

import fastreid_slr  # noqa: F401  (applies the compat patches and registers the plugin)
from fastreid.config import get_cfg
from fastreid.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from fastreid.utils.checkpoint import Checkpointer

from fastreid_slr import add_slr_config
from fastreid_slr.data.procedural import ProceduralSpec, set_default_spec


def setup(args):
    """Config from defaults + SLR keys + file + command-line opts, frozen."""
    cfg = get_cfg()
    add_slr_config(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available():
        logging.getLogger("fastreid_slr").warning("MODEL.DEVICE is %s but CUDA is not available: "
                                                  "running on the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    default_setup(cfg, args)
    set_default_spec(ProceduralSpec.from_config(cfg))
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        cfg.defrost()
        cfg.MODEL.BACKBONE.PRETRAIN = False
        model = DefaultTrainer.build_model(cfg)
        Checkpointer(model).load(cfg.MODEL.WEIGHTS)
        return DefaultTrainer.test(cfg, model)

    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    print("Command Line Args:", args)
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
