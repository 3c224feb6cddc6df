"""myproj's dataset, in Market-1501's layout under $FASTREID_DATASETS/myproj_toys."""
import glob
import os
import re

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

_NAME = re.compile(r"(\d+)_c(\d+)")


@DATASET_REGISTRY.register()
class MyProjToys(ImageDataset):
    dataset_name = "myproj_toys"

    def __init__(self, root="datasets", **kwargs):
        self.dataset_dir = os.path.join(root, self.dataset_name)
        train = self._read("bounding_box_train", is_train=True)
        query = self._read("query", is_train=False)
        gallery = self._read("bounding_box_test", is_train=False)
        super().__init__(train, query, gallery, **kwargs)

    def _read(self, split, is_train):
        items = []
        for path in sorted(glob.glob(os.path.join(self.dataset_dir, split, "*.png"))):
            pid, camid = (int(x) for x in _NAME.match(os.path.basename(path)).groups())
            if is_train:
                items.append((path, f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{camid}"))
            else:
                items.append((path, pid, camid))
        return items
