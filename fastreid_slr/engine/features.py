"""Teacher features of a whole image set, in dataset order, on every rank."""
import logging
import time

import numpy as np
import torch
from fastreid.data import build_reid_test_loader
from fastreid.utils import comm

from ..data.common import NamedFileDataset

logger = logging.getLogger(__name__)


def build_feature_loader(items, transforms, batch_size: int, num_workers: int = 0):
    """Test-time loader over ``items``; fast-reid's InferenceSampler gives each rank one contiguous
    shard, so concatenating the shards in rank order restores dataset order (no padding)."""
    loader, _ = build_reid_test_loader(test_set=NamedFileDataset(items, transforms, relabel=False),
                                       test_batch_size=batch_size, num_query=0, num_workers=num_workers)
    return loader


@torch.no_grad()
def extract_features(model: torch.nn.Module, loader, num_items: int, dtype=np.float32,
                     description: str = "features") -> np.ndarray:
    """(num_items, D) eval-mode outputs of ``model``, gathered from all ranks in dataset order.

    The model is put in eval mode (its teacher answers, for SLR) and restored afterwards.
    """
    was_training = model.training
    model.eval()
    chunks, done, start, last_log = [], 0, time.perf_counter(), time.perf_counter()
    try:
        for batch in loader:
            features = model(batch)
            if not torch.isfinite(features).all():
                raise FloatingPointError(f"non-finite {description} for images {batch['img_paths'][:3]}...")
            chunks.append(features.float().cpu().numpy().astype(dtype, copy=False))
            done += len(features)
            if time.perf_counter() - last_log > 10:
                logger.info(f"Extracting {description}: {done}/{len(loader.batch_sampler.sampler)} on this "
                            f"rank, {done / (time.perf_counter() - start):.0f} images/s")
                last_log = time.perf_counter()
    finally:
        model.train(was_training)
        loader.shutdown()
    local = np.concatenate(chunks) if chunks else np.zeros((0, 0), dtype=dtype)
    shards = comm.all_gather(local) if comm.get_world_size() > 1 else [local]
    features = np.concatenate([s for s in shards if len(s)])
    if len(features) != num_items:
        raise RuntimeError(f"gathered {len(features)} {description} for {num_items} images")
    logger.info(f"Extracted {description} of {num_items} images in {time.perf_counter() - start:.1f}s")
    return features
