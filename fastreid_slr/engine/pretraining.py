"""Stage 1: source pretraining on ABMT's schedule, target batches forwarded for BN statistics,
epochs of ABMT's length, and ABMT's choice of the model stage 2 starts from."""
import functools
import json
import logging
import math
import os
from bisect import bisect_right
from typing import Optional, Sequence

import torch
from fastreid.data import build_reid_train_loader
from fastreid.data.transforms import build_transforms
from fastreid.engine import hooks as fastreid_hooks
from fastreid.engine.train_loop import HookBase
from fastreid.utils import comm

from ..data.common import NamedFileDataset
from ..data.loaders import build_identity_loader, load_train_items
from ..data.samplers import EndlessShuffle
from ..utils import atomic_write, mean_map, numeric_results
from .plugin_trainer import PluginTrainer

logger = logging.getLogger(__name__)

SOURCE_MODEL_RECORD = "source_model.json"


class _SourceWithTargetBatches:
    """Source batches with a target batch's images attached (``target_images``): stage 1 forwards
    them without loss so that BN statistics move toward the target domain (ABMT)."""

    def __init__(self, source_loader, target_loader):
        self.source_loader, self.target_loader = source_loader, target_loader
        self.dataset = source_loader.dataset

    def __iter__(self):
        for source, target in zip(self.source_loader, self.target_loader):
            yield dict(source, target_images=target["images"])

    def shutdown(self):
        self.source_loader.shutdown()
        self.target_loader.shutdown()


class _StepsPerEpoch:
    """``loader`` with epochs of ``steps`` batches (ABMT's ``--iters``). fast-reid sizes an epoch
    once, at construction, as ``len(loader.dataset) // SOLVER.IMS_PER_BATCH`` (a pass over the
    source set); the loader's sampler is endless, so declaring ``steps × batch`` images is all an
    epoch of ``steps`` needs."""

    class _Declared:
        """What fast-reid reads of a train set: its class count and its length."""

        def __init__(self, dataset, images: int):
            self.num_classes, self.images = dataset.num_classes, images

        def __len__(self):
            return self.images

    def __init__(self, loader, steps: int, batch_size: int):
        self.loader = loader
        self.dataset = self._Declared(loader.dataset, steps * batch_size)

    def __iter__(self):
        return iter(self.loader)

    def shutdown(self):
        self.loader.shutdown()


class SourceModelSelection(HookBase):
    """Keeps ``model_best.pth``: the evaluated epoch of highest mAP on stage 1's test sets (the
    source's, with their labels: ABMT's choice of the model it adapts from), and the record
    ``source_model.json`` (every evaluation, the chosen epoch). Placed after fast-reid's EvalHook;
    its state is checkpointed, so a resumed stage 1 still knows the epochs before. Ties keep the
    earlier epoch, as ABMT's ``mAP > best_mAP``. Epochs count from 0, as fast-reid's do."""

    def __init__(self, record_path: Optional[str]):
        self.record_path = record_path
        self.evaluations = []  # [{"epoch", "mAP", "Rank-1"}] in evaluation order
        self.best: Optional[dict] = None
        self._seen = None

    def after_epoch(self):
        self._consider()

    def after_train(self):  # fast-reid's EvalHook evaluates the last epoch here when it is off-period
        self._consider()

    def _consider(self):
        results = getattr(self.trainer, "_last_eval_results", None)  # set by DefaultTrainer's EvalHook
        if not comm.is_main_process() or not results or results is self._seen:
            return
        self._seen = results
        flat = numeric_results(results)
        evaluation = {"epoch": int(self.trainer.epoch), "mAP": mean_map(flat), "Rank-1": flat.get("Rank-1")}
        self.evaluations.append(evaluation)
        if self.best is None or evaluation["mAP"] > self.best["mAP"]:
            self.best = evaluation
            self.trainer.checkpointer.save("model_best", epoch=evaluation["epoch"])
        logger.info(f"Stage 1, epoch {evaluation['epoch']}: source mAP {evaluation['mAP']:.2f}; best so far epoch "
                    f"{self.best['epoch']} ({self.best['mAP']:.2f}), kept as model_best.pth")
        if self.record_path:
            atomic_write(self.record_path, lambda f: json.dump(self.record(), f, indent=1), mode="w")

    def record(self) -> dict:
        return {"weights": "model_best.pth", "chosen_by": "highest mAP on the source test set(s), source labels",
                "epoch": self.best["epoch"], "mAP": self.best["mAP"], "evaluations": self.evaluations}

    def state_dict(self) -> dict:
        return {"evaluations": self.evaluations, "best": self.best}

    def load_state_dict(self, state: dict):
        self.evaluations, self.best = list(state["evaluations"]), state["best"]


def source_lr_factor(epoch: int, *, steps: Sequence[int], gamma: float, warmup_epochs: int,
                     warmup_factor: float) -> float:
    """Stage 1's learning-rate factor for ``epoch`` (ABMT): linear warm-up from ``warmup_factor``
    over ``warmup_epochs``, times ``gamma`` for every step in ``steps`` (epochs from the start of
    training) already reached."""
    warm = 1.0
    if epoch < warmup_epochs:
        progress = epoch / warmup_epochs
        warm = warmup_factor * (1 - progress) + progress
    return warm * gamma ** bisect_right(steps, epoch)


class SourcePretrainTrainer(PluginTrainer):
    """Stage 1: supervised training on the labelled source (``DATASETS.NAMES``), with batches of the
    train images of ``SLR.PRETRAIN.TARGET_DATASETS`` forwarded for BN adaptation (when
    ``SLR.PRETRAIN.TARGET_BN``), on ABMT's schedule (``SLR.SOURCE.STEPS`` / ``WARMUP_EPOCHS`` /
    ``WARMUP_FACTOR``), epochs of ``SLR.SOURCE.ITERS_PER_EPOCH`` steps (0: a pass over the source
    set) and, with ``SLR.SOURCE.EVAL_PERIOD``, ``model_best.pth`` kept by ``SourceModelSelection``."""

    def __init__(self, cfg):
        super().__init__(cfg)
        if self.source_model_selection is not None:
            self.checkpointer.checkpointables["source_model"] = self.source_model_selection

    @classmethod
    def build_train_loader(cls, cfg):
        transforms = build_transforms(cfg, is_train=True)
        source_set = NamedFileDataset(load_train_items(cfg.DATASETS.NAMES, combineall=cfg.DATASETS.COMBINEALL),
                                      transforms, relabel=True)
        loader = build_identity_loader(cfg, source_set)
        if cfg.SLR.PRETRAIN.TARGET_BN:
            if not cfg.SLR.PRETRAIN.TARGET_DATASETS:
                raise ValueError("SLR.PRETRAIN.TARGET_BN forwards target images in stage 1: name them in "
                                 "SLR.PRETRAIN.TARGET_DATASETS, or set SLR.PRETRAIN.TARGET_BN False")
            target_set = NamedFileDataset(load_train_items(cfg.SLR.PRETRAIN.TARGET_DATASETS), transforms, relabel=True)
            target = build_reid_train_loader(cfg, train_set=target_set, sampler=EndlessShuffle(len(target_set)))
            loader = _SourceWithTargetBatches(loader, target)
        steps = cfg.SLR.SOURCE.ITERS_PER_EPOCH
        if steps < 0:
            raise ValueError(f"SLR.SOURCE.ITERS_PER_EPOCH must be >= 0 (0: a pass over the source set), got {steps}")
        return _StepsPerEpoch(loader, steps, cfg.SOLVER.IMS_PER_BATCH) if steps else loader

    def build_hooks(self):
        """With SLR.SOURCE.EVAL_PERIOD, ``SourceModelSelection`` right after the evaluation, and
        fast-reid's own model_best.pth (best by its "metric", (mAP + Rank-1) / 2) off."""
        hooks = super().build_hooks()
        self.source_model_selection = None
        if self.cfg.SLR.SOURCE.EVAL_PERIOD > 0:
            record = os.path.join(self.cfg.OUTPUT_DIR, SOURCE_MODEL_RECORD) if comm.is_main_process() else None
            self.source_model_selection = SourceModelSelection(record)
            eval_at = next(i for i, h in enumerate(hooks) if isinstance(h, fastreid_hooks.EvalHook))
            hooks.insert(eval_at + 1, self.source_model_selection)
            for hook in hooks:
                if isinstance(hook, fastreid_hooks.PeriodicCheckpointer):
                    hook.best_metric = math.inf  # it saves model_best only above best_metric: never
        return hooks

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer, iters_per_epoch):
        """One step per epoch from epoch 0: fast-reid's own schedule steps its MultiStepLR only
        after its warm-up, so milestones counted from the start of training came late (with a
        10-epoch warm-up, ×0.1 at 50 instead of 40, and 70 never)."""
        source = cfg.SLR.SOURCE
        if list(source.STEPS) != sorted(source.STEPS) or not 0 < source.WARMUP_FACTOR <= 1:
            raise ValueError(f"SLR.SOURCE.STEPS must ascend and SLR.SOURCE.WARMUP_FACTOR lie in (0, 1], got "
                             f"{list(source.STEPS)} and {source.WARMUP_FACTOR}")
        factor = functools.partial(source_lr_factor, steps=tuple(source.STEPS), gamma=cfg.SOLVER.GAMMA,
                                   warmup_epochs=source.WARMUP_EPOCHS, warmup_factor=source.WARMUP_FACTOR)
        return {"lr_sched": torch.optim.lr_scheduler.LambdaLR(optimizer, factor)}
