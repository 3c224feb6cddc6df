"""The clustering distance of one epoch: the k-reciprocal Jaccard distance, plus ABMT's source term,
from one exact search.

The Jaccard distance needs each target image's nearest target images (CA-Jaccard: within its
camera and across the others; ABMT's variant also its farthest); the source term its nearest
source image. ``clustering_distance`` takes all of them from one ``search_neighbours`` pass, then
builds the two terms; the seconds of each part are returned for the epoch's accounting.
"""
import dataclasses
import time
from typing import Dict, Optional

import numpy as np
import scipy.sparse as sp

from .ca_jaccard import CameraJaccard
from .jaccard import jaccard_distance, jaccard_search
from .search import NeighbourSearch, normalize_features, search_neighbours
from .source_term import add_source_term, source_term_of
from .sparse import JACCARD_ABSENT, AbsentPairs

__all__ = ["ClusteringDistance", "clustering_distance"]


@dataclasses.dataclass
class ClusteringDistance:
    """``dist`` in the sparse convention (``sparse.py``), ``absent`` what its unstored pairs are worth,
    ``seconds`` of the search, the Jaccard distance and the source term, and the source term's
    statistics (empty without one)."""

    dist: sp.csr_matrix
    absent: AbsentPairs
    seconds: Dict[str, float]
    source_stats: Dict[str, float]


def clustering_distance(features: np.ndarray, k1: int = 20, k2: int = 6, variant: str = "abmt",
                        source: Optional[np.ndarray] = None, source_weight: float = 0.0,
                        backend: Optional[NeighbourSearch] = None, cameras: Optional[np.ndarray] = None,
                        camera_jaccard: CameraJaccard = CameraJaccard()) -> ClusteringDistance:
    """``(1-λ)·Jaccard + λ·(d_s(i) + d_s(j))`` of the target ``features`` (λ = ``source_weight``; the
    Jaccard distance alone when it is 0), rows L2-normalised, every neighbour from one search.
    With ``cameras`` (each target image's camera id) the Jaccard distance is CA-Jaccard, of
    ``camera_jaccard``'s sizes."""
    if source_weight > 0 and source is None:
        raise ValueError("the clustering distance has a source term: pass the source features")
    features = normalize_features(features)
    ranks = jaccard_search(variant, k1, len(features), None if cameras is None else camera_jaccard)
    start = time.perf_counter()
    neighbours = search_neighbours(features, farthest=variant == "abmt", backend=backend, cameras=cameras,
                                   others=normalize_features(source) if source_weight > 0 else None, **ranks)
    seconds = {"search": time.perf_counter() - start}

    start = time.perf_counter()
    dist = jaccard_distance(features, k1=k1, k2=k2, normalize=False, variant=variant, neighbours=neighbours,
                            cameras=cameras, **dataclasses.asdict(camera_jaccard))
    seconds["jaccard"] = time.perf_counter() - start

    start = time.perf_counter()
    absent, source_stats = JACCARD_ABSENT, {}
    if source_weight > 0:
        source_term, scale = source_term_of(neighbours.nearest_other)
        dist, absent = add_source_term(dist, source_term, source_weight)
        source_stats = {"source_term_mean": float(source_term.mean()), "source_term_scale": scale}
    seconds["source_term"] = time.perf_counter() - start
    return ClusteringDistance(dist, absent, seconds, source_stats)
