"""Label bookkeeping shared by the refinement steps."""
import numpy as np

__all__ = ["relabel_contiguous"]


def relabel_contiguous(labels) -> np.ndarray:
    """Map cluster ids to 0..K-1 in ascending order of the old ids; -1 (noise) stays -1.

    Classifiers are sized K, so an id that no sample carries any more must not leave a gap.
    """
    labels = np.asarray(labels, dtype=np.int64)
    relabelled = np.full(labels.shape, -1, dtype=np.int64)
    kept = labels >= 0
    _, relabelled[kept] = np.unique(labels[kept], return_inverse=True)
    return relabelled
