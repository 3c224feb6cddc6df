"""One command per task: stage 1 (source pretraining) when its weights are missing, then stage 2.

Everything a run needs is checked first (``check_adaptation_config``), so a typo fails in a
second, not after an hour of pretraining.
"""
import json
import logging
import os

from fastreid.utils import comm

from ..data.paths import build_dataset
from ..utils import atomic_write, numeric_results
from .camera_bn import CAMERA_AWARE_METHODS
from .pseudo_labels import PseudoLabeler
from .pretraining import SourcePretrainTrainer

logger = logging.getLogger(__name__)


def is_slr_adaptation(cfg) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == "SLR" and cfg.SLR.MODE == "adapt"


def source_output_dir(cfg) -> str:
    """Stage 1's own folder, shared by every stage-2 run of the same source (e.g. SLR and ABMT)."""
    if cfg.SLR.SOURCE.OUTPUT_DIR:
        return cfg.SLR.SOURCE.OUTPUT_DIR
    parent = os.path.dirname(os.path.normpath(cfg.OUTPUT_DIR))
    return os.path.join(parent, "source-" + "-".join(cfg.SLR.SOURCE.DATASETS))


def source_weights(cfg) -> str:
    return cfg.SLR.SOURCE.WEIGHTS or os.path.join(source_output_dir(cfg), "model_final.pth")


def check_adaptation_config(cfg) -> None:
    """Fail at start-up, with one message, on anything that would fail later."""
    PseudoLabeler.from_config(cfg)  # method names, α, K1/K2, ...
    if cfg.SLR.CLUSTER.CAMERA_AWARE not in CAMERA_AWARE_METHODS:
        raise ValueError(f"SLR.CLUSTER.CAMERA_AWARE must be one of {CAMERA_AWARE_METHODS}, "
                         f"got {cfg.SLR.CLUSTER.CAMERA_AWARE!r}")
    if cfg.SLR.ITERS_PER_EPOCH < 1 or cfg.SLR.CLUSTER_EVERY < 1:
        raise ValueError("SLR.ITERS_PER_EPOCH and SLR.CLUSTER_EVERY must be >= 1")
    weights = cfg.SLR.SOURCE.WEIGHTS
    if weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"SLR.SOURCE.WEIGHTS={weights} does not exist; point it at stage 1's "
                                f"model_final.pth, or leave it empty to pretrain on SLR.SOURCE.DATASETS")
    if not weights and not cfg.SLR.SOURCE.DATASETS and not os.path.isfile(source_weights(cfg)):
        raise ValueError("Stage 2 needs source-pretrained weights: set SLR.SOURCE.WEIGHTS, or "
                         "SLR.SOURCE.DATASETS to pretrain on them first")
    if cfg.SLR.CLUSTER.SOURCE_WEIGHT > 0 and not cfg.SLR.SOURCE.DATASETS:
        raise ValueError("SLR.CLUSTER.SOURCE_WEIGHT > 0 (ABMT's source term) needs the source images: set "
                         "SLR.SOURCE.DATASETS, or SLR.CLUSTER.SOURCE_WEIGHT 0 for a target-only distance")
    names = set(cfg.DATASETS.NAMES) | set(cfg.DATASETS.TESTS)
    if not os.path.isfile(source_weights(cfg)) or cfg.SLR.CLUSTER.SOURCE_WEIGHT > 0:
        names |= set(cfg.SLR.SOURCE.DATASETS)
    for name in sorted(names):
        build_dataset(name)  # an unknown or missing dataset raises, naming it and the path


def source_stage_config(cfg):
    """Stage 1's config: the same model in pretrain mode on SLR.SOURCE.DATASETS, its own schedule
    and folder, evaluated on the target (the "source only" figure)."""
    stage = cfg.clone()
    stage.defrost()
    source = cfg.SLR.SOURCE
    stage.SLR.MODE = "pretrain"
    stage.DATASETS.NAMES = tuple(source.DATASETS)
    stage.MODEL.WEIGHTS = ""
    stage.MODEL.HEADS.NUM_CLASSES = 0  # the source's identities
    stage.SOLVER.MAX_EPOCH = source.MAX_EPOCH
    stage.SOLVER.STEPS = list(source.STEPS)  # (for the log: SourcePretrainTrainer schedules by SLR.SOURCE)
    stage.SOLVER.BASE_LR = source.BASE_LR
    stage.SOLVER.IMS_PER_BATCH = source.IMS_PER_BATCH
    stage.SOLVER.WARMUP_ITERS = 0  # the warm-up is SourcePretrainTrainer's, in epochs (ABMT)
    # the images whose BN statistics stage 1 adapts to: the adaptation's own target by default
    stage.SLR.PRETRAIN.TARGET_DATASETS = tuple(cfg.SLR.PRETRAIN.TARGET_DATASETS or cfg.DATASETS.NAMES)
    stage.SOLVER.CHECKPOINT_PERIOD = 1  # a killed stage 1 resumes, losing at most an epoch
    stage.TEST.EVAL_PERIOD = source.MAX_EPOCH
    stage.INPUT.REA.ENABLED = False  # ABMT pretrains without random erasing
    stage.OUTPUT_DIR = source_output_dir(cfg)
    stage.freeze()
    return stage


def ensure_source_weights(cfg, resume: bool = False) -> str:
    """Path of the source-pretrained weights, training stage 1 first if they are not there."""
    path = source_weights(cfg)
    if os.path.isfile(path):
        logger.info(f"Stage 1: reusing source-pretrained weights {path}")
        return path
    stage = source_stage_config(cfg)
    logger.info(f"Stage 1: pretraining on {stage.DATASETS.NAMES} into {stage.OUTPUT_DIR}")
    if comm.is_main_process():
        os.makedirs(stage.OUTPUT_DIR, exist_ok=True)
    trainer = SourcePretrainTrainer(stage)
    trainer.resume_or_load(resume=resume)
    write_final_results(stage.OUTPUT_DIR, trainer.train())
    comm.synchronize()
    if not os.path.isfile(path):
        raise RuntimeError(f"Stage 1 finished without writing {path}")
    return path


def write_final_results(output_dir: str, results) -> None:
    """``<output_dir>/final_results.json``: the run's last evaluation, flat, for scripts."""
    if comm.is_main_process() and results:
        os.makedirs(output_dir, exist_ok=True)
        atomic_write(os.path.join(output_dir, "final_results.json"),
                     lambda f: json.dump(numeric_results(results), f, indent=1), mode="w")


# fast-reid's samplers that draw images, not identities; every other one builds PK batches.
_IMAGE_SAMPLERS = ("TrainingSampler", "ImbalancedDatasetSampler")


def check_batch_per_rank(cfg, world_size: int) -> None:
    """Each rank needs two identities × NUM_INSTANCE images per PK batch, in every stage that runs.

    fast-reid splits the global batch (SOLVER.IMS_PER_BATCH) across ranks: with one identity per
    rank the triplet terms have no negatives, and below one its identity sampler loops forever
    without a word (the paper's batch of 16 on 4 and 8 GPUs).
    """
    batches = []
    if cfg.DATALOADER.SAMPLER_TRAIN not in _IMAGE_SAMPLERS:
        batches.append(("SOLVER.IMS_PER_BATCH", cfg.SOLVER.IMS_PER_BATCH))
    if is_slr_adaptation(cfg) and not os.path.isfile(source_weights(cfg)):  # stage 1 will run, PK-sampled
        batches.append(("SLR.SOURCE.IMS_PER_BATCH", cfg.SLR.SOURCE.IMS_PER_BATCH))
    needed = 2 * cfg.DATALOADER.NUM_INSTANCE
    for key, batch in batches:
        per_rank = batch // world_size
        if per_rank < needed:
            raise ValueError(
                f"{key} {batch} is the global batch: over {world_size} rank(s) each gets {per_rank} images, fewer "
                f"than two identities x DATALOADER.NUM_INSTANCE {cfg.DATALOADER.NUM_INSTANCE} = {needed}. Set "
                f"{key} to {needed * world_size} or more, or lower DATALOADER.NUM_INSTANCE, or use fewer GPUs.")
