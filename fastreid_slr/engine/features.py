"""Teacher features of a whole image set, in dataset order, on every rank."""
import logging
import time

import numpy as np
import torch
from fastreid.utils import comm

from ..data.loaders import shutdown

logger = logging.getLogger(__name__)


@torch.no_grad()
def extract_features(model: torch.nn.Module, batches, num_items: int, dtype=np.float32,
                     description: str = "features") -> np.ndarray:
    """(num_items, D) eval-mode outputs of ``model`` over ``batches`` (a test loader, or the image
    cache's batches: each rank its share, in order), gathered from all ranks in dataset order.

    The model is put in eval mode (its teacher answers, for SLR) and restored afterwards.
    """
    was_training = model.training
    model.eval()
    chunks, done, start, last_log = [], 0, time.perf_counter(), time.perf_counter()
    try:
        for batch in batches:
            features = model(batch)
            if not torch.isfinite(features).all():
                raise FloatingPointError(f"non-finite {description} for images {batch['img_paths'][:3]}...")
            chunks.append(features.float().cpu().numpy().astype(dtype, copy=False))
            done += len(features)
            if time.perf_counter() - last_log > 10:
                logger.info(f"Extracting {description}: {done} images on this rank, "
                            f"{done / (time.perf_counter() - start):.0f} images/s")
                last_log = time.perf_counter()
    finally:
        model.train(was_training)
        shutdown(batches)
    local = np.concatenate(chunks) if chunks else None
    shards = comm.all_gather(local) if comm.get_world_size() > 1 else [local]
    features = np.concatenate([s for s in shards if s is not None])
    if len(features) != num_items:
        raise RuntimeError(f"gathered {len(features)} {description} for {num_items} images")
    logger.info(f"Extracted {description} of {num_items} images in {time.perf_counter() - start:.1f}s "
                f"({num_items / (time.perf_counter() - start):.0f} images/s)")
    return features
