"""Train items and the loaders of the plugin's trainers: identity (PK) batches for training,
test-time batches for feature passes."""
from fastreid.data import build_reid_test_loader, build_reid_train_loader
from fastreid.utils import comm

from .common import NamedFileDataset
from .paths import build_dataset
from .samplers import CrossCameraIdentitySampler

__all__ = ["build_feature_loader", "build_identity_loader", "load_train_items", "shutdown"]


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


def build_feature_loader(items, transforms, batch_size: int, num_workers: int = 0):
    """Test-time loader over ``items``; fast-reid's InferenceSampler gives each rank one contiguous
    shard, so concatenating the shards in rank order restores dataset order (no padding)."""
    loader, _ = build_reid_test_loader(test_set=NamedFileDataset(items, transforms, relabel=False),
                                       test_batch_size=batch_size, num_query=0, num_workers=num_workers)
    return loader


def shutdown(batches) -> None:
    """Stop a loader's background work once a pass is over (fast-reid's DataLoaderX prefetches in a
    thread); other iterables of batches (the image cache's, a list) have none."""
    stop = getattr(batches, "shutdown", None)
    if stop is not None:
        stop()
