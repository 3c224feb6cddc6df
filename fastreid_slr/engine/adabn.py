"""AdaBN, the control adaptation is measured against: the source model with its batch-norm
statistics re-estimated on the target's training images and no weight changed.

Part of what any target training gains comes from BN statistics alone; only the gain above this
control is what learning from pseudo-labels adds (``tools/train_net.py --adabn``).
"""
import logging

import torch
import torch.distributed as dist
from torch.nn.modules.batchnorm import _BatchNorm

from fastreid.data.transforms import build_transforms
from fastreid.utils import comm

from ..data.loaders import build_feature_loader, load_train_items, shutdown

logger = logging.getLogger("fastreid_slr")

__all__ = ["reestimate_batch_norm", "target_train_loader"]


def target_train_loader(cfg):
    """The target's training images (``DATASETS.NAMES``) under test transforms: no labels used."""
    items = load_train_items(cfg.DATASETS.NAMES)
    return build_feature_loader(items, build_transforms(cfg, is_train=False), cfg.TEST.IMS_PER_BATCH,
                                cfg.DATALOADER.NUM_WORKERS)


@torch.no_grad()
def reestimate_batch_norm(model: torch.nn.Module, batches) -> int:
    """Replace the running statistics of the BN layers that ``model``'s eval forward uses by their
    average over one pass of ``batches`` (a loader, or the image cache's batches); returns the
    number of images seen (on this rank).

    The model stays in eval mode and only its BN layers see batches in train mode, so any
    meta-architecture works (SLR's eval forward is its teacher: the student's layers keep theirs).
    Under DDP each rank sees its share (possibly none); the statistics are the average over every
    rank's batches, as if one process had seen them all.
    """
    norms = [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]
    saved = [(m.momentum, {k: v.clone() for k, v in m.state_dict().items()}) for m in norms]
    model.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the pass, not an exponential one
        m.train()
    seen = 0
    try:
        for batch in batches:
            model(batch)
            seen += len(batch["images"])
    finally:
        for m, (momentum, _) in zip(norms, saved):
            m.momentum = momentum
            m.eval()
        shutdown(batches)
    if comm.get_world_size() > 1:
        _average_over_ranks(norms)
    for m, (_, state) in zip(norms, saved):
        if int(m.num_batches_tracked) == 0:  # not on the eval path: keep what it had
            m.load_state_dict(state)
    logger.info(f"AdaBN: BN statistics re-estimated on {seen} target training images"
                + (f" (this rank's share; {comm.get_world_size()} ranks)" if comm.get_world_size() > 1 else ""))
    return seen


def _average_over_ranks(norms) -> None:
    """Every rank's cumulative averages merged, weighted by its batches; every rank takes part for
    every layer, whatever it saw (a collective per layer, in the same order everywhere)."""
    for m in norms:
        batches = m.num_batches_tracked.to(m.running_mean.device, torch.float64).reshape(1)
        dist.all_reduce(batches)
        for stats in (m.running_mean, m.running_var):
            stats.mul_(float(m.num_batches_tracked))
            dist.all_reduce(stats)
            stats.div_(max(float(batches), 1.0))
        m.num_batches_tracked.fill_(int(batches))
