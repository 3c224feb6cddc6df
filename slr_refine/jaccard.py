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

Why not fast-reid's own code: it fills three dense N×N matrices and loops over rows in Python
(memory grows as N²: 40 GB per float32 matrix at N=100k). Here every step is sparse and the per-row
loops are numba kernels, O(N · nnz(row)): time and memory grow linearly in N. The result follows
the sparse convention of ``sparse.py``.
"""
from typing import Optional

import numba
import numpy as np
import scipy.sparse as sp

from .search import Neighbours, NeighbourSearch, normalize_features, search_neighbours, squared_distance

__all__ = ["JACCARD_VARIANTS", "jaccard_distance", "jaccard_ranks"]

# fast-reid's / SpCL's definition, and ABMT's (module docstring).
JACCARD_VARIANTS = ("fastreid", "abmt")


def jaccard_ranks(variant: str, k1: int, n: int) -> int:
    """How many nearest rows (the row itself included) a variant's k-reciprocal sets are taken over:
    ABMT ranks the whole row and slices k1+1 columns; fast-reid searches k1 neighbours."""
    if variant not in JACCARD_VARIANTS:
        raise ValueError(f"Jaccard variant must be one of {JACCARD_VARIANTS}, got {variant!r}")
    return min(k1 + 1 if variant == "abmt" else k1, n)


@numba.njit(cache=True)
def _grow(buffer, used, extra):
    """Return ``buffer`` or a copy at least twice as large, so that ``used + extra`` fits."""
    if used + extra <= buffer.shape[0]:
        return buffer
    grown = np.empty(max(2 * buffer.shape[0], used + extra), dtype=buffer.dtype)
    grown[:used] = buffer[:used]
    return grown


@numba.njit(cache=True)
def _reciprocal_sets(ranks, n_columns):
    """CSR (indptr, indices) of R(i): j among i's first n_columns neighbours and i among j's."""
    n = ranks.shape[0]
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(n * n_columns, dtype=np.int64)
    used = 0
    for i in range(n):
        start = used
        for a in range(n_columns):
            j = ranks[i, a]
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
            indices = _grow(indices, used, 1)
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
                indices = _grow(indices, used, size)
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


@numba.njit(cache=True)
def _jaccard_upper(v_ptr, v_idx, v_val, c_ptr, c_idx, c_val):
    """Upper triangle (j > i) of d(i, j) = 1 - m / (2 - m), m = Σ_k min(V[i,k], V[j,k]) > 0.

    Row i scatters over the columns k of V[i] and, for each, the rows j holding k (CSC of V), so the
    cost is O(Σ_k nnz(column k)) per row, never O(N). m is summed in float32 over k ascending, the
    order fast-reid uses, so equal encodings give bit-equal distances.
    """
    n = v_ptr.shape[0] - 1
    overlap = np.zeros(n, dtype=np.float32)
    touched = np.zeros(n, dtype=np.bool_)
    partners = np.empty(n, dtype=np.int64)
    indptr = np.zeros(n + 1, dtype=np.int64)
    indices = np.empty(16 * n + 16, dtype=np.int32)
    values = np.empty(16 * n + 16, dtype=np.float32)
    one, two, zero = np.float32(1.0), np.float32(2.0), np.float32(0.0)
    used = 0
    for i in range(n):
        n_partners = 0
        for a in range(v_ptr[i], v_ptr[i + 1]):
            k = v_idx[a]
            v_ik = v_val[a]
            first = c_ptr[k] + np.searchsorted(c_idx[c_ptr[k]:c_ptr[k + 1]], i + 1)
            for b in range(first, c_ptr[k + 1]):
                j = c_idx[b]
                if not touched[j]:
                    touched[j] = True
                    partners[n_partners] = j
                    n_partners += 1
                overlap[j] += min(v_ik, c_val[b])
        found = np.sort(partners[:n_partners])
        indices = _grow(indices, used, n_partners)
        values = _grow(values, used, n_partners)
        for t in range(n_partners):
            j = found[t]
            m = overlap[j]
            distance = one - m / (two - m)
            indices[used] = j
            values[used] = distance if distance > zero else zero
            used += 1
            overlap[j] = zero
            touched[j] = False
        indptr[i + 1] = used
    return indptr, indices[:used], values[:used]


@numba.njit(cache=True)
def _symmetric_with_zero_diagonal(n, upper_ptr, upper_idx, upper_val):
    """CSR of lower + diagonal (explicit 0) + upper, filled in one pass without temporaries.

    Row i is [entries (i, j<i) mirrored from row j] [0 at (i, i)] [row i of the upper triangle];
    mirrored entries arrive in ascending j, so every row comes out sorted.
    """
    lower_counts = np.zeros(n, dtype=np.int64)
    for t in range(upper_idx.shape[0]):
        lower_counts[upper_idx[t]] += 1
    indptr = np.zeros(n + 1, dtype=np.int64)
    for i in range(n):
        indptr[i + 1] = indptr[i] + lower_counts[i] + 1 + (upper_ptr[i + 1] - upper_ptr[i])
    indices = np.empty(indptr[n], dtype=np.int32)
    values = np.empty(indptr[n], dtype=np.float32)
    lower_cursor = indptr[:n].copy()
    for i in range(n):
        diagonal = indptr[i] + lower_counts[i]
        indices[diagonal] = i
        values[diagonal] = 0.0
        out = diagonal + 1
        for t in range(upper_ptr[i], upper_ptr[i + 1]):
            j = upper_idx[t]
            indices[out] = j
            values[out] = upper_val[t]
            out += 1
            indices[lower_cursor[j]] = i
            values[lower_cursor[j]] = upper_val[t]
            lower_cursor[j] += 1
    return indptr, indices, values


def jaccard_distance(
    features: np.ndarray,
    k1: int = 30,
    k2: int = 6,
    normalize: bool = True,
    variant: str = "fastreid",
    backend: Optional[NeighbourSearch] = None,
    neighbours: Optional[Neighbours] = None,
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
        neighbours: that search's result when the caller ran it (on the same, normalised, features:
            at least ``jaccard_ranks`` ranks, and the farthest rows for "abmt"), e.g. to take the
            source term from the same pass (``distance.clustering_distance``).

    Returns:
        float32 CSR (N, N) in the sparse convention of ``sparse.py`` (absent pairs at distance 1).
    """
    full_columns = jaccard_ranks(variant, k1, len(features))
    features = normalize_features(features) if normalize else np.ascontiguousarray(features, dtype=np.float32)
    n = features.shape[0]
    if neighbours is None:
        neighbours = search_neighbours(features, full_columns, farthest=variant == "abmt", backend=backend)
    if neighbours.ranks.shape[1] < full_columns:
        raise ValueError(f"the {variant} Jaccard distance needs {full_columns} ranks, the search found "
                         f"{neighbours.ranks.shape[1]}")
    ranks = neighbours.ranks[:, :full_columns]
    if variant == "abmt":
        if neighbours.farthest is None:
            raise ValueError("the abmt variant needs each row's farthest distance: search with farthest=True")
        with np.errstate(divide="ignore"):  # all rows equal: every distance is 0
            row_scale = np.where(neighbours.farthest > 0, 1.0 / neighbours.farthest, 1.0)
        half_columns = min(int(np.around(k1 / 2)) + 1, n)
    else:
        # R(i, k1) over k1 columns (self included), R(i, k1/2) over round(k1/2)+1 of them (fast-reid)
        half_columns = min(int(np.around(full_columns / 2)) + 1, full_columns)
        row_scale = np.ones(n)

    full_ptr, full_idx = _reciprocal_sets(ranks, full_columns)
    half_ptr, half_idx = _reciprocal_sets(ranks, half_columns)
    exp_ptr, exp_idx = _expanded_sets(full_ptr, full_idx, half_ptr, half_idx)
    encoding = sp.csr_matrix((_gaussian_weights(features, exp_ptr, exp_idx, row_scale), exp_idx, exp_ptr),
                             shape=(n, n))

    k2 = min(k2, full_columns)
    if k2 != 1:
        rows = np.repeat(np.arange(n), k2)
        averaging = sp.csr_matrix(
            (np.full(n * k2, 1.0 / k2, dtype=np.float32), (rows, ranks[:, :k2].ravel())), shape=(n, n)
        )
        encoding = averaging @ encoding
        encoding.eliminate_zeros()  # only nonzero encodings define overlaps
    encoding.sort_indices()
    by_column = encoding.tocsc()
    by_column.sort_indices()

    upper_ptr, upper_idx, upper_val = _jaccard_upper(
        encoding.indptr.astype(np.int64), encoding.indices.astype(np.int64), encoding.data,
        by_column.indptr.astype(np.int64), by_column.indices.astype(np.int64), by_column.data,
    )
    indptr, indices, values = _symmetric_with_zero_diagonal(n, upper_ptr, upper_idx, upper_val)
    return sp.csr_matrix((values, indices, indptr), shape=(n, n))


