"""Per-epoch pseudo-labels: features -> Jaccard distance (+ source term) -> clustering (module d) -> SLR (e-h)."""
import logging
import time
from dataclasses import dataclass
from typing import Dict, Optional

import numpy as np
import scipy.sparse as sp

from slr_refine import (JACCARD_VARIANTS, CameraJaccard, SLRRefiner, cluster_dbscan, cluster_hdbscan,
                        clustering_distance, eps_from_rho)
from slr_refine.errors import InvalidArgument

from ..neighbour_search import SEARCH_BACKENDS, build_neighbour_search

logger = logging.getLogger(__name__)

CLUSTER_METHODS = ("dbscan", "hdbscan")


@dataclass
class PseudoLabels:
    """One epoch's supervision: ``labels`` contiguous 0..K-1 (-1: not trained on this epoch);
    ``soft_labels`` (N, K) when the refiner trains on soft labels (module h "none")."""

    labels: np.ndarray
    soft_labels: Optional[sp.csr_matrix]
    stats: Dict[str, float]


class PseudoLabeler:
    """Clusters the target features and refines the clusters with the previous epoch's (SLR).

    The clustering distance is ABMT's by default: the k-reciprocal Jaccard distance, plus a source
    term of weight ``source_weight`` (each target image's distance to the nearest source image,
    ``refine.source_term``), clustered by DBSCAN with eps recomputed every call from ``rho``; with
    ``rho`` 0 the fixed ``eps`` (SpCL / fast-reid) applies. With ``camera_jaccard`` the Jaccard
    distance is CA-Jaccard of those sizes, on ``cameras`` (each target image's camera index). Holds
    the refiner, whose state (the previous labels) is what a resume must restore.
    """

    def __init__(self, *, refiner: SLRRefiner, method: str = "dbscan", k1: int = 20, k2: int = 6,
                 eps: float = 0.6, rho: float = 2e-3, source_weight: float = 0.1, min_samples: int = 4,
                 min_cluster_size: int = 7, jaccard: str = "abmt", search: str = "auto", device: str = "cpu",
                 camera_jaccard: Optional[CameraJaccard] = None, cameras: Optional[np.ndarray] = None):
        if method not in CLUSTER_METHODS:
            raise ValueError(f"SLR.CLUSTER.METHOD must be one of {CLUSTER_METHODS}, got {method!r}")
        if not (k1 >= 1 and 1 <= k2 <= k1):
            raise ValueError(f"SLR.CLUSTER.K1/K2 must satisfy 1 <= K2 <= K1, got {k1}/{k2}")
        if not 0.0 <= rho < 1.0:
            raise ValueError(f"SLR.CLUSTER.RHO must lie in [0, 1), got {rho}")
        if not 0.0 <= source_weight < 1.0:
            raise ValueError(f"SLR.CLUSTER.SOURCE_WEIGHT (λ) must lie in [0, 1), got {source_weight}")
        if method == "hdbscan" and source_weight > 0:
            raise ValueError("SLR.CLUSTER.METHOD hdbscan clusters the Jaccard distance alone: set "
                             "SLR.CLUSTER.SOURCE_WEIGHT 0 with it")
        for key, value, allowed in (("SLR.CLUSTER.JACCARD", jaccard, JACCARD_VARIANTS),
                                    ("SLR.CLUSTER.SEARCH", search, SEARCH_BACKENDS)):
            if value not in allowed:
                raise ValueError(f"{key} must be one of {allowed}, got {value!r}")
        self.refiner = refiner
        self.method, self.k1, self.k2 = method, k1, k2
        self.eps, self.rho, self.source_weight, self.min_samples = eps, rho, source_weight, min_samples
        self.min_cluster_size = min_cluster_size
        self.jaccard, self.search, self.device = jaccard, search, device
        self.camera_jaccard, self.cameras = camera_jaccard, None if cameras is None else np.asarray(cameras)

    @classmethod
    def from_config(cls, cfg, cameras: Optional[np.ndarray] = None) -> "PseudoLabeler":
        """Reads SLR.CLUSTER and SLR.REFINE; a bad value fails here, naming its key, before any long work.
        ``cameras``: the target train set's camera index of each image (``SLR.CLUSTER.CAMERA_JACCARD``)."""
        refine_keys = {"alpha": "ALPHA", "normalize": "NORMALIZE", "harden_method": "HARDEN",
                       "min_cluster_size": "MIN_CLUSTER_SIZE", "min_cluster_size_fraction": "MIN_CLUSTER_SIZE_FRACTION",
                       "dbscan_eps": "DBSCAN_EPS", "dbscan_min_samples": "DBSCAN_MIN_SAMPLES", "enabled": "ENABLED",
                       "prev_source": "PREV_SOURCE", "project_outliers": "PROJECT_OUTLIERS"}
        try:
            refiner = SLRRefiner(**{argument: cfg.SLR.REFINE[key] for argument, key in refine_keys.items()})
        except InvalidArgument as exc:
            raise ValueError(f"SLR.REFINE.{refine_keys[exc.argument]} {exc.problem}") from None
        cluster = cfg.SLR.CLUSTER
        camera_keys = {"k1_intra": "CA_K1_INTRA", "k1_inter": "CA_K1_INTER", "k2_intra": "CA_K2_INTRA",
                       "k2_inter": "CA_K2_INTER"}
        try:  # checked whether on or off, so that a typo never waits for the day it is switched on
            camera_jaccard = CameraJaccard(**{argument: cluster[key] for argument, key in camera_keys.items()})
        except InvalidArgument as exc:
            raise ValueError(f"SLR.CLUSTER.{camera_keys[exc.argument]} {exc.problem}") from None
        if not isinstance(cluster.CAMERA_JACCARD, bool):
            raise ValueError(f"SLR.CLUSTER.CAMERA_JACCARD must be True or False, got {cluster.CAMERA_JACCARD!r}")
        return cls(refiner=refiner, method=cluster.METHOD, k1=cluster.K1, k2=cluster.K2, eps=cluster.EPS,
                   rho=cluster.RHO, source_weight=cluster.SOURCE_WEIGHT, min_samples=cluster.MIN_SAMPLES,
                   min_cluster_size=cluster.MIN_CLUSTER_SIZE,
                   jaccard=cluster.JACCARD, search=cluster.SEARCH, device=cfg.MODEL.DEVICE,
                   camera_jaccard=camera_jaccard if cluster.CAMERA_JACCARD else None, cameras=cameras)

    @property
    def needs_source_features(self) -> bool:
        return self.source_weight > 0

    def advice(self, stats: dict, num_items: int) -> str:
        """Too few clusters: they merged (few outliers), or too few images were dense enough."""
        radius = f"{'SLR.CLUSTER.RHO' if self.rho > 0 else 'SLR.CLUSTER.EPS'} (eps now {stats['eps']:.3f})"
        found = (f"clustering gave {stats['clusters_before']} clusters with {stats['outliers_before']} outliers of "
                 f"{num_items}: ")
        if stats["outliers_before"] < num_items / 2:
            return found + f"clusters merged: lower {radius}"
        return found + f"raise {radius} or lower SLR.CLUSTER.MIN_SAMPLES / SLR.REFINE.MIN_CLUSTER_SIZE"

    def __call__(self, features: np.ndarray, source_features: Optional[np.ndarray] = None) -> PseudoLabels:
        """This epoch's labels from the teacher features of the target train set (and, with a source
        term, of the source train set)."""
        if self.camera_jaccard is not None and (self.cameras is None or len(self.cameras) != len(features)):
            raise ValueError(f"SLR.CLUSTER.CAMERA_JACCARD needs the camera of each of the {len(features)} target "
                             f"images, got {None if self.cameras is None else len(self.cameras)} camera ids")
        distance = clustering_distance(features, self.k1, self.k2, self.jaccard, source_features, self.source_weight,
                                       build_neighbour_search(self.search, self.device),
                                       cameras=None if self.camera_jaccard is None else self.cameras,
                                       camera_jaccard=self.camera_jaccard or CameraJaccard())
        dist, absent = distance.dist, distance.absent

        start = time.perf_counter()
        if self.method == "dbscan":
            eps = eps_from_rho(dist, self.rho, absent) if self.rho > 0 else self.eps
            clusters = cluster_dbscan(dist, eps, self.min_samples, absent)
        else:
            eps = float("nan")
            clusters = cluster_hdbscan(dist, self.min_cluster_size)
        seconds_cluster = time.perf_counter() - start

        result = self.refiner.step(clusters)
        stats = dict(result.stats, **distance.source_stats, eps=eps,
                     **{f"seconds_{part}": seconds for part, seconds in distance.seconds.items()},
                     seconds_cluster=seconds_cluster)
        logger.info("Pseudo-labels: eps {eps:.3f}, {clusters_before} clusters ({outliers_before} outliers) -> "
                    "{clusters_after} after refinement ({outliers_after} outliers, {revived} revived); "
                    "search {seconds_search:.1f}s, jaccard {seconds_jaccard:.1f}s, source term {seconds_source_term:.1f}s, "
                    "clustering {seconds_cluster:.1f}s, harden {seconds_harden:.1f}s".format(**stats))
        clustered = len(features) - stats["outliers_before"]
        if clustered and stats["dropped"] > clustered / 2:
            logger.warning(f"Hardening (module h) made outliers of {stats['dropped']} of the {clustered} clustered "
                           f"images ({stats['dropped'] / clustered:.0%}), so this epoch trains on "
                           f"{stats['kept_fraction']:.0%} of the target: its min cluster size "
                           f"{stats['min_cluster_size']} is large for these clusters. Lower "
                           f"SLR.REFINE.MIN_CLUSTER_SIZE, or set SLR.REFINE.MIN_CLUSTER_SIZE_FRACTION (e.g. 0.4) "
                           f"to size it from the clusters")
        # Soft labels are the supervision only when module (h) is "none"; otherwise the hard labels
        # (possibly re-partitioned by hardening) are, and the soft rows no longer match them.
        train_on_soft = self.refiner.harden_method == "none"
        return PseudoLabels(labels=result.hard_labels, soft_labels=result.soft_labels if train_on_soft else None,
                            stats=stats)

    def state_dict(self) -> dict:
        return self.refiner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.refiner.load_state_dict(state)


class TrueIdentityLabeler:
    """The labeler of the true-identity control (``SLR.ORACLE``): the target's true identities every
    epoch, through the same loader, classifier resizing and losses as pseudo-labels. It measures
    how much a perfect pseudo-labelling could give with this schedule: the upper bound of UDA."""

    needs_source_features = False

    def __init__(self, true_ids):
        _, self.true_ids = np.unique(np.asarray(true_ids), return_inverse=True)

    def __call__(self, features: np.ndarray, source_features: Optional[np.ndarray] = None) -> PseudoLabels:
        identities = int(self.true_ids.max()) + 1
        stats = {"clusters_before": identities, "clusters_after": identities, "outliers_before": 0,
                 "outliers_after": 0, "kept_fraction": 1.0, "refined": 0.0, "eps": float("nan")}
        return PseudoLabels(labels=self.true_ids.copy(), soft_labels=None, stats=stats)

    def advice(self, stats: dict, num_items: int) -> str:
        return (f"the target's train split has {stats['clusters_after']} identities: SLR.ORACLE needs a target "
                f"with more, or a smaller SOLVER.IMS_PER_BATCH")

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class WrappedLabeler:
    """A labeler (``hooks.Labeler``) that changes another's labels: subclasses override ``__call__``
    (calling ``self.labeler``) and inherit the rest, which the wrapped labeler answers."""

    def __init__(self, labeler):
        self.labeler = labeler
        self.needs_source_features = labeler.needs_source_features

    def __call__(self, features: np.ndarray, source_features: Optional[np.ndarray] = None) -> PseudoLabels:
        return self.labeler(features, source_features)

    def advice(self, stats: dict, num_items: int) -> str:
        return self.labeler.advice(stats, num_items)

    def state_dict(self) -> dict:
        return self.labeler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.labeler.load_state_dict(state)


def build_labeler(cfg, true_ids, cameras=None) -> "PseudoLabeler | TrueIdentityLabeler":
    """The labeler the config asks for: the target's true identities (``true_ids``) with
    ``SLR.ORACLE``, else pseudo-labels from clustering and SLR's refinement (``cameras``: each target
    image's camera index, for ``SLR.CLUSTER.CAMERA_JACCARD``)."""
    return TrueIdentityLabeler(true_ids) if cfg.SLR.ORACLE else PseudoLabeler.from_config(cfg, cameras)
