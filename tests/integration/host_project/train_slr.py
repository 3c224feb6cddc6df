#!/usr/bin/env python
"""myproj with SLR: its config and SLR's keys, its backbone inside SLR (MODEL.BACKBONE.NAME),
SLR's two stages as fastreid_slr's trainers run them."""
import fastreid_slr  # first: fast-reid's imports need its compat patches
from fastreid.engine import default_argument_parser
from fastreid_slr.engine import SLRTrainer, ensure_source_weights

from train_net import setup, write_results


def main(args):
    cfg = setup(args, fastreid_slr.add_slr_config)
    weights = ensure_source_weights(cfg)  # stage 1 on SLR.SOURCE.DATASETS, as SLR's own tool runs it
    cfg.defrost()
    cfg.MODEL.WEIGHTS = weights
    cfg.freeze()
    trainer = SLRTrainer(cfg)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    write_results(cfg, results)
    return results


if __name__ == "__main__":
    main(default_argument_parser().parse_args())
