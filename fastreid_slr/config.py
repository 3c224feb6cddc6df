"""The ``SLR`` config namespace (and the procedural dataset's keys under ``DATASETS``).

Every key the paper leaves open is here, with the paper equation / table it belongs to.
Modules never read ``cfg``: each component's ``from_config`` reads its keys once.
"""
from fastreid.config import CfgNode as CN


def add_slr_config(cfg):
    """Add the SLR keys to a fast-reid config (idempotent)."""
    if "SLR" in cfg:
        return cfg
    frozen = cfg.is_frozen()
    cfg.defrost()

    _C = cfg
    # ------------------------------------------------------------------ procedural demo data
    _C.DATASETS.PROCEDURAL = CN()
    # Identities in the training split of each domain (query/gallery identities are disjoint).
    _C.DATASETS.PROCEDURAL.NUM_TRAIN_IDS = 32
    # Identities in the query/gallery split of each domain.
    _C.DATASETS.PROCEDURAL.NUM_TEST_IDS = 32
    # Cameras per domain; every identity is seen by at least two of them.
    _C.DATASETS.PROCEDURAL.NUM_CAMERAS = 4
    # Images of each identity per camera that sees it.
    _C.DATASETS.PROCEDURAL.IMAGES_PER_CAMERA = 3
    # Image size (height, width) written to disk.
    _C.DATASETS.PROCEDURAL.IMAGE_SIZE = [64, 32]
    # Seed of the whole dataset: same seed and sizes give byte-identical images.
    _C.DATASETS.PROCEDURAL.SEED = 0

    _C.SLR = CN()
    # Training stage of the SLR meta-architecture: "adapt" (stage 2, mean teacher on pseudo-labels)
    # or "pretrain" (stage 1, supervised on the labelled source domain).
    _C.SLR.MODE = "adapt"

    # ------------------------------------------------------------------ model (dual branch, mean teacher, losses)
    # (backbone, BNNeck norm, initial class count and pixel statistics come from MODEL.*)
    _C.SLR.BRANCH = CN()
    # Pooling of branch A, a fastreid.layers.pooling name (paper §3.1: GAP).
    _C.SLR.BRANCH.POOL_A = "GlobalAvgPool"
    # Pooling of branch B, the branch with the extra bottleneck (paper §3.1 "MAP": GMP, as ABMT).
    _C.SLR.BRANCH.POOL_B = "GlobalMaxPool"

    _C.SLR.EMA = CN()
    # Cap m of the teacher's EMA momentum min(1 - 1/(step+1), m) (paper §3.11, Fig. 2(k)).
    _C.SLR.EMA.MOMENTUM = 0.999
    # Teacher BN buffers (§3.11; the paper is silent): "param_only" (ABMT: running stats from the
    # teacher's own train-mode forwards), "ema" (EMA of the student's), "copy" (the student's).
    _C.SLR.EMA.BN_MODE = "param_only"

    _C.SLR.LOSS = CN()
    # λ1 of Eq. 6: label-smoothed CE on the hard labels, both student branches (Eq. 5, Tables 5-6);
    # a weight of 0 removes the term (Table 5 ablation), as for the two below.
    _C.SLR.LOSS.CE_WEIGHT = 0.5
    # λ2 of Eq. 6: cross-branch soft CE, student A <- teacher B and student B <- teacher A (§3.10).
    _C.SLR.LOSS.SOFT_CE_WEIGHT = 0.5
    # λ3 of Eq. 6: cross-branch soft triplet (STL), mined on the student with the hard labels (§3.10).
    _C.SLR.LOSS.SOFT_TRI_WEIGHT = 1.0
    # Label smoothing ε of the hard-label CE, in both stages (Eq. 5; ABMT 0.1).
    _C.SLR.LOSS.CE_EPSILON = 0.1
    # L2-normalise the pooled features before the soft-triplet distances (§3.10; MMT/ABMT: False).
    _C.SLR.LOSS.SOFT_TRI_NORM_FEAT = False

    _C.SLR.PRETRAIN = CN()
    # Margin of stage 1's batch-hard triplet on pre-BN features; 0 = soft margin (§3.1, ABMT).
    _C.SLR.PRETRAIN.TRI_MARGIN = 0.0
    # Stage 1: forward the batch's "target_images" without loss to adapt BN statistics (ABMT, §3.1).
    _C.SLR.PRETRAIN.TARGET_BN = True

    # ------------------------------------------------------------------ pseudo-labels (clustering, SLR refinement)
    # (keys of the pseudo-label hook go here)

    if frozen:
        cfg.freeze()
    return cfg
