"""One command per task: stage 1 (source pretraining) when its weights are missing, then stage 2.

Everything a run needs is checked first (``check_adaptation_config``), so a typo fails in a
second, not after an hour of pretraining.
"""
import json
import logging
import os

from fastreid.utils import comm

from ..data.image_cache import ImageCache
from ..data.paths import build_dataset
from ..utils import atomic_write, numeric_results
from .camera_bn import CAMERA_AWARE_METHODS
from .checkpointer import SLRCheckpointer
from .pseudo_labels import PseudoLabeler
from .pretraining import SOURCE_MODEL_RECORD, SourcePretrainTrainer

logger = logging.getLogger(__name__)


def is_slr_adaptation(cfg) -> bool:
    return cfg.MODEL.META_ARCHITECTURE == "SLR" and cfg.SLR.MODE == "adapt"


def source_output_dir(cfg) -> str:
    """Stage 1's own folder, shared by every stage-2 run of the same task (e.g. SLR and ABMT)."""
    if cfg.SLR.SOURCE.OUTPUT_DIR:
        return cfg.SLR.SOURCE.OUTPUT_DIR
    parent = os.path.dirname(os.path.normpath(cfg.OUTPUT_DIR))
    return os.path.join(parent, f"source-{'-'.join(cfg.SLR.SOURCE.DATASETS)}-to-{'-'.join(cfg.DATASETS.NAMES)}")


def selects_source_model(cfg) -> bool:
    """Stage 1 evaluates on the source and stage 2 adapts from its best epoch (ABMT's choice)."""
    return not cfg.SLR.SOURCE.WEIGHTS and cfg.SLR.SOURCE.EVAL_PERIOD > 0


def source_weights(cfg) -> str:
    """The weights stage 2 starts from: SLR.SOURCE.WEIGHTS, else stage 1's model_best.pth (the
    best source mAP, ``selects_source_model``) or model_final.pth (its last epoch)."""
    if cfg.SLR.SOURCE.WEIGHTS:
        return cfg.SLR.SOURCE.WEIGHTS
    return os.path.join(source_output_dir(cfg), "model_best.pth" if selects_source_model(cfg) else "model_final.pth")


def source_pretrained(cfg) -> bool:
    """Nothing left for stage 1 to train: SLR.SOURCE.WEIGHTS is given, or stage 1's folder holds
    model_final.pth, which fast-reid writes after the last epoch (model_best.pth exists earlier)."""
    return bool(cfg.SLR.SOURCE.WEIGHTS) or os.path.isfile(os.path.join(source_output_dir(cfg), "model_final.pth"))


def check_adaptation_config(cfg) -> None:
    """Fail at start-up, with one message, on anything that would fail later."""
    PseudoLabeler.from_config(cfg)  # method names, α, K1/K2, the search backend, ...
    ImageCache.from_config(cfg, transforms=None)  # its budget
    if cfg.SLR.CLUSTER.CAMERA_AWARE not in CAMERA_AWARE_METHODS:
        raise ValueError(f"SLR.CLUSTER.CAMERA_AWARE must be one of {CAMERA_AWARE_METHODS}, "
                         f"got {cfg.SLR.CLUSTER.CAMERA_AWARE!r}")
    if cfg.SLR.ITERS_PER_EPOCH < 1 or cfg.SLR.CLUSTER_EVERY < 1:
        raise ValueError("SLR.ITERS_PER_EPOCH and SLR.CLUSTER_EVERY must be >= 1")
    if cfg.SLR.SOURCE.ITERS_PER_EPOCH < 0 or cfg.SLR.SOURCE.EVAL_PERIOD < 0:
        raise ValueError("SLR.SOURCE.ITERS_PER_EPOCH and SLR.SOURCE.EVAL_PERIOD must be >= 0 (0: a pass over the "
                         "source set; no source evaluation)")
    weights = cfg.SLR.SOURCE.WEIGHTS
    if weights and not os.path.isfile(weights):
        raise FileNotFoundError(f"SLR.SOURCE.WEIGHTS={weights} does not exist; point it at stage 1's "
                                f"model_best.pth or model_final.pth, or leave it empty to pretrain on SLR.SOURCE.DATASETS")
    if not source_pretrained(cfg) and not cfg.SLR.SOURCE.DATASETS:
        raise ValueError("Stage 2 needs source-pretrained weights: set SLR.SOURCE.WEIGHTS, or "
                         "SLR.SOURCE.DATASETS to pretrain on them first")
    if source_pretrained(cfg) and not os.path.isfile(source_weights(cfg)):
        raise FileNotFoundError(
            f"Stage 1 in {source_output_dir(cfg)} finished without {os.path.basename(source_weights(cfg))}: it did "
            f"not evaluate on the source. Set SLR.SOURCE.EVAL_PERIOD 0 to adapt from its model_final.pth, or "
            f"SLR.SOURCE.OUTPUT_DIR to a new folder to pretrain again")
    if cfg.SLR.CLUSTER.SOURCE_WEIGHT > 0 and not cfg.SLR.SOURCE.DATASETS:
        raise ValueError("SLR.CLUSTER.SOURCE_WEIGHT > 0 (ABMT's source term) needs the source images: set "
                         "SLR.SOURCE.DATASETS, or SLR.CLUSTER.SOURCE_WEIGHT 0 for a target-only distance")
    names = set(cfg.DATASETS.NAMES) | set(cfg.DATASETS.TESTS)
    if not source_pretrained(cfg) or cfg.SLR.CLUSTER.SOURCE_WEIGHT > 0:
        names |= set(cfg.SLR.SOURCE.DATASETS)
    for name in sorted(names):
        build_dataset(name)  # an unknown or missing dataset raises, naming it and the path


def source_stage_config(cfg):
    """Stage 1's config: the same model in pretrain mode on SLR.SOURCE.DATASETS, its own schedule
    and folder; evaluated on the source's test sets every SLR.SOURCE.EVAL_PERIOD epochs (and the
    last), or, with 0, on the target at its end (then that is the "source only" figure)."""
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
    if selects_source_model(cfg):
        stage.DATASETS.TESTS = tuple(source.DATASETS)
        stage.TEST.EVAL_PERIOD = source.EVAL_PERIOD
    else:
        stage.TEST.EVAL_PERIOD = source.MAX_EPOCH
    stage.INPUT.REA.ENABLED = False  # ABMT pretrains without random erasing
    stage.OUTPUT_DIR = source_output_dir(cfg)
    stage.freeze()
    return stage


def ensure_source_weights(cfg, resume: bool = False) -> str:
    """Path of the weights stage 2 starts from (``source_weights``), training stage 1 first if it
    has not finished; stage 1's final_results.json (the "source only" figure) is the target
    evaluation of those weights."""
    path = source_weights(cfg)
    if source_pretrained(cfg):
        logger.info(f"Stage 1: reusing source-pretrained weights {path}")
    else:
        _train_source_stage(cfg, resume)
    if not os.path.isfile(path):
        raise RuntimeError(f"Stage 1 finished without writing {path}")
    if not cfg.SLR.SOURCE.WEIGHTS:
        output_dir = source_output_dir(cfg)
        if not os.path.isfile(os.path.join(output_dir, "final_results.json")):
            write_final_results(output_dir, evaluate_on_target(cfg, path))
        _log_source_model(output_dir, path)
    return path


def _train_source_stage(cfg, resume: bool) -> None:
    stage = source_stage_config(cfg)
    logger.info(f"Stage 1: pretraining on {stage.DATASETS.NAMES} into {stage.OUTPUT_DIR}")
    if comm.is_main_process():
        os.makedirs(stage.OUTPUT_DIR, exist_ok=True)
    trainer = SourcePretrainTrainer(stage)
    trainer.resume_or_load(resume=resume)
    results = trainer.train()
    if not selects_source_model(cfg):  # its one evaluation was the target's, at the last epoch
        write_final_results(stage.OUTPUT_DIR, results)
    comm.synchronize()


def evaluate_on_target(cfg, weights: str):
    """Stage 1's model ``weights`` on the adaptation's DATASETS.TESTS, on every rank (the source-only
    figure of the model stage 2 starts from)."""
    target = source_stage_config(cfg).clone()
    target.defrost()
    target.DATASETS.TESTS = tuple(cfg.DATASETS.TESTS)
    target.MODEL.HEADS.NUM_CLASSES = 1  # resized from the checkpoint
    target.MODEL.BACKBONE.PRETRAIN = False
    target.freeze()
    logger.info(f"Stage 1: evaluating {weights} on {target.DATASETS.TESTS} (the source-only figure)")
    model = SourcePretrainTrainer.build_model(target)
    SLRCheckpointer(model).load(weights)
    return SourcePretrainTrainer.test(target, model)


def _log_source_model(output_dir: str, weights: str) -> None:
    """Which stage-1 epoch stage 2 starts from, and why."""
    record_path = os.path.join(output_dir, SOURCE_MODEL_RECORD)
    if os.path.basename(weights) == "model_best.pth" and os.path.isfile(record_path):
        with open(record_path) as f:
            record = json.load(f)
        evaluated = ", ".join(f"{e['epoch']}: {e['mAP']:.1f}" for e in record["evaluations"])
        logger.info(f"Stage 2 starts from {weights}: stage-1 epoch {record['epoch']} (counted from 0), the highest "
                    f"source mAP of the evaluated epochs ({evaluated}); its target figure: "
                    f"{os.path.join(output_dir, 'final_results.json')}")
    else:
        logger.info(f"Stage 2 starts from {weights}")


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
    if is_slr_adaptation(cfg) and not source_pretrained(cfg):  # stage 1 will run, PK-sampled
        batches.append(("SLR.SOURCE.IMS_PER_BATCH", cfg.SLR.SOURCE.IMS_PER_BATCH))
    needed = 2 * cfg.DATALOADER.NUM_INSTANCE
    for key, batch in batches:
        per_rank = batch // world_size
        if per_rank < needed:
            raise ValueError(
                f"{key} {batch} is the global batch: over {world_size} rank(s) each gets {per_rank} images, fewer "
                f"than two identities x DATALOADER.NUM_INSTANCE {cfg.DATALOADER.NUM_INSTANCE} = {needed}. Set "
                f"{key} to {needed * world_size} or more, or lower DATALOADER.NUM_INSTANCE, or use fewer GPUs.")
