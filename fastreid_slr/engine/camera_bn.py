"""Teacher features with batch-norm statistics of each camera's own images (camera-aware clustering).

BN layers normalise by statistics of the whole target set, so what one camera adds to all of its
images (light, colour cast, blur, backdrop) survives into the features, layer after layer.
Re-estimating every BN layer's statistics on one camera's images before extracting that camera's
features removes it at each layer, not only at the embedding: a camera-specific BN (as in
camera-based batch normalisation for re-ID) applied to the frozen teacher, for the clustering only.
"""
import copy
import logging
import time
from typing import Callable, Dict

import numpy as np
import torch

from slr_refine import CAMERA_NORMALIZATIONS

from .adabn import reestimate_batch_norm
from .features import extract_features

logger = logging.getLogger(__name__)

# SLR.CLUSTER.CAMERA_AWARE: slr_refine's normalisations of the embedding, or "bn" (this module).
CAMERA_AWARE_METHODS = CAMERA_NORMALIZATIONS + ("bn",)
# Images of a camera (evenly spaced) that estimate its BN statistics: means and variances of a few
# hundred images are as good as of thousands, and the estimation pass then costs a fraction of
# the extraction pass that follows it (every camera's images are still all extracted).
STATISTICS_IMAGES_PER_CAMERA = 256


def camera_indices(items) -> np.ndarray:
    """0..C-1 camera index of each ``(path, pid, camid)`` item, in item order."""
    return np.unique([str(camid) for _, _, camid in items], return_inverse=True)[1]


@torch.no_grad()
def extract_features_per_camera_bn(model: torch.nn.Module, cameras: np.ndarray, batches_of: Callable,
                                   seconds: Dict[str, float], description: str = "features") -> np.ndarray:
    """(N, D) eval features of N images with camera indices ``cameras``, each camera's images
    through a copy of ``model`` whose BN statistics were re-estimated on that camera's images alone
    (at most ``STATISTICS_IMAGES_PER_CAMERA`` of them). ``batches_of(indices)`` gives the batches of
    those images (``data.image_cache.ImageCache.batches``); ``seconds[f"camera_{c}"]`` gets each
    camera's two passes. ``model`` itself is unchanged."""
    features = None
    for camera in range(cameras.max() + 1):
        start = time.perf_counter()
        rows = np.flatnonzero(cameras == camera)
        spacing = max(1, -(-len(rows) // STATISTICS_IMAGES_PER_CAMERA))
        twin = copy.deepcopy(model)
        reestimate_batch_norm(twin, batches_of(rows[::spacing]))
        block = extract_features(twin, batches_of(rows), len(rows), description=f"{description}, camera {camera} BN")
        del twin
        if features is None:
            features = np.empty((len(cameras), block.shape[1]), dtype=block.dtype)
        features[rows] = block
        seconds[f"camera_{camera}"] = time.perf_counter() - start
    logger.info(f"{description}: BN statistics of each of {cameras.max() + 1} cameras")
    return features
