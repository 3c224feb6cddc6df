"""The procedural datasets' config keys, ``DATASETS.PROCEDURAL.*``, and their one reader."""
from fastreid.config import CfgNode as CN

from .spec import ProceduralSpec, set_default_spec


def add_procedural_config(cfg):
    """Add the ``DATASETS.PROCEDURAL`` keys to a fast-reid config (idempotent)."""
    if "PROCEDURAL" in cfg.DATASETS:
        return cfg
    frozen = cfg.is_frozen()
    cfg.defrost()
    _C = cfg.DATASETS.PROCEDURAL = CN()
    # Identities in the training split of each domain (query/gallery identities are disjoint).
    _C.NUM_TRAIN_IDS = 32
    # Identities in the query/gallery split of each domain.
    _C.NUM_TEST_IDS = 32
    # Cameras per domain; every identity is seen by at least two of them.
    _C.NUM_CAMERAS = 4
    # Images of each identity per camera that sees it.
    _C.IMAGES_PER_CAMERA = 3
    # Image size (height, width) written to disk.
    _C.IMAGE_SIZE = [64, 32]
    # Seed of the whole dataset: same seed and sizes give byte-identical images.
    _C.SEED = 0
    # Most cameras that see one identity (0: NUM_CAMERAS); each identity is seen by 2..this many.
    _C.MAX_CAMERAS_PER_ID = 0
    # 0..1: how strongly backdrop, light and blur follow the camera (1: cameras dominate the picture).
    _C.CAMERA_DOMINANCE = 0.0
    if frozen:
        cfg.freeze()
    return cfg


def apply_procedural_config(cfg) -> None:
    """Datasets built from now on without ``spec=`` (fast-reid's way) follow ``cfg``'s keys."""
    set_default_spec(ProceduralSpec.from_config(cfg))
