#!/usr/bin/env python
"""myproj's trainer: fast-reid's DefaultTrainer on myproj's config, through fast-reid's launch.

It imports fastreid_slr as any project mixing SLR in would; its own runs must not change.
"""
import json
import numbers
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # myproj, beside this script

import fastreid_slr  # noqa: E402,F401  (SLR's components in fast-reid's registries)
from fastreid.config import get_cfg  # noqa: E402
from fastreid.engine import DefaultTrainer, default_argument_parser, default_setup, launch  # noqa: E402
from fastreid.utils import comm  # noqa: E402
from fastreid.utils.env import seed_all_rng  # noqa: E402

from myproj import add_myproj_config  # noqa: E402


def setup(args, *more_keys):
    cfg = get_cfg()
    for add_keys in (add_myproj_config, *more_keys):
        add_keys(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    cfg.freeze()
    default_setup(cfg, args)
    seed_all_rng(cfg.MYPROJ.SEED + comm.get_rank())  # after default_setup, which seeds at random
    return cfg


def write_results(cfg, results):
    if comm.is_main_process():
        record = {"world_size": comm.get_world_size(),
                  "results": {k: float(v) for k, v in results.items() if isinstance(v, numbers.Real)}}
        with open(os.path.join(cfg.OUTPUT_DIR, "myproj_results.json"), "w") as f:
            json.dump(record, f)


def main(args):
    cfg = setup(args)
    trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    write_results(cfg, results)
    return results


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,))
