"""Test-time images decoded once per run (``SLR.IMAGE_CACHE.BUDGET_GB``).

Every adaptation epoch passes the teacher over the same images: the target train set, the source
train set (ABMT's source term), every camera's share of them again with camera-aware clustering,
and the test set at each evaluation. The test-time transform (resize, to tensor) is deterministic
and yields integers 0..255, so each set is decoded once, kept as uint8 (a quarter of the float
tensor) in host memory or on the GPU, and every later pass slices it: the model sees the very
tensors the loader would have given it, with no file read, JPEG decode, resize or worker start.

Sets are planned in order of use (target, source, test sets) under one budget; a set that does
not fit, or whose transform does not give exact uint8 values, is read through the loader as
before. Under DDP each rank keeps only its shard: the images fast-reid's ``InferenceSampler``
gives it, which are also the ones every full pass hands it.
"""
import logging
import time
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence

import numpy as np
import psutil
import torch
from fastreid.data.build import fast_batch_collator
from fastreid.data.samplers import InferenceSampler
from fastreid.utils import comm

from .loaders import build_feature_loader

logger = logging.getLogger(__name__)

__all__ = ["CachedBatches", "DecodedImages", "ImageCache"]

# Share of the memory available at start-up that the automatic budget takes (host RAM, or the GPU's
# free memory when the cache goes there), split between a machine's ranks.
AUTO_BUDGET_SHARE = 0.5


def local_shard(size: int) -> range:
    """The images of a set of ``size`` that fast-reid's test loader gives this rank (InferenceSampler)."""
    local = list(InferenceSampler(size)) if size else []
    return range(local[0], local[-1] + 1) if local else range(0)


class DecodedImages:
    """One set's test-time images on this rank: uint8 (len(shard), C, H, W), row r is item shard[r];
    and the set's targets, camera ids and paths, collated once as fast-reid's loader collates a
    batch (numbers as a tensor, strings as a list)."""

    def __init__(self, items: Sequence, images: torch.Tensor, shard: range):
        self.items, self.images, self.shard = items, images, shard
        self.columns = {key: fast_batch_collator([item[column] for item in items])
                        for column, key in ((0, "img_paths"), (1, "targets"), (2, "camids"))}

    @classmethod
    def decode(cls, items: Sequence, transforms, batch_size: int, num_workers: int,
               device: torch.device) -> Optional["DecodedImages"]:
        """One loader pass over this rank's shard of ``items``, kept on ``device``; None when the
        transform's values are not uint8. The pass leaves torch's random generator as it found it
        (a loader draws its workers' seed from it): a seeded run draws as it would without a cache."""
        shard = local_shard(len(items))
        images, done = None, 0
        loader = build_feature_loader(items, transforms, batch_size, num_workers)
        with torch.random.fork_rng(devices=[]):
            try:
                for batch in loader:
                    block = batch["images"]
                    if not (torch.equal(block, block.round()) and block.min() >= 0 and block.max() <= 255):
                        logger.warning("The test-time transform does not give integers 0..255: its images are "
                                       "read through the loader every pass, not kept")
                        return None
                    if images is None:
                        images = torch.empty((len(shard), *block.shape[1:]), dtype=torch.uint8, device=device)
                    images[done:done + len(block)] = block.to(torch.uint8)
                    done += len(block)
            finally:
                loader.shutdown()
        if done != len(shard):
            raise RuntimeError(f"decoded {done} images for a shard of {len(shard)}")
        return cls(items, images, shard)


class CachedBatches:
    """Fast-reid's test batches of ``items[indices]`` from ``DecodedImages`` (``images`` float32 on
    ``device``, ``targets``, ``camids``, ``img_paths``), iterable any number of times.

    This rank's share is the chosen images of its shard, in order, in batches of the loader's size:
    for the whole set exactly what the loader gives it; for a subset under DDP the ranks' shares
    differ from the loader's even split, and gathered in rank order they are the subset's order.
    """

    def __init__(self, decoded: DecodedImages, indices: Optional[Sequence[int]], batch_size: int,
                 device: torch.device):
        chosen = np.arange(len(decoded.items)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.dataset = chosen  # what fast-reid's inference reads of a loader: len(loader.dataset)
        self.rows = chosen[(chosen >= decoded.shard.start) & (chosen < decoded.shard.stop)]
        self.decoded, self.batch_size, self.device = decoded, max(1, batch_size // comm.get_world_size()), device

    def __len__(self) -> int:
        return -(-len(self.rows) // self.batch_size)

    def __iter__(self):
        # A loader draws its workers' base seed from torch's generator at every pass: so do these
        # batches, so that a seeded run's later draws (augmentations, samplers' workers) are those
        # of the same run without the cache. The cache changes how fast a run is, not which run.
        torch.empty((), dtype=torch.int64).random_()
        decoded, shard = self.decoded, self.decoded.shard
        for start in range(0, len(self.rows), self.batch_size):
            rows = self.rows[start:start + self.batch_size]
            positions = rows - shard.start
            if positions[-1] - positions[0] == len(positions) - 1:  # contiguous: a view, no copy
                images = decoded.images[positions[0]:positions[-1] + 1]
            else:
                images = decoded.images[torch.from_numpy(positions).to(decoded.images.device)]
            batch = {key: column[torch.from_numpy(rows)] if isinstance(column, torch.Tensor) else
                     [column[i] for i in rows] for key, column in decoded.columns.items()}
            if images.device.type == "cpu" and self.device.type == "cpu":
                # numpy's conversion, one thread: torch's hands a few MB to its OpenMP threads, which
                # cost 7.9 ms a 128-image 64x32 batch on two busy cores against numpy's 0.2 ms
                batch["images"] = torch.from_numpy(images.numpy().astype(np.float32))
            else:
                batch["images"] = images.to(self.device, non_blocking=True).float()
            yield batch


class ImageCache:
    """The run's decoded sets: planned once under one budget, decoded on first use.

    ``batches(name, items, indices)`` is every feature pass's source: cached batches for a planned
    set, fast-reid's test loader over ``items[indices]`` otherwise.
    """

    def __init__(self, transforms, batch_size: int, num_workers: int, device, budget_bytes: Optional[int]):
        """``budget_bytes``: None for the automatic budget, 0 to keep nothing."""
        self.transforms, self.batch_size, self.num_workers = transforms, batch_size, num_workers
        self.device = torch.device(device)
        self.budget_bytes = budget_bytes
        self.planned: Dict[str, bool] = {}
        self.decoded: Dict[str, Optional[DecodedImages]] = {}
        self.placement = torch.device("cpu")
        self.seconds_decoding = 0.0

    @classmethod
    def from_config(cls, cfg, transforms) -> "ImageCache":
        budget = cfg.SLR.IMAGE_CACHE.BUDGET_GB
        if budget < -1:
            raise ValueError(f"SLR.IMAGE_CACHE.BUDGET_GB must be -1 (automatic), 0 (off) or a size in GB, got {budget}")
        return cls(transforms, cfg.TEST.IMS_PER_BATCH, cfg.DATALOADER.NUM_WORKERS, cfg.MODEL.DEVICE,
                   None if budget == -1 else budget * 2 ** 30)

    def plan(self, sets: "OrderedDict[str, int]", image_bytes: int) -> None:
        """Choose which of ``sets`` (name -> image count, in priority order) are kept, and where: on
        the run's GPU when all of them fit its share there, else in host memory. Logs the choice."""
        local_share = 1.0 / max(1, comm.get_local_size())
        sizes = OrderedDict((name, -(-count // comm.get_world_size()) * image_bytes) for name, count in sets.items())
        host = int(AUTO_BUDGET_SHARE * psutil.virtual_memory().available * local_share)
        budget, how = (host, "automatic") if self.budget_bytes is None else (self.budget_bytes, "SLR.IMAGE_CACHE.BUDGET_GB")
        self.placement = torch.device("cpu")
        if self.device.type == "cuda" and torch.cuda.is_available():
            on_device = int(AUTO_BUDGET_SHARE * torch.cuda.mem_get_info(self.device)[0] * local_share)
            if sum(sizes.values()) <= min(budget, on_device):
                self.placement, budget = self.device, min(budget, on_device)
        used, kept, skipped = 0, [], []
        for name, size in sizes.items():
            self.planned[name] = used + size <= budget
            if self.planned[name]:
                used += size
                kept.append(f"{name} ({sets[name]} images, {size / 2 ** 30:.2f} GB)")
            else:
                skipped.append(name)
        where = f"on {self.placement}" if self.placement.type == "cuda" else "in host memory"
        logger.info(f"Image cache ({how} budget {budget / 2 ** 30:.1f} GB{' per rank' if local_share < 1 else ''}, "
                    f"{where}): " + (", ".join(kept) if kept else "nothing")
                    + (f"; read through the loader: {', '.join(skipped)}" if skipped else "")
                    + ". SLR.IMAGE_CACHE.BUDGET_GB sets the budget, 0 turns the cache off")

    def batches(self, name: str, items: Sequence, indices: Optional[Sequence[int]] = None):
        """This rank's batches of ``items[indices]`` (all of ``items`` without indices; indices in
        increasing order, as a subset keeps the set's order)."""
        if indices is not None and np.any(np.diff(np.asarray(indices)) <= 0):
            raise ValueError("image indices must be strictly increasing")
        decoded = self._decoded(name, items)
        if decoded is not None:
            return CachedBatches(decoded, indices, self.batch_size, self.device)
        subset: List = list(items) if indices is None else [items[i] for i in indices]
        return build_feature_loader(subset, self.transforms, self.batch_size, self.num_workers)

    def _decoded(self, name: str, items: Sequence) -> Optional[DecodedImages]:
        if not self.planned.get(name):
            return None
        if name not in self.decoded:
            start = time.perf_counter()
            self.decoded[name] = DecodedImages.decode(items, self.transforms, self.batch_size, self.num_workers,
                                                      self.placement)
            self.seconds_decoding += time.perf_counter() - start
            if self.decoded[name] is not None:
                logger.info(f"Image cache: {name} decoded once ({len(items)} images) in "
                            f"{time.perf_counter() - start:.1f}s")
            else:
                self.planned = {key: False for key in self.planned}  # the transform is the same for every set
        elif self.decoded[name].items is not items and list(self.decoded[name].items) != list(items):
            raise ValueError(f"the image cache's {name} holds other images")
        return self.decoded[name]
