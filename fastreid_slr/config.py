"""The plugin's config keys: the ``SLR`` namespace, and ``SEED`` (``add_run_config``).

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
    # Datasets whose train images are those target images. Empty: the adaptation's DATASETS.NAMES
    # (a direct SLR.MODE "pretrain" run with TARGET_BN must name them).
    _C.SLR.PRETRAIN.TARGET_DATASETS = ()

    # ------------------------------------------------------------------ pseudo-labels (clustering, SLR refinement)
    # Stage 2 trains DATASETS.NAMES (the target's train split, its labels never used) and tests
    # DATASETS.TESTS.
    # Cluster (and refine) every this many epochs (paper: every epoch).
    _C.SLR.CLUSTER_EVERY = 1
    # Training iterations per adaptation epoch, whatever the number of kept samples (ABMT: 400).
    _C.SLR.ITERS_PER_EPOCH = 400
    # A control, not a method: True trains stage 2 on the target's true identities (its train split
    # must carry them, as the procedural data and Market/Duke/PersonX file names do) instead of
    # pseudo-labels, with everything else unchanged: the upper bound of what UDA can recover here.
    _C.SLR.ORACLE = False

    _C.SLR.CLUSTER = CN()
    # Module (d) of Table 3: "dbscan" (paper) or "hdbscan" on the Jaccard distances.
    _C.SLR.CLUSTER.METHOD = "dbscan"
    # k1 / k2 of the k-reciprocal Jaccard distance (ABMT: 20 / 6; SpCL and fast-reid: 30 / 6).
    _C.SLR.CLUSTER.K1 = 20
    _C.SLR.CLUSTER.K2 = 6
    # Jaccard definition: "abmt" (ABMT's rerank.py: k1+1 ranks, d² / row max in the kernel) or "fastreid" (SpCL's).
    _C.SLR.CLUSTER.JACCARD = "abmt"
    # > 0: DBSCAN eps recomputed every epoch as the mean of the smallest RHO fraction of the
    # pairwise distances (ABMT: 2e-3). 0: the fixed EPS below (SpCL).
    _C.SLR.CLUSTER.RHO = 0.002
    # DBSCAN radius when RHO is 0 (SpCL: 0.6 on the Jaccard distance alone).
    _C.SLR.CLUSTER.EPS = 0.6
    # λ of ABMT's source term: distance = (1-λ)·Jaccard + λ·(d_s(i) + d_s(j)), d_s = distance of a
    # target image to its nearest source training image (teacher features, one more feature pass
    # over SLR.SOURCE.DATASETS each clustering epoch). 0: target-only Jaccard (SpCL).
    _C.SLR.CLUSTER.SOURCE_WEIGHT = 0.1
    # DBSCAN min_samples (a point counts itself, sklearn convention).
    _C.SLR.CLUSTER.MIN_SAMPLES = 4
    # Min cluster size when METHOD is "hdbscan" (needs SOURCE_WEIGHT 0).
    _C.SLR.CLUSTER.MIN_CLUSTER_SIZE = 7
    # Camera-aware clustering features, label-free (camera ids are metadata), for the clustering
    # distance only: "none" (the paper: camera-blind), "bn" (each camera's images through the
    # teacher with BN statistics of that camera alone: two passes per clustering), "centre" /
    # "standardize" (each camera's mean / mean and spread removed from the embedding).
    _C.SLR.CLUSTER.CAMERA_AWARE = "none"
    # CA-Jaccard (Chen et al., CVPR 2024; slr_refine/ca_jaccard.py), label-free too: the k-reciprocal
    # sets and the query expansion of the Jaccard distance taken within each image's camera and
    # across the other cameras, with the four sizes below instead of K1 / K2, over JACCARD's kernel
    # (combinable with CAMERA_AWARE and the source term). False: the paper's camera-blind distance.
    _C.SLR.CLUSTER.CAMERA_JACCARD = False
    # Intra-camera k-reciprocal set over the image and its CA_K1_INTRA nearest of its camera (authors: 5).
    _C.SLR.CLUSTER.CA_K1_INTRA = 5
    # Inter-camera k-reciprocal set over the CA_K1_INTER + 1 nearest images of other cameras (authors: 20).
    _C.SLR.CLUSTER.CA_K1_INTER = 20
    # Query expansion over the first CA_K2_INTRA of the intra-camera list (the image first) ...
    _C.SLR.CLUSTER.CA_K2_INTRA = 3
    # ... and the CA_K2_INTER nearest images of other cameras (authors: 3 / 3; their README also 2 / 4).
    _C.SLR.CLUSTER.CA_K2_INTER = 3
    # Where the exact neighbour search of the clustering distance runs (every backend gives the same
    # neighbours): "auto" (torch on a CUDA MODEL.DEVICE, BLAS blocks on the CPU), "blas", "torch"
    # (float32 products on the run's device; the CPU after an out-of-memory, with a warning), "faiss"
    # (flat indexes; on the GPU with faiss-gpu).
    _C.SLR.CLUSTER.SEARCH = "auto"

    _C.SLR.REFINE = CN()
    # False = the ABMT baseline: train on the clustering labels as they are (Table 3, first row).
    _C.SLR.REFINE.ENABLED = True
    # α of Eq. 4: weight of this epoch's one-hot label against the projected previous label.
    _C.SLR.REFINE.ALPHA = 0.5
    # Eq. 2's normalisation of the IoU projection: "row" (rows sum to 1), "col", "none", "softmax".
    _C.SLR.REFINE.NORMALIZE = "row"
    # Module (h) of Table 3: "hdbscan" (paper), "dbscan", "max" (argmax), "none" (train on the
    # soft labels themselves).
    _C.SLR.REFINE.HARDEN = "hdbscan"
    # HDBSCAN min cluster size of module (h) (Table 4; paper 7).
    _C.SLR.REFINE.MIN_CLUSTER_SIZE = 7
    # > 0: module (h)'s min cluster size is this fraction of the median size of the epoch's
    # clusters instead (at least 2); the paper's 7 is ~0.4 x a Market-1501 cluster.
    _C.SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION = 0.0
    # eps / min_samples of module (h) when HARDEN is "dbscan" (euclidean on the soft labels).
    _C.SLR.REFINE.DBSCAN_EPS = 0.3
    _C.SLR.REFINE.DBSCAN_MIN_SAMPLES = 4
    # Next epoch's "previous" labels: "cluster" (this epoch's DBSCAN labels) or "refined".
    _C.SLR.REFINE.PREV_SOURCE = "cluster"
    # Eq. 3-4 for every sample (paper): an outlier of this epoch's clustering that had a cluster
    # last epoch gets (1-α)·Pn[l_prev] and hardening may bring it back. False: such rows are zero
    # (an ablation; "max" hardening then equals the clustering labels, Table 3).
    _C.SLR.REFINE.PROJECT_OUTLIERS = True

    _C.SLR.SOURCE = CN()
    # Stage 1 (source pretraining) runs first when its weights are missing; stage 2 starts from them.
    # Labelled source datasets of stage 1 (e.g. ("DukeMTMC",) for D→M).
    _C.SLR.SOURCE.DATASETS = ()
    # Source-pretrained weights for stage 2. Empty: stage 1's model_best.pth (EVAL_PERIOD > 0) or
    # model_final.pth in its OUTPUT_DIR, trained first if stage 1 has not finished. A non-empty path must exist.
    _C.SLR.SOURCE.WEIGHTS = ""
    # Output folder of stage 1, one per task (BN sees the target); empty: "<OUTPUT_DIR>/../source-<src>-to-<tgt>".
    _C.SLR.SOURCE.OUTPUT_DIR = ""
    # Stage 1 schedule (ABMT: Adam 3.5e-4, 80 epochs, linear warm-up over 10 epochs from 0.01×,
    # ×SOLVER.GAMMA at each of STEPS, epochs counted from the start of training). A direct
    # SLR.MODE "pretrain" run schedules by these keys too.
    _C.SLR.SOURCE.MAX_EPOCH = 80
    _C.SLR.SOURCE.STEPS = [40, 70]
    _C.SLR.SOURCE.WARMUP_EPOCHS = 10
    _C.SLR.SOURCE.WARMUP_FACTOR = 0.01
    _C.SLR.SOURCE.BASE_LR = 0.00035
    _C.SLR.SOURCE.IMS_PER_BATCH = 64
    # Stage-1 steps per epoch (ABMT: --iters 200); 0: fast-reid's epoch, a pass over the source set.
    _C.SLR.SOURCE.ITERS_PER_EPOCH = 200
    # > 0: stage 1 tests the source every N epochs; stage 2 adapts from the best mAP (ABMT: --eval-step 40).
    _C.SLR.SOURCE.EVAL_PERIOD = 40

    _C.SLR.IMAGE_CACHE = CN()
    # Memory for the test-time images of the sets every epoch passes over (target and source train
    # sets, then the test sets), decoded once and kept as uint8 (3·H·W bytes an image: Market's
    # 12,936 at 256x128 take 1.3 GB). -1: half of the available memory (the GPU's when the cache
    # fits there, else the host's), split between a machine's ranks; 0: no cache (every pass reads
    # the files); > 0: that many GB. The log names what was kept, and where.
    _C.SLR.IMAGE_CACHE.BUDGET_GB = -1

    _C.SLR.CHECKPOINT = CN()
    # Per-epoch checkpoints kept in each stage's folder, newest first (0: all of them, fast-reid's
    # way); model_final.pth and model_best.pth always stay. A ResNet-50 pair's is ~0.7 GB (docs/getting_started.md, "Disk").
    _C.SLR.CHECKPOINT.KEEP_LAST = 2

    if frozen:
        cfg.freeze()
    return cfg


def add_run_config(cfg):
    """``SEED``, top-level as detectron2 names it (fast-reid 1.4.0 has none and seeds every run at
    random); read by ``fastreid_slr.run`` (idempotent)."""
    if "SEED" in cfg:
        return cfg
    frozen = cfg.is_frozen()
    cfg.defrost()
    # >= 0: seed Python, numpy and torch (rank r gets SEED + r) and make cuDNN deterministic, so
    # that a run repeats on the same machine (``fastreid_slr.run.seed``).
    cfg.SEED = -1
    if frozen:
        cfg.freeze()
    return cfg
