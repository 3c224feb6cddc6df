"""Ranked gallery lists: any trained model's features of image files, and each query's nearest
gallery images, as fast-reid's evaluator ranks them (cosine distance). The building block of
``tools/query.py`` and of the demo's ranked-list picture."""
import os
from typing import List, Sequence, Tuple

import numpy as np
from torch import nn

from .data.loaders import build_feature_loader
from .engine.features import extract_features

__all__ = ["IMAGE_EXTENSIONS", "image_features", "image_paths", "nearest"]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp")


def image_paths(paths: Sequence[str]) -> List[str]:
    """Image files, each path a file or a folder (every image below it, sorted), in the order given."""
    found = []
    for path in paths:
        if os.path.isdir(path):
            found.extend(sorted(os.path.join(folder, name) for folder, _, names in os.walk(path)
                                for name in names if name.lower().endswith(IMAGE_EXTENSIONS)))
        elif os.path.isfile(path):
            found.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such image file or folder")
    return found


def image_features(model: nn.Module, paths: Sequence[str], transforms, batch_size: int,
                   num_workers: int = 0) -> np.ndarray:
    """(N, D) eval features of image files, read and transformed as fast-reid's test loader does
    (``build_transforms(cfg, is_train=False)``)."""
    items = [(path, 0, 0) for path in paths]  # identity and camera: unknown, and unused here
    return extract_features(model, build_feature_loader(items, transforms, batch_size, num_workers), len(items),
                            description="image features")


def nearest(query: np.ndarray, gallery: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` nearest gallery features, nearest first: indices (Q, k) and cosine
    distances ``1 - cos`` (Q, k), as fast-reid's evaluator ranks (``TEST.METRIC cosine``)."""
    query = query / np.linalg.norm(query, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
    distances = 1.0 - query @ gallery.T
    order = np.argsort(distances, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(distances, order, axis=1)
