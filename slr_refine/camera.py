"""Camera-aware features for the clustering distance, label-free: camera ids are metadata.

A camera-blind clustering of re-ID features groups different people seen by one camera (same
backdrop, light, blur) before it groups one person across cameras, and training on such labels
teaches the network cameras. Removing what each camera adds to every one of its images, before
the distance and nowhere else, lets the nearest neighbours be people again.
"""
import numpy as np

CAMERA_NORMALIZATIONS = ("none", "centre", "standardize")


def camera_normalized(features: np.ndarray, cameras, method: str = "centre", eps: float = 1e-6) -> np.ndarray:
    """``features`` (N, D) with each camera's statistics removed, rows L2-normalised again.

    ``"centre"`` subtracts each camera's mean feature; ``"standardize"`` also divides every
    dimension by its spread within the camera (a per-camera batch norm of the embedding, as if
    the network's last BN had been estimated on that camera alone). ``"none"`` returns the
    features unchanged. A camera with a single image keeps its image's direction (centring
    would zero it).
    """
    if method not in CAMERA_NORMALIZATIONS:
        raise ValueError(f"camera normalisation must be one of {CAMERA_NORMALIZATIONS}, got {method!r}")
    features = np.asarray(features, dtype=np.float32)
    if method == "none":
        return features
    cameras = np.asarray(cameras)
    if cameras.shape != (len(features),):
        raise ValueError(f"need one camera id per feature row: {cameras.shape} ids for {len(features)} rows")
    out = np.empty_like(features)
    for camera in np.unique(cameras):
        rows = cameras == camera
        block = features[rows]
        if len(block) == 1:
            out[rows] = block
            continue
        block = block - block.mean(axis=0)
        if method == "standardize":
            block = block / (block.std(axis=0) + eps)
        out[rows] = block
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, eps)
