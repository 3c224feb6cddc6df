"""SLR pseudo-label refinement, framework-free (numpy/scipy/scikit-learn/hdbscan/faiss/numba).

Per epoch: ``clustering_distance`` (one exact ``search_neighbours`` pass -> ``jaccard_distance`` +
``add_source_term``) -> ``cluster_dbscan`` -> ``SLRRefiner.step`` (IoU projection, refined soft
labels, hardening). Nothing here imports torch or fast-reid: the paper's claim is that SLR helps
any clustering-based self-supervised system.
"""
from .ca_jaccard import CameraJaccard
from .camera import CAMERA_NORMALIZATIONS, camera_normalized
from .cluster import cluster_dbscan, cluster_hdbscan, eps_from_rho
from .distance import ClusteringDistance, clustering_distance
from .harden import HARDEN_METHODS, harden
from .jaccard import JACCARD_VARIANTS, jaccard_distance, jaccard_ranks
from .labels import relabel_contiguous
from .projection import NORMALIZATIONS, iou_projection, project_soft_labels, refine_soft_labels, sparse_projection
from .refiner import PREV_SOURCES, REFINER_HARDEN_METHODS, RefineResult, SLRRefiner
from .search import NeighbourSearch, Neighbours, normalize_features, search_neighbours
from .search_backends import BlasSearch, FaissSearch
from .source_term import add_source_term, source_distances, source_term_of
from .sparse import JACCARD_ABSENT, AbsentPairs, to_dense_distance

__all__ = [
    "AbsentPairs",
    "BlasSearch",
    "CAMERA_NORMALIZATIONS",
    "CameraJaccard",
    "ClusteringDistance",
    "FaissSearch",
    "HARDEN_METHODS",
    "JACCARD_ABSENT",
    "JACCARD_VARIANTS",
    "NORMALIZATIONS",
    "NeighbourSearch",
    "Neighbours",
    "PREV_SOURCES",
    "REFINER_HARDEN_METHODS",
    "RefineResult",
    "SLRRefiner",
    "add_source_term",
    "camera_normalized",
    "cluster_dbscan",
    "cluster_hdbscan",
    "clustering_distance",
    "eps_from_rho",
    "harden",
    "iou_projection",
    "jaccard_distance",
    "jaccard_ranks",
    "normalize_features",
    "project_soft_labels",
    "refine_soft_labels",
    "relabel_contiguous",
    "search_neighbours",
    "source_distances",
    "source_term_of",
    "sparse_projection",
    "to_dense_distance",
]
