"""MSMT17 as UDA methods train on it: fast-reid's ``MSMT17`` with list_val.txt's images in the
training set.

fast-reid's class trains on list_train.txt alone (30,248 images); ABMT (like MMT and SpCL) trains
on list_train.txt + list_val.txt, 32,621 images of 1,041 identities. fast-reid's only way to add
the val images, ``DATASETS.COMBINEALL``, also adds the query and gallery images: not for UDA.
Query and gallery are fast-reid's, so a config tests on ``MSMT17`` itself.
"""
from fastreid.data.datasets import DATASET_REGISTRY
from fastreid.data.datasets.msmt17 import MSMT17


@DATASET_REGISTRY.register()
class MSMT17TrainVal(MSMT17):
    """fast-reid's ``MSMT17`` (the same folders, MSMT17_V1 or MSMT17_V2) whose ``train`` also holds
    the images of list_val.txt, labelled as fast-reid labels training images."""

    def __init__(self, root="datasets", **kwargs):
        if kwargs.get("combineall"):
            raise ValueError("MSMT17TrainVal already holds train + val; COMBINEALL would add the test images too")
        super().__init__(root, **kwargs)
        self._train = self.train + self.process_dir(self.train_dir, self.list_val_path)
        if self.mode == "train":
            self.data = self._train
