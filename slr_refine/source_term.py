"""ABMT's source term of the clustering distance: how far each target image lies from the source.

ABMT clusters the target on ``(1-λ)·Jaccard(i, j) + λ·(d_s(i) + d_s(j))``, where ``d_s(i)`` is
target image i's distance to its nearest source training image, ``1 - exp(-||t_i - s||²)``,
divided by its largest value over the target set. Images that look like the source domain get
smaller distances, so they cluster first (λ = 0.1 in ABMT).

Sparse stays exact: the Jaccard distance of a pair outside each other's k-reciprocal sets is 1, so
its combined distance is at least 1-λ, above any eps in use (ABMT's per-epoch eps is the mean of
the smallest 0.2 % of the distances); the stored pattern does not change, and ``AbsentPairs``
describes the pairs it leaves out (``cluster_dbscan`` refuses an eps that reaches them).
"""
from typing import Optional, Tuple

import numpy as np
import scipy.sparse as sp

from .search import NeighbourSearch, normalize_features, search_neighbours
from .sparse import AbsentPairs

__all__ = ["add_source_term", "source_distances", "source_term_of"]


def source_term_of(nearest_squared: np.ndarray) -> Tuple[np.ndarray, float]:
    """``(d_s, scale)`` from each target image's squared distance to its nearest source image
    (``search_neighbours(..., others=source).nearest_other``): d_s (N,) float32 in [0, 1] as in the
    module docstring, and ``scale`` = the largest ``1 - exp(-min_s ||t - s||²)`` that d_s was divided by."""
    distance = -np.expm1(-np.maximum(np.asarray(nearest_squared, dtype=np.float64), 0.0))
    scale = float(distance.max(initial=0.0))
    return (distance / scale if scale > 0 else distance).astype(np.float32), scale


def source_distances(target: np.ndarray, source: np.ndarray,
                     backend: Optional[NeighbourSearch] = None) -> Tuple[np.ndarray, float]:
    """``source_term_of`` the L2-normalised ``target`` and ``source`` features: an exact search of
    each target row's nearest source row (``search.search_neighbours``), memory O(N + M), never N × M."""
    if len(source) == 0:
        raise ValueError("the source term needs at least one source feature")
    found = search_neighbours(normalize_features(target), 0, others=normalize_features(source), backend=backend)
    return source_term_of(found.nearest_other)


def add_source_term(jaccard: sp.csr_matrix, source_term: np.ndarray,
                    weight: float) -> Tuple[sp.csr_matrix, AbsentPairs]:
    """``(1-λ)·J + λ·(d_s(i) + d_s(j))`` on the stored pairs of ``jaccard`` (λ = ``weight``), and
    what an absent pair is worth: ``AbsentPairs(1-λ, λ·d_s)``.

    float32 throughout, so that a dense evaluation of the same formula gives the same bits. The
    diagonal becomes ``2λ·d_s(i)``, as in ABMT's dense matrix (DBSCAN counts a sample as its own
    neighbour only when that is within eps, as sklearn does on a precomputed matrix).
    """
    if not 0.0 <= weight < 1.0:
        raise ValueError(f"the source term's weight λ must lie in [0, 1), got {weight}")
    source_term = np.asarray(source_term, dtype=np.float32)
    if source_term.shape != (jaccard.shape[0],):
        raise ValueError(f"source term of shape {source_term.shape} for {jaccard.shape[0]} samples")
    jaccard = sp.csr_matrix(jaccard)
    rows = np.repeat(np.arange(jaccard.shape[0]), np.diff(jaccard.indptr))
    lam = np.float32(weight)
    values = (np.float32(1) - lam) * jaccard.data.astype(np.float32) \
        + lam * (source_term[rows] + source_term[jaccard.indices])
    combined = sp.csr_matrix((values, jaccard.indices.copy(), jaccard.indptr.copy()), shape=jaccard.shape)
    return combined, AbsentPairs(base=float(np.float32(1) - lam), offset=lam * source_term)
