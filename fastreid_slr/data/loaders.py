"""Train items and identity loaders of the plugin's trainers."""
from fastreid.data import build_reid_train_loader
from fastreid.utils import comm

from .paths import build_dataset
from .samplers import CrossCameraIdentitySampler

__all__ = ["build_identity_loader", "load_train_items"]


def load_train_items(dataset_names, **kwargs):
    """Train items ``(path, "<name>_<pid>", "<name>_<camid>")`` of the named datasets."""
    items = []
    for name in dataset_names:
        items.extend(build_dataset(name, **kwargs).train)
    return items


def build_identity_loader(cfg, train_set):
    """fast-reid's train loader over ``train_set``; ``DATALOADER.SAMPLER_TRAIN`` names one of
    fast-reid's samplers or ours, ``CrossCameraIdentitySampler`` (ABMT's cross-camera PK batches)."""
    sampler = None
    if cfg.DATALOADER.SAMPLER_TRAIN == CrossCameraIdentitySampler.__name__:
        sampler = CrossCameraIdentitySampler(train_set.img_items, cfg.SOLVER.IMS_PER_BATCH // comm.get_world_size(),
                                             cfg.DATALOADER.NUM_INSTANCE)
    return build_reid_train_loader(cfg, train_set=train_set, sampler=sampler)
