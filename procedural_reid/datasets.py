"""The registered datasets ``ProceduralA`` and ``ProceduralB``.

Two domains with different people and different camera styles (A: sunny, sharp, saturated;
B: dim, cool, blurred, noisy), so that a model trained on one loses accuracy on the other, as
Duke -> Market does, at a size that trains on a CPU. Images are rendered once, deterministically
from a ``ProceduralSpec``, into ``<root>/procedural/<domain>_<hash>/`` in Market-1501's layout and
naming; the registered datasets read them as fast-reid reads Market-1501.

Ground truth: train tuples carry the true identity (as Market's do) and ``train_true_pids`` holds
it as ints aligned with ``train``. They exist to score pseudo-labels; the SLR pipeline never trains
on the target domain's identities, it replaces them with cluster labels.
"""
import glob
import os
import re

import numpy as np
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from .generate import ensure_generated
from .spec import ProceduralSpec, get_default_spec

__all__ = ["ProceduralA", "ProceduralB"]

_NAME = re.compile(r"(\d+)_c(\d+)s1_")


class _ProceduralDomain(ImageDataset):
    """One domain; subclasses set ``domain`` and ``dataset_name`` and are registered."""

    domain = ""
    dataset_name = ""
    _junk_pids = [0]  # distractors: kept in the gallery, left out by ``combineall``

    def __init__(self, root="datasets", spec: ProceduralSpec = None, **kwargs):
        self.root = root
        self.spec = get_default_spec() if spec is None else spec
        self.dataset_dir = ensure_generated(root, self.spec, self.domain, type(self).__name__)
        train = self._read("bounding_box_train", is_train=True)
        query = self._read("query", is_train=False)
        gallery = self._read("bounding_box_test", is_train=False)
        super().__init__(train, query, gallery, **kwargs)
        # Labels look like "<dataset_name>_<pid>" (or "..._test_<pid>" with combineall).
        self.train_true_pids = np.array([int(pid.rsplit("_", 1)[1]) for _, pid, _ in self.train],
                                        dtype=np.int64)

    def _read(self, split: str, is_train: bool):
        items = []
        for path in sorted(glob.glob(os.path.join(self.dataset_dir, split, "*.png"))):
            pid, cam = map(int, _NAME.match(os.path.basename(path)).groups())
            camid = cam - 1
            if is_train:
                items.append((path, f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{camid}"))
            else:
                items.append((path, pid, camid))
        return items


@DATASET_REGISTRY.register()
class ProceduralA(_ProceduralDomain):
    """Domain A: sunny outdoor cameras, bright clothes, sharp and clean."""

    domain = "A"
    dataset_name = "procedural_a"


@DATASET_REGISTRY.register()
class ProceduralB(_ProceduralDomain):
    """Domain B: dim, cool-cast, blurred and noisy cameras, dark winter clothes."""

    domain = "B"
    dataset_name = "procedural_b"
