"""The plugin's image sets: fast-reid's ``CommDataset`` that names the file it cannot read, and the
pseudo-labelled target set of one adaptation epoch."""
import numpy as np
import torch
from fastreid.data.common import CommDataset

__all__ = ["NamedFileDataset", "PseudoLabelledDataset"]


class NamedFileDataset(CommDataset):
    """``CommDataset`` whose unreadable image raises an ``OSError`` naming the file: PIL's own
    (``cannot identify image file <_io.BufferedReader ...>``) does not say which of a million
    images is broken. Every loader the plugin builds (training, feature extraction, evaluation)
    reads through it."""

    def __getitem__(self, index):
        try:
            return super().__getitem__(index)
        except OSError as exc:  # PIL: unidentified, truncated or missing image files
            raise OSError(f"Cannot read image {self.img_items[index][0]}: {type(exc).__name__}: {exc}") from exc


class PseudoLabelledDataset(NamedFileDataset):
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
