"""Stage 1: source pretraining on ABMT's schedule, target batches forwarded for BN statistics."""
import functools
from bisect import bisect_right
from typing import Sequence

import torch
from fastreid.data import build_reid_train_loader
from fastreid.data.transforms import build_transforms

from ..data.common import NamedFileDataset
from ..data.loaders import build_identity_loader, load_train_items
from ..data.samplers import EndlessShuffle
from .base import PluginTrainer


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
    ``WARMUP_FACTOR``)."""

    @classmethod
    def build_train_loader(cls, cfg):
        transforms = build_transforms(cfg, is_train=True)
        source_set = NamedFileDataset(load_train_items(cfg.DATASETS.NAMES, combineall=cfg.DATASETS.COMBINEALL),
                                      transforms, relabel=True)
        source = build_identity_loader(cfg, source_set)
        if not cfg.SLR.PRETRAIN.TARGET_BN:
            return source
        if not cfg.SLR.PRETRAIN.TARGET_DATASETS:
            raise ValueError("SLR.PRETRAIN.TARGET_BN forwards target images in stage 1: name them in "
                             "SLR.PRETRAIN.TARGET_DATASETS, or set SLR.PRETRAIN.TARGET_BN False")
        target_set = NamedFileDataset(load_train_items(cfg.SLR.PRETRAIN.TARGET_DATASETS), transforms, relabel=True)
        target = build_reid_train_loader(cfg, train_set=target_set, sampler=EndlessShuffle(len(target_set)))
        return _SourceWithTargetBatches(source, target)

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
