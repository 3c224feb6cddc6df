"""SLR pseudo-label refinement, framework-free (numpy/scipy/scikit-learn/hdbscan/faiss/numba).

Per epoch: ``jaccard_distance`` (+ ``add_source_term``) -> ``cluster_dbscan`` -> ``SLRRefiner.step``
(IoU projection, refined soft labels, hardening). Nothing here imports torch or fast-reid: the paper's claim is
that SLR helps any clustering-based self-supervised system.
"""
from .camera import CAMERA_NORMALIZATIONS, camera_normalized
from .cluster import cluster_dbscan, cluster_hdbscan, eps_from_rho
from .distance import AbsentPairs, jaccard_distance, knn, normalize_features, to_dense_distance
from .harden import HARDEN_METHODS, harden
from .labels import relabel_contiguous
from .projection import NORMALIZATIONS, iou_projection, project_soft_labels, refine_soft_labels, sparse_projection
from .refiner import PREV_SOURCES, REFINER_HARDEN_METHODS, RefineResult, SLRRefiner
from .source_term import add_source_term, source_distances

__all__ = [
    "AbsentPairs",
    "CAMERA_NORMALIZATIONS",
    "HARDEN_METHODS",
    "NORMALIZATIONS",
    "PREV_SOURCES",
    "REFINER_HARDEN_METHODS",
    "RefineResult",
    "SLRRefiner",
    "add_source_term",
    "camera_normalized",
    "cluster_dbscan",
    "cluster_hdbscan",
    "eps_from_rho",
    "harden",
    "iou_projection",
    "jaccard_distance",
    "knn",
    "normalize_features",
    "project_soft_labels",
    "refine_soft_labels",
    "relabel_contiguous",
    "source_distances",
    "sparse_projection",
    "to_dense_distance",
]
