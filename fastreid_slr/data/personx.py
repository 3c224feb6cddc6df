"""PersonX (Sun et al., CVPR 2019) in the layout used by UDA Re-ID benchmarks."""
import glob
import os
import re

from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.bases import ImageDataset

from .paths import require_dataset_dir

# The UDA subset of PersonX is rendered by cameras 3, 4, 8, 10, 11 and 12; they become 0..5.
_PERSONX_CAMERAS = {3: 0, 4: 1, 8: 2, 10: 3, 11: 4, 12: 5}
_NAME = re.compile(r"([-\d]+)_c(\d+)")


@DATASET_REGISTRY.register()
class PersonX(ImageDataset):
    """``<FASTREID_DATASETS>/PersonX/{bounding_box_train,query,bounding_box_test}/<pid>_c<cam>*.jpg``."""

    dataset_dir = "PersonX"
    dataset_name = "personx"

    def __init__(self, root="datasets", **kwargs):
        self.root = root
        self.dataset_dir = require_dataset_dir(
            os.path.join(root, self.dataset_dir), "PersonX",
            ["bounding_box_train", "query", "bounding_box_test"])
        train = self.process_dir(os.path.join(self.dataset_dir, "bounding_box_train"), is_train=True)
        query = self.process_dir(os.path.join(self.dataset_dir, "query"), is_train=False)
        gallery = self.process_dir(os.path.join(self.dataset_dir, "bounding_box_test"), is_train=False)
        super().__init__(train, query, gallery, **kwargs)

    def process_dir(self, dir_path, is_train=True):
        items = []
        for img_path in sorted(glob.glob(os.path.join(dir_path, "*.jpg"))):
            match = _NAME.search(os.path.basename(img_path))
            if match is None:
                continue
            pid, cam = map(int, match.groups())
            if pid == -1:
                continue  # junk images
            camid = _PERSONX_CAMERAS.get(cam, cam - 1)
            if is_train:
                pid, camid = f"{self.dataset_name}_{pid}", f"{self.dataset_name}_{camid}"
            items.append((img_path, pid, camid))
        return items
