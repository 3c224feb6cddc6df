#!/usr/bin/env python
"""Train or evaluate with fast-reid, SLR components registered.

Same shape and flags as fast-reid's own ``tools/train_net.py``; fast-reid's meta-architectures run
unchanged. With ``MODEL.META_ARCHITECTURE: SLR`` one command runs the task: stage 1 (source
pretraining) if its weights are missing, then stage 2 (adaptation). ``--adabn`` evaluates the
AdaBN control. The logic lives in ``fastreid_slr.run``; this script adds the demo's procedural
datasets (``procedural_reid``) and launches.

    python tools/train_net.py --config-file configs/SLR/d2m.yml [--num-gpus N] [--resume] [KEY VALUE ...]
"""
import fastreid_slr  # noqa: F401  (applies the compat patches and registers the plugin)
from fastreid_slr.run import ConfigExtension, argument_parser, launch_main
from procedural_reid import add_procedural_config, apply_procedural_config

PROCEDURAL_DATASETS = ConfigExtension(add_procedural_config, apply_procedural_config)

if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    launch_main(args, extensions=(PROCEDURAL_DATASETS,))
