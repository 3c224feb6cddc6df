"""k-reciprocal Jaccard distance (Zhong et al.'s re-ranking) as a sparse matrix, in two variants.

``variant="fastreid"``: the semantics of fast-reid's (and SpCL's)
``fastreid.utils.compute_dist.compute_jaccard_distance``: exact L2 kNN (k1 columns, self included),
k-reciprocal sets R(i, k1) over those k1 columns and R(i, k1/2) over the first round(k1/2)+1,
expansion by candidates whose half set overlaps R(i, k1) by more than 2/3, Gaussian-kernel
weights ``softmax(-||x_i - x_j||²)`` over the expanded set, query expansion (mean over the k2
nearest rows) and ``d = 1 - m / (2 - m)`` with ``m = Σ_k min(V[i,k], V[j,k])``.

``variant="abmt"``: ABMT's ``compute_jaccard_dist`` (abmt/utils/rerank.py), which the paper's
baseline clustered with. Two differences, both of which change labels: R(i, k1) is taken over the
first k1+1 ranks (the sample itself and k1 others), and the kernel is ``exp(-||x_i - x_j||² / M_i)``
normalised over the expanded set, ``M_i`` the squared distance from i to the farthest sample of the
whole set (ABMT divides each row of its dense distance matrix by the row's maximum). ``M_i`` comes
from the same search as the ranks (``search.search_neighbours``), so both variants cost one search.

With ``cameras``: CA-Jaccard (``ca_jaccard.py``), the sets and the query expansion taken within
each image's camera and across the others, over either variant's kernel, from the same search.

Why not fast-reid's own code: it fills three dense N×N matrices and loops over rows in Python
(memory grows as N²: 40 GB per float32 matrix at N=100k). Here every step is sparse and the per-row
loops are numba kernels, O(N · nnz(row)): time and memory grow linearly in N. The distance of the
encodings is ``overlap.py``'s, in the sparse convention of ``sparse.py``.
"""
from typing import Optional

import numba
import numpy as np
import scipy.sparse as sp

from .ca_jaccard import CameraJaccard
from .overlap import encoding_distance, grow
from .search import Neighbours, NeighbourSearch, normalize_features, search_neighbours, squared_distance

__all__ = ["JACCARD_VARIANTS", "jaccard_distance", "jaccard_ranks", "jaccard_search"]

# fast-reid's / SpCL's definition, and ABMT's (module docstring).
JACCARD_VARIANTS = ("fastreid", "abmt")


def jaccard_ranks(variant: str, k1: int, n: int) -> int:
    """How many nearest rows (the row itself included) a variant's k-reciprocal sets are taken over:
    ABMT ranks the whole row and slices k1+1 columns; fast-reid searches k1 neighbours."""
    if variant not in JACCARD_VARIANTS:
        raise ValueError(f"Jaccard variant must be one of {JACCARD_VARIANTS}, got {variant!r}")
    return min(k1 + 1 if variant == "abmt" else k1, n)


@numba.njit(cache=True)
def _reciprocal_sets(ranks, n_columns):
    """CSR (indptr, indices) of R(i): j among i's first n_columns neighbours and i among j's (-1: none)."""
    n = ranks.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(n * n_columns, dtype=np.int64)
    used = 0
    for i in range(n):
        start = used
        for a in range(n_columns):
            j = ranks[i, a]
            if j < 0:
                continue
            for b in range(n_columns):
                if ranks[j, b] == i:
                    indices[used] = j
                    used += 1
                    break
        indices[start:used].sort()
        indptr[i + 1] = used
    return indptr, indices[:used]


@numba.njit(cache=True)
def _expanded_sets(full_ptr, full_idx, half_ptr, half_idx):
    """CSR of R*(i): R(i, k1) plus every R(c, k1/2), c in R(i, k1), overlapping it by > 2/3."""
    n = full_ptr.shape[0] - 1
    in_full = np.zeros(n, dtype=np.bool_)
    in_expanded = np.zeros(n, dtype=np.bool_)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(full_idx.shape[0] * 2 + 16, dtype=np.int64)
    used = 0
    for i in range(n):
        start = used
        for t in range(full_ptr[i], full_ptr[i + 1]):
            in_full[full_idx[t]] = True
        for t in range(full_ptr[i], full_ptr[i + 1]):
            j = full_idx[t]
            indices = grow(indices, used, 1)
            indices[used] = j
            used += 1
            in_expanded[j] = True
        for t in range(full_ptr[i], full_ptr[i + 1]):
            c = full_idx[t]
            size = half_ptr[c + 1] - half_ptr[c]
            overlap = 0
            for s in range(half_ptr[c], half_ptr[c + 1]):
                if in_full[half_idx[s]]:
                    overlap += 1
            if overlap > 2.0 / 3.0 * size:
                indices = grow(indices, used, size)
                for s in range(half_ptr[c], half_ptr[c + 1]):
                    j = half_idx[s]
                    if not in_expanded[j]:
                        in_expanded[j] = True
                        indices[used] = j
                        used += 1
        for t in range(start, used):
            in_expanded[indices[t]] = False
        for t in range(full_ptr[i], full_ptr[i + 1]):
            in_full[full_idx[t]] = False
        indices[start:used].sort()
        indptr[i + 1] = used
    return indptr, indices[:used]


@numba.njit(cache=True)
def _gaussian_weights(features, indptr, indices, row_scale):
    """V's values: softmax of -||x_i - x_j||² · row_scale[i] over each row's expanded set."""
    weights = np.empty(indices.shape[0], dtype=np.float32)
    for i in range(indptr.shape[0] - 1):
        start, stop = indptr[i], indptr[i + 1]
        if start == stop:
            continue
        distances = np.empty(stop - start, dtype=np.float64)
        for t in range(start, stop):
            distances[t - start] = squared_distance(features[i], features[indices[t]]) * row_scale[i]
        shifted = np.exp(-(distances - distances.min()))
        weights[start:stop] = (shifted / shifted.sum()).astype(np.float32)
    return weights


def jaccard_search(variant: str, k1: int, n: int, camera_aware: Optional[CameraJaccard] = None) -> dict:
    """The ranks ``search_neighbours`` must find for a variant (``k``) or, with ``camera_aware``,
    for CA-Jaccard (``within`` / ``across`` each image's camera)."""
    k = jaccard_ranks(variant, k1, n)
    if camera_aware is None:
        return {"k": k, "within": 0, "across": 0}
    return {"k": 0, "within": camera_aware.within, "across": camera_aware.across}


def _camera_blind_sets(neighbours: Neighbours, variant: str, k1: int, k2: int, n: int):
    """CSR of the variant's R*(i), and each row's query-expansion rows (its first k2 ranks)."""
    full_columns = jaccard_ranks(variant, k1, n)
    if neighbours.ranks.shape[1] < full_columns:
        raise ValueError(f"the {variant} Jaccard distance needs {full_columns} ranks, the search found "
                         f"{neighbours.ranks.shape[1]}")
    ranks = neighbours.ranks[:, :full_columns]
    if variant == "abmt":
        half_columns = min(int(np.around(k1 / 2)) + 1, n)
    else:
        # R(i, k1) over k1 columns (self included), R(i, k1/2) over round(k1/2)+1 of them (fast-reid)
        half_columns = min(int(np.around(full_columns / 2)) + 1, full_columns)
    full_ptr, full_idx = _reciprocal_sets(ranks, full_columns)
    half_ptr, half_idx = _reciprocal_sets(ranks, half_columns)
    exp_ptr, exp_idx = _expanded_sets(full_ptr, full_idx, half_ptr, half_idx)
    return exp_ptr, exp_idx, ranks[:, :min(k2, full_columns)]


def _row_scale(variant: str, neighbours: Neighbours, n: int) -> np.ndarray:
    """What multiplies d² in row i's kernel: 1 / M_i (ABMT), else 1."""
    if variant != "abmt":
        return np.ones(n)
    if neighbours.farthest is None:
        raise ValueError("the abmt variant needs each row's farthest distance: search with farthest=True")
    with np.errstate(divide="ignore"):  # all rows equal: every distance is 0
        return np.where(neighbours.farthest > 0, 1.0 / neighbours.farthest, 1.0)


def _expand_queries(encoding: sp.csr_matrix, rows: np.ndarray) -> sp.csr_matrix:
    """V'(i): the mean of V over ``rows[i]`` (-1: none); one row is no expansion (fast-reid's k2 = 1)."""
    if rows.shape[1] <= 1:
        return encoding
    n = encoding.shape[0]
    row_of, column = np.nonzero(rows >= 0)
    weights = (1.0 / np.bincount(row_of, minlength=n))[row_of].astype(np.float32)
    expanded = sp.csr_matrix((weights, (row_of, rows[row_of, column])), shape=(n, n)) @ encoding
    expanded.eliminate_zeros()  # only nonzero encodings define overlaps
    return expanded


def jaccard_distance(
    features: np.ndarray,
    k1: int = 30,
    k2: int = 6,
    normalize: bool = True,
    variant: str = "fastreid",
    backend: Optional[NeighbourSearch] = None,
    neighbours: Optional[Neighbours] = None,
    cameras: Optional[np.ndarray] = None,
    k1_intra: int = 5,
    k1_inter: int = 20,
    k2_intra: int = 3,
    k2_inter: int = 3,
) -> sp.csr_matrix:
    """Sparse k-reciprocal Jaccard distance of the rows of ``features`` (N, D).

    Args:
        features: teacher features, one row per sample.
        k1: neighbourhood size of the k-reciprocal sets (fast-reid/SpCL 30, ABMT 20).
        k2: query-expansion size (1 disables it, as in fast-reid).
        normalize: L2-normalise rows first (what fast-reid's callers do with cosine features; ABMT's
            model outputs unit-norm features).
        variant: "fastreid" or "abmt" (``JACCARD_VARIANTS``, module docstring).
        backend: where the exact search runs (``search.search_neighbours``; the CPU's BLAS by default).
        neighbours: that search's result when the caller ran it (on the same, normalised, features,
            with at least the ranks ``jaccard_search`` names), e.g. to take the source term from the
            same pass (``distance.clustering_distance``).
        cameras: each row's camera id: CA-Jaccard (``ca_jaccard.py``), its sets and expansion sized
            by ``k1_intra``, ``k1_inter``, ``k2_intra`` and ``k2_inter`` instead of k1 and k2, over the
            variant's kernel. None: camera-blind.

    Returns:
        float32 CSR (N, N) in the sparse convention of ``sparse.py`` (absent pairs at distance 1).
    """
    camera_aware = None if cameras is None else CameraJaccard(k1_intra, k1_inter, k2_intra, k2_inter)
    search = jaccard_search(variant, k1, len(features), camera_aware)
    features = normalize_features(features) if normalize else np.ascontiguousarray(features, dtype=np.float32)
    n = features.shape[0]
    if neighbours is None:
        neighbours = search_neighbours(features, farthest=variant == "abmt", backend=backend, cameras=cameras, **search)
    if camera_aware is None:
        set_ptr, set_idx, expansion = _camera_blind_sets(neighbours, variant, k1, k2, n)
    else:
        lists = camera_aware.reciprocal_lists(neighbours)
        set_ptr, set_idx = _reciprocal_sets(lists, lists.shape[1])
        expansion = camera_aware.expansion_rows(neighbours)
    weights = _gaussian_weights(features, set_ptr, set_idx, _row_scale(variant, neighbours, n))
    return encoding_distance(_expand_queries(sp.csr_matrix((weights, set_idx, set_ptr), shape=(n, n)), expansion))
