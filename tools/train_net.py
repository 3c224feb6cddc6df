#!/usr/bin/env python
"""Train or evaluate with fast-reid, SLR components registered.

Same shape and flags as fast-reid's own ``tools/train_net.py``; fast-reid's meta-architectures
run unchanged. With ``MODEL.META_ARCHITECTURE: SLR`` (mode "adapt") one command runs the task:
stage 1 (source pretraining) if its weights are missing, then stage 2 (adaptation). The demo's
procedural datasets (``procedural_reid``) are registered here too.
"""
import logging
import os

import torch

import fastreid_slr  # noqa: F401  (applies the compat patches and registers the plugin)
from fastreid.config import get_cfg
from fastreid.engine import DefaultTrainer, default_argument_parser, default_setup
from fastreid.utils import comm
from fastreid.utils.env import seed_all_rng
from fastreid.utils.logger import setup_logger

from fastreid_slr import add_slr_config, faiss_build
from fastreid_slr.engine import (PluginTrainer, SLRCheckpointer, SLRTrainer, SourcePretrainTrainer,
                                 check_adaptation_config, check_batch_per_rank, ensure_source_weights,
                                 is_slr_adaptation, reestimate_batch_norm, target_train_loader,
                                 write_final_results)
from fastreid_slr.launch import launch
from procedural_reid import add_procedural_config, apply_procedural_config

logger = logging.getLogger("fastreid_slr")


def add_run_config(cfg):
    """This entry point's own key, top-level as detectron2 names it (fast-reid 1.4.0 has none and
    seeds every run at random)."""
    # >= 0: seed Python, numpy and torch (rank r gets SEED + r) and make cuDNN deterministic, so
    # that a run repeats on the same machine (``seed``).
    cfg.SEED = -1
    return cfg


def load_config(args):
    """Defaults + SLR keys + the procedural datasets' keys + SEED + file + command-line opts."""
    cfg = get_cfg()
    for add_keys in (add_slr_config, add_procedural_config, add_run_config):
        add_keys(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    return cfg


def run_device(cfg) -> str:
    """MODEL.DEVICE, or "cpu" when it asks for CUDA and there is none."""
    return "cpu" if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available() else cfg.MODEL.DEVICE


def setup(args):
    """The run's config (``load_config``) on ``run_device``, checked and frozen."""
    cfg = load_config(args)
    no_cuda = run_device(cfg) != cfg.MODEL.DEVICE
    cfg.MODEL.DEVICE = run_device(cfg)
    cfg.freeze()
    default_setup(cfg, args)
    seed(cfg)  # after default_setup, which seeds at random
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="fastreid_slr")
    if no_cuda:
        logger.warning("MODEL.DEVICE asks for CUDA but there is none: running on the CPU")
    logger.info(f"faiss: {faiss_build()}")  # exactly one build installed, or one clear error
    if cfg.MODEL.DEVICE == "cpu" and "OMP_NUM_THREADS" not in os.environ:
        # Intra-op threads that share cores with the data-loader workers spin against them
        # (README "CPU runs").
        threads = max(1, (os.cpu_count() or 1) - cfg.DATALOADER.NUM_WORKERS)
        torch.set_num_threads(threads)
        logger.info(f"CPU run: {threads} intra-op thread(s) beside {cfg.DATALOADER.NUM_WORKERS} loader workers "
                    f"(set OMP_NUM_THREADS to choose)")
    apply_procedural_config(cfg)
    if not args.eval_only:  # --adabn may train stage 1
        check_batch_per_rank(cfg, comm.get_world_size())
    if is_slr_adaptation(cfg) and not args.eval_only:
        check_adaptation_config(cfg)
    return cfg


def seed(cfg):
    """SEED >= 0: the same random draws on every run (rank r: SEED + r), and cuDNN's deterministic
    kernels without autotuning (CUDNN_BENCHMARK is ignored), which can slow convolutions on GPUs;
    README "GPUs" says what still does not repeat there."""
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED + comm.get_rank())
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def evaluate(cfg, adabn: bool):
    """--eval-only: MODEL.WEIGHTS on DATASETS.TESTS. --adabn: the same after re-estimating the BN
    statistics on the target's training images (for an SLR config without MODEL.WEIGHTS, on stage
    1's source model, trained first if missing): the control adaptation has to beat."""
    cfg.defrost()
    if adabn and is_slr_adaptation(cfg) and not cfg.MODEL.WEIGHTS:
        cfg.MODEL.WEIGHTS = ensure_source_weights(cfg)
    cfg.MODEL.BACKBONE.PRETRAIN = False
    cfg.freeze()
    evaluator = PluginTrainer if cfg.MODEL.META_ARCHITECTURE == "SLR" else DefaultTrainer
    model = evaluator.build_model(cfg)
    SLRCheckpointer(model).load(cfg.MODEL.WEIGHTS)  # sizes SLR's classifiers from the file
    if adabn:
        reestimate_batch_norm(model, target_train_loader(cfg))
    results = evaluator.test(cfg, model)
    write_final_results(cfg.OUTPUT_DIR, results)
    return results


def main(args):
    cfg = setup(args)
    if args.eval_only or args.adabn:
        return evaluate(cfg, adabn=args.adabn)

    if is_slr_adaptation(cfg):
        weights = ensure_source_weights(cfg, resume=args.resume)
        cfg.defrost()
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.BACKBONE.PRETRAIN = False  # the source weights replace ImageNet's
        cfg.freeze()
        seed(cfg)  # stage 2 draws the same whether or not stage 1 ran in this process
        trainer = SLRTrainer(cfg)
    elif cfg.MODEL.META_ARCHITECTURE == "SLR":
        trainer = SourcePretrainTrainer(cfg)
    else:
        trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    write_final_results(cfg.OUTPUT_DIR, results)
    return results


def argument_parser():
    """fast-reid's flags, and --adabn."""
    parser = default_argument_parser()
    parser.add_argument("--adabn", action="store_true",
                        help="evaluate with BN statistics re-estimated on the target's training images (AdaBN), "
                             "no training: the control adaptation has to beat")
    return parser


if __name__ == "__main__":
    args = argument_parser().parse_args()
    print("Command Line Args:", args)
    # The ranks' backend follows the run's device (gloo for a CPU run, also on a GPU host).
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args,), device=run_device(load_config(args)))
