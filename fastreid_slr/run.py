"""One run of ``tools/train_net.py``: its config, set-up, seeding, evaluation and ``main``.

fast-reid's meta-architectures run unchanged. With ``MODEL.META_ARCHITECTURE: SLR`` (mode "adapt")
one command runs the task: stage 1 (source pretraining) if its weights are missing, then stage 2
(adaptation). Tools, tests and benchmarks call ``main`` / ``launch_main`` here with their own
trainer class and config extensions (the demo's procedural datasets are one), never a patched
module.
"""
import logging
import os
from typing import Callable, NamedTuple, Sequence

import torch
from fastreid.config import get_cfg
from fastreid.engine import DefaultTrainer, default_argument_parser, default_setup
from fastreid.utils import comm
from fastreid.utils.env import seed_all_rng
from fastreid.utils.logger import setup_logger

from .config import add_run_config, add_slr_config
from .engine import (PluginTrainer, SLRCheckpointer, SLRTrainer, SourcePretrainTrainer, check_adaptation_config,
                     check_batch_per_rank, ensure_source_weights, is_slr_adaptation, reestimate_batch_norm,
                     target_train_loader, write_final_results)
from .installed_faiss import faiss_build
from .launch import launch

logger = logging.getLogger("fastreid_slr")

__all__ = ["ConfigExtension", "argument_parser", "evaluate", "launch_main", "load_config", "main", "run_device",
           "seed", "setup"]


def _nothing(cfg) -> None:
    """An extension with keys only."""


class ConfigExtension(NamedTuple):
    """Keys a project adds to the run's config (``add(cfg)``), and what it sets up from them once
    the config is final (``apply(cfg)``: e.g. the datasets those keys describe). Module-level
    functions, so that spawned ranks receive them."""

    add: Callable
    apply: Callable = _nothing


def load_config(args, extensions: Sequence[ConfigExtension] = ()):
    """fast-reid's defaults + SLR keys + SEED + the extensions' keys + file + command-line opts."""
    cfg = get_cfg()
    for add_keys in (add_slr_config, add_run_config, *(e.add for e in extensions)):
        add_keys(cfg)
    cfg.merge_from_file(args.config_file)
    cfg.merge_from_list(args.opts)
    return cfg


def run_device(cfg) -> str:
    """MODEL.DEVICE, or "cpu" when it asks for CUDA and there is none."""
    return "cpu" if cfg.MODEL.DEVICE.startswith("cuda") and not torch.cuda.is_available() else cfg.MODEL.DEVICE


def setup(args, extensions: Sequence[ConfigExtension] = ()):
    """The run's config (``load_config``) on ``run_device``, checked and frozen."""
    cfg = load_config(args, extensions)
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
        # (docs/performance.md, "CPU runs").
        threads = max(1, (os.cpu_count() or 1) - cfg.DATALOADER.NUM_WORKERS)
        torch.set_num_threads(threads)
        logger.info(f"CPU run: {threads} intra-op thread(s) beside {cfg.DATALOADER.NUM_WORKERS} loader workers "
                    f"(set OMP_NUM_THREADS to choose)")
    for extension in extensions:
        extension.apply(cfg)
    if not args.eval_only:  # --adabn may train stage 1
        check_batch_per_rank(cfg, comm.get_world_size())
    if is_slr_adaptation(cfg) and not args.eval_only:
        check_adaptation_config(cfg)
    return cfg


def seed(cfg):
    """SEED >= 0: the same random draws on every run (rank r: SEED + r), and cuDNN's deterministic
    kernels without autotuning (CUDNN_BENCHMARK is ignored), which can slow convolutions on GPUs."""
    if cfg.SEED >= 0:
        seed_all_rng(cfg.SEED + comm.get_rank())
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def evaluate(cfg, adabn: bool):
    """--eval-only: MODEL.WEIGHTS on DATASETS.TESTS. --adabn: the same after re-estimating the BN
    statistics on the target's training images (for an SLR config without MODEL.WEIGHTS, on stage
    1's source model, trained first if missing): the control adaptation has to beat."""
    cfg = cfg.clone()
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


def main(args, trainer_cls=SLRTrainer, extensions: Sequence[ConfigExtension] = ()):
    """The whole run on this process (one rank): ``trainer_cls`` trains stage 2."""
    cfg = setup(args, extensions)
    if args.eval_only or args.adabn:
        return evaluate(cfg, adabn=args.adabn)

    if is_slr_adaptation(cfg):
        weights = ensure_source_weights(cfg, resume=args.resume)
        cfg.defrost()
        cfg.MODEL.WEIGHTS = weights
        cfg.MODEL.BACKBONE.PRETRAIN = False  # the source weights replace ImageNet's
        cfg.freeze()
        seed(cfg)  # stage 2 draws the same whether or not stage 1 ran in this process
        trainer = trainer_cls(cfg)
    elif cfg.MODEL.META_ARCHITECTURE == "SLR":
        trainer = SourcePretrainTrainer(cfg)
    else:
        trainer = DefaultTrainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    results = trainer.train()
    write_final_results(cfg.OUTPUT_DIR, results)
    return results


def launch_main(args, trainer_cls=SLRTrainer, extensions: Sequence[ConfigExtension] = ()):
    """``main`` on ``args.num_gpus`` ranks (fast-reid's ``launch``); the ranks' backend follows the
    run's device (gloo for a CPU run, also on a GPU host). ``trainer_cls`` and the extensions go to
    spawned ranks by reference: define them at module level."""
    launch(main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
           dist_url=args.dist_url, args=(args, trainer_cls, tuple(extensions)),
           device=run_device(load_config(args, extensions)))


def argument_parser():
    """fast-reid's flags, and --adabn."""
    parser = default_argument_parser()
    parser.add_argument("--adabn", action="store_true",
                        help="evaluate with BN statistics re-estimated on the target's training images (AdaBN), "
                             "no training: the control adaptation has to beat")
    return parser
