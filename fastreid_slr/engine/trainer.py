"""Trainers: SLR adaptation (stage 2) and source pretraining (stage 1), thin DefaultTrainer subclasses.

fast-reid's DefaultTrainer builds one training set from ``DATASETS.NAMES`` at construction and
keeps it. Adaptation swaps it every epoch: the pseudo-label hook calls ``set_train_labels``, which
builds a new loader over the kept samples, and resets the optimiser in place (a fresh Adam, as
ABMT) so every object holding it (LR scheduler hook, checkpointer) stays valid.
"""
import functools
import itertools
import logging
import os
from bisect import bisect_right
from typing import Sequence

import numpy as np
import torch
from fastreid.data import build_reid_train_loader
from fastreid.data.common import CommDataset
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.transforms import build_transforms
from fastreid.engine import DefaultTrainer
from fastreid.utils import comm

from ..compat import distributed_data_parallel
from ..data.paths import datasets_root
from ..data.samplers import CrossCameraIdentitySampler
from .checkpoints import CheckpointRetention
from .features import build_feature_loader, extract_features
from .hooks import PseudoLabelHook, TeacherEMAHook, unwrap
from .pseudo_labels import PseudoLabeler

logger = logging.getLogger(__name__)


def load_train_items(dataset_names, **kwargs):
    """Train items ``(path, "<name>_<pid>", "<name>_<camid>")`` of the named datasets."""
    items = []
    for name in dataset_names:
        items.extend(DATASET_REGISTRY.get(name)(root=datasets_root(), **kwargs).train)
    return items


def build_identity_loader(cfg, train_set):
    """fast-reid's train loader over ``train_set``; ``DATALOADER.SAMPLER_TRAIN`` names one of
    fast-reid's samplers or ours, ``CrossCameraIdentitySampler`` (ABMT's cross-camera PK batches)."""
    sampler = None
    if cfg.DATALOADER.SAMPLER_TRAIN == CrossCameraIdentitySampler.__name__:
        sampler = CrossCameraIdentitySampler(train_set.img_items, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(),
                                             cfg.DATALOADER.NUM_INSTANCE)
    return build_reid_train_loader(cfg, train_set=train_set, sampler=sampler)


class PseudoLabelledDataset(CommDataset):
    """Kept target images with their pseudo-label, and its soft label row when training on soft
    labels (module (h) "none")."""

    def __init__(self, items, labels, transform, soft_labels=None):
        kept = np.flatnonzero(labels >= 0)
        super().__init__([(items[i][0], int(labels[i]), items[i][2]) for i in kept], transform, relabel=False)
        self.soft_labels = None if soft_labels is None else soft_labels[kept].tocsr()

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        if self.soft_labels is not None:
            sample["targets_soft"] = torch.from_numpy(self.soft_labels[index].toarray()[0].astype(np.float32))
        return sample


class _AwaitingPseudoLabels:
    """Stands in for the train loader until the first clustering replaces it (before epoch 0)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __iter__(self):
        yield from ()
        raise RuntimeError("training started before the first pseudo-labels were computed")

    def shutdown(self):
        pass


class SLRTrainer(CheckpointRetention, DefaultTrainer):
    """Stage 2: mean-teacher training on per-epoch refined pseudo-labels of ``DATASETS.NAMES``."""

    def __init__(self, cfg):
        self.target_items = load_train_items(cfg.DATASETS.NAMES)
        super().__init__(cfg)
        self.checkpointer.checkpointables["pseudo_labels"] = self.pseudo_label_hook

    def build_train_loader(self, cfg):
        """An instance method (DefaultTrainer calls it on ``self``): reuses the target items."""
        return _AwaitingPseudoLabels(CommDataset(self.target_items, relabel=True))

    def build_hooks(self):
        cfg = self.cfg
        # An adaptation epoch is SLR.ITERS_PER_EPOCH iterations, not len(train set) // batch; set
        # it before fast-reid's hooks and writers read it (DefaultTrainer.__init__ calls us last).
        self.iters_per_epoch = cfg.SLR.ITERS_PER_EPOCH
        self.max_iter = self.max_epoch * self.iters_per_epoch
        _, true_ids = np.unique([pid for _, pid, _ in self.target_items], return_inverse=True)
        self.pseudo_label_hook = PseudoLabelHook(
            PseudoLabeler.from_config(cfg), num_items=len(self.target_items), every=cfg.SLR.CLUSTER_EVERY,
            # fast-reid's identity sampler fills the global batch (all ranks) from one pass over the
            # identities; with fewer than IMS_PER_BATCH / NUM_INSTANCE clusters it can loop forever.
            min_clusters=cfg.SOLVER.IMS_PER_BATCH // cfg.DATALOADER.NUM_INSTANCE,
            true_ids=true_ids,
            record_path=os.path.join(cfg.OUTPUT_DIR, "slr_epochs.jsonl") if comm.is_main_process() else None)
        hooks = super().build_hooks()
        # Pseudo-labels first (before_epoch); the record after fast-reid's EvalHook (after_epoch).
        eval_at = next(i for i, h in enumerate(hooks) if type(h).__name__ == "EvalHook")
        hooks.insert(eval_at + 1, self.pseudo_label_hook)
        hooks.insert(0, TeacherEMAHook())
        return hooks

    def resume_or_load(self, resume=True):
        """Loading may resize the classifiers (the checkpoint's cluster count): rebuild the
        optimiser, and under DDP the wrapper, over the loaded parameters."""
        super().resume_or_load(resume=resume)
        self._reset_optimizer(unwrap(self.model))

    # ------------------------------------------------------------------ called by PseudoLabelHook
    def extract_target_features(self) -> np.ndarray:
        loader = build_feature_loader(self.target_items, build_transforms(self.cfg, is_train=False),
                                      self.cfg.TEST.IMS_PER_BATCH, self.cfg.DATALOADER.NUM_WORKERS)
        return extract_features(unwrap(self.model), loader, len(self.target_items),
                                description="teacher features of the target train set")

    def extract_source_features(self) -> np.ndarray:
        """Teacher features of the source train set (ABMT's source term; one more feature pass)."""
        if not hasattr(self, "source_items"):
            self.source_items = load_train_items(self.cfg.SLR.SOURCE.DATASETS)
        loader = build_feature_loader(self.source_items, build_transforms(self.cfg, is_train=False),
                                      self.cfg.TEST.IMS_PER_BATCH, self.cfg.DATALOADER.NUM_WORKERS)
        return extract_features(unwrap(self.model), loader, len(self.source_items),
                                description="teacher features of the source train set")

    def train_labels_missing(self) -> bool:
        return isinstance(self._trainer.data_loader, _AwaitingPseudoLabels)

    def set_train_labels(self, labels, soft_labels=None, centroids=None):
        """Train on ``labels`` (-1 dropped) from now on: new loader; with ``centroids``, classifiers
        resized and initialised from them; a fresh optimiser over the new parameters."""
        model = unwrap(self.model)
        if centroids is not None:
            model.reset_classifiers(len(centroids), centroids.to(model.device))
        # fast-reid's samplers draw from numpy's global generator in the loader's prefetch thread:
        # stop the old one before the new sampler draws its seed, so a SEEDed run repeats.
        self._trainer.data_loader.shutdown()
        dataset = PseudoLabelledDataset(self.target_items, labels, build_transforms(self.cfg, is_train=True),
                                        soft_labels)
        loader = build_identity_loader(self.cfg, dataset)
        self._trainer.data_loader = loader
        self._trainer._data_loader_iter = iter(loader)
        self._reset_optimizer(model)

    def _reset_optimizer(self, model):
        fresh, _ = self.build_optimizer(self.cfg, model)
        optimizer = self._trainer.optimizer
        optimizer.state.clear()
        optimizer.param_groups.clear()
        for group in fresh.param_groups:
            optimizer.add_param_group(group)
        if comm.get_world_size() > 1:  # DDP must see the new classifier parameters
            self._trainer.model = distributed_data_parallel(
                model, device_ids=[comm.get_local_rank()], broadcast_buffers=False)


class EndlessShuffle(torch.utils.data.Sampler):
    """Endless reshuffles of ``range(size)``, this rank's share, from a private generator.

    fast-reid's TrainingSampler draws from numpy's global generator in its loader's prefetch
    thread; beside the source loader's identity sampler doing the same in another thread, the
    two interleave by timing and a SEEDed stage 1 did not repeat.
    """

    def __init__(self, size: int):
        self.size = size
        self.seed = comm.shared_random_seed()  # the same on every rank

    def __iter__(self):
        return itertools.islice(self._endless(), comm.get_rank(), None, comm.get_world_size())

    def _endless(self):
        rng = np.random.default_rng(self.seed)
        while True:
            yield from rng.permutation(self.size).tolist()


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


class SourcePretrainTrainer(CheckpointRetention, DefaultTrainer):
    """Stage 1: supervised training on the labelled source (``DATASETS.NAMES``), optionally with
    target batches for BN adaptation (``SLR.PRETRAIN.TARGET_BN``, targets from ``DATASETS.TESTS``),
    on ABMT's schedule (``SLR.SOURCE.STEPS`` / ``WARMUP_EPOCHS`` / ``WARMUP_FACTOR``)."""

    @classmethod
    def build_train_loader(cls, cfg):
        source_set = CommDataset(load_train_items(cfg.DATASETS.NAMES, combineall=cfg.DATASETS.COMBINEALL),
                                 build_transforms(cfg, is_train=True), relabel=True)
        source = build_identity_loader(cfg, source_set)
        if not cfg.SLR.PRETRAIN.TARGET_BN:
            return source
        target_items = load_train_items(cfg.DATASETS.TESTS)
        target_set = CommDataset(target_items, build_transforms(cfg, is_train=True), relabel=True)
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
